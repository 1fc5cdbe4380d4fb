// hold_flow.js: many buyers going through the hold flow of one large event.
// Each iteration a virtual user asks for a hold of 1 or 2 tickets, thinks,
// and then confirms it (about 60%), releases it (about 20%) or walks away
// (about 20%: the hold expires and the sweeper gives its tickets back).
//
//   k6 run scripts/hold_flow.js                           # event 4, 50 VUs, 30s
//   k6 run -e VUS=10 -e DURATION=5s scripts/hold_flow.js  # a short run
//
// Environment (all optional):
//   BASE_URL     the service, default http://127.0.0.1:8080
//   EVENT_ID     the event, default 4 (holdfast dev's "Holdfast Arena Open
//                Day", 100,000 tickets)
//   CATEGORIES   comma-separated category ids of the event (holdfast dev's
//                festival has three): each hold then asks for one or two of
//                them, 1 or 2 tickets in all, as items; default none (the
//                seed's quantity, the event's only category)
//   VUS          virtual users, default 50
//   DURATION     how long to run, default 30s
//   THINK        seconds a buyer thinks between hold and decision; default a
//                random 0.2 to 1
//   CONFIRM_PCT  percent of holds confirmed, default 60
//   RELEASE_PCT  percent of holds released, default 20 (the rest walk away)
//   RUN_ID       marks this run's buyers: every email is
//                flow-RUN_ID-VU-ITER@example.com (unique per VU and
//                iteration); default a random id. holds.sh sets it to count
//                this run's holds in the database.
//
// The counters (holds_made, confirmed, released, abandoned, hold_expired,
// gave_up, sold_out, busy, unexpected) are described in holds_lib.js. The run
// fails (k6 exits 99) on any unexpected answer or any status outside 200,
// 201, 409, 410 and 429. Sent with every hold and confirm: an
// Idempotency-Key, so a confirm retried after 429 is the same request.

import { sleep } from 'k6';
import exec from 'k6/execution';
import {
  THRESHOLDS, abandoned, confirmHold, createHold, positiveInt, releaseHold, zeroAll,
} from './holds_lib.js';

const EVENT_ID = positiveInt('EVENT_ID', 4);
const VUS = positiveInt('VUS', 50);
const CATEGORIES = (__ENV.CATEGORIES || '').split(',').filter((c) => c !== '').map((c) => {
  const n = Number(c);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`CATEGORIES must be positive category ids, not ${JSON.stringify(__ENV.CATEGORIES)}`);
  }
  return n;
});
const DURATION = __ENV.DURATION || '30s';
const CONFIRM_PCT = Number(__ENV.CONFIRM_PCT || '60');
const RELEASE_PCT = Number(__ENV.RELEASE_PCT || '20');
let THINK = null;
if (__ENV.THINK !== undefined && __ENV.THINK !== '') {
  THINK = Number(__ENV.THINK);
  if (!(THINK >= 0)) {
    throw new Error(`THINK must be a number of seconds, not ${JSON.stringify(__ENV.THINK)}`);
  }
}
if (!(CONFIRM_PCT >= 0 && RELEASE_PCT >= 0 && CONFIRM_PCT + RELEASE_PCT <= 100)) {
  throw new Error(`CONFIRM_PCT and RELEASE_PCT must be percentages adding up to at most 100, ` +
    `not ${JSON.stringify(__ENV.CONFIRM_PCT)} and ${JSON.stringify(__ENV.RELEASE_PCT)}`);
}
if (__ENV.RUN_ID !== undefined && !/^[A-Za-z0-9-]{1,40}$/.test(__ENV.RUN_ID)) {
  throw new Error(`RUN_ID must be 1 to 40 letters, digits or dashes, not ${JSON.stringify(__ENV.RUN_ID)}`);
}

export const options = {
  vus: VUS,
  duration: DURATION,
  thresholds: THRESHOLDS,
};

export { setup } from './holds_lib.js';

export default function (data) {
  zeroAll();
  const buyer = `flow-${data.runId}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const quantity = 1 + Math.floor(Math.random() * 2);
  let items;
  if (CATEGORIES.length > 0) {
    // One category, or two different ones of a ticket each.
    const first = CATEGORIES[Math.floor(Math.random() * CATEGORIES.length)];
    const second = CATEGORIES[Math.floor(Math.random() * CATEGORIES.length)];
    items = quantity === 2 && second !== first
      ? [{ category_id: first, quantity: 1 }, { category_id: second, quantity: 1 }]
      : [{ category_id: first, quantity: quantity }];
  }
  const hold = createHold(EVENT_ID, `${buyer}@example.com`, quantity, `${buyer}-hold`, items);
  if (!hold) {
    // Sold out, busy or unexpected: this buyer tries again next iteration.
    sleep(THINK === null ? 0.2 + Math.random() * 0.8 : THINK);
    return;
  }

  sleep(THINK === null ? 0.2 + Math.random() * 0.8 : THINK);

  const dice = Math.random() * 100;
  if (dice < CONFIRM_PCT) {
    confirmHold(hold, `${buyer}-confirm`, false);
  } else if (dice < CONFIRM_PCT + RELEASE_PCT) {
    releaseHold(hold);
  } else {
    abandoned.add(1);
  }
}
