// spike.js: an on-sale spike. Arrivals ramp from START_RATE to RATE per
// second over DURATION, far above the stock of one event; each asks for a
// hold of 1 ticket (or, with CATEGORIES, of one or two categories) and,
// when it gets one, confirms it at once, retrying a 429 for as long as the
// hold lasts. Every hold is confirmed, so once the spike
// is over the event must be sold out exactly: no ticket left, none sold
// twice (holds.sh checks that in the database).
//
//   k6 run -e EVENT_ID=7 scripts/spike.js
//   k6 run -e EVENT_ID=7 -e RATE=200 -e DURATION=5s scripts/spike.js
//
// Environment:
//   EVENT_ID     the event, required (holds.sh creates a fresh one)
//   BASE_URL     the service, default http://127.0.0.1:8080
//   START_RATE   arrivals per second at the start, default 50
//   RATE         arrivals per second at the end, default 400
//   DURATION     the ramp, default 30s
//   PRE_VUS      VUs allocated before the start, default 100
//   MAX_VUS      the most VUs k6 may use, default 400 (arrivals beyond what
//                they can serve are dropped: dropped_iterations)
//   RUN_ID       marks this run's buyers: spike-RUN_ID-VU-ITER@example.com;
//                default a random id
//   CATEGORIES   comma-separated category ids of the event: each arrival
//                then asks for one of them, or two different ones of a
//                ticket each, as items (holds.sh SPIKE_CATEGORIES makes such
//                an event); default none (1 ticket of the event's only
//                category, the seed's quantity)
//
// The counters (holds_made, confirmed, hold_expired, gave_up, sold_out, busy,
// unexpected) are described in holds_lib.js. The run fails (k6 exits 99) on
// any unexpected answer or any status outside 200, 201, 409, 410 and 429.

import exec from 'k6/execution';
import { THRESHOLDS, confirmHold, createHold, positiveInt, zeroAll } from './holds_lib.js';

if (!__ENV.EVENT_ID) {
  throw new Error('EVENT_ID is required: the event to sell out (holds.sh creates one)');
}
const EVENT_ID = positiveInt('EVENT_ID', 0);
const START_RATE = positiveInt('START_RATE', 50);
const RATE = positiveInt('RATE', 400);
const DURATION = __ENV.DURATION || '30s';
const CATEGORIES = (__ENV.CATEGORIES || '').split(',').filter((c) => c !== '').map((c) => {
  const n = Number(c);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`CATEGORIES must be positive category ids, not ${JSON.stringify(__ENV.CATEGORIES)}`);
  }
  return n;
});
const PRE_VUS = positiveInt('PRE_VUS', 100);
const MAX_VUS = Math.max(positiveInt('MAX_VUS', 400), PRE_VUS);
if (__ENV.RUN_ID !== undefined && !/^[A-Za-z0-9-]{1,40}$/.test(__ENV.RUN_ID)) {
  throw new Error(`RUN_ID must be 1 to 40 letters, digits or dashes, not ${JSON.stringify(__ENV.RUN_ID)}`);
}

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: START_RATE,
      timeUnit: '1s',
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      stages: [{ target: RATE, duration: DURATION }],
    },
  },
  thresholds: THRESHOLDS,
};

export { setup } from './holds_lib.js';

export default function (data) {
  zeroAll();
  const buyer = `spike-${data.runId}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  let quantity = 1;
  let items;
  if (CATEGORIES.length > 0) {
    // One category, or (about half the time) two different ones of a ticket
    // each: a two-item hold is all or nothing, so it is refused once either
    // category or the event has fewer than it asks, and the one-item
    // arrivals sell out what is left.
    const first = CATEGORIES[Math.floor(Math.random() * CATEGORIES.length)];
    const second = CATEGORIES[Math.floor(Math.random() * CATEGORIES.length)];
    items = Math.random() < 0.5 && second !== first
      ? [{ category_id: first, quantity: 1 }, { category_id: second, quantity: 1 }]
      : [{ category_id: first, quantity: 1 }];
    quantity = items.length;
  }
  const hold = createHold(EVENT_ID, `${buyer}@example.com`, quantity, '', items);
  if (hold) {
    confirmHold(hold, `${buyer}-confirm`, true);
  }
}
