// seats.js: a seated on-sale. BUYERS buyers, VUS at a time, each asks for
// the best available 2 to 4 seats of the venue's category; a buyer refused
// sold_out asks again for 2, then for 1, so the venue sells to the last
// seat. Every hold is confirmed at once. seats.sh makes the venue and then
// checks, in the database and on the seat map, that every seat was sold
// once and none twice.
//
//   k6 run -e EVENT_ID=7 -e CATEGORY_ID=9 scripts/seats.js
//
// Environment:
//   EVENT_ID, CATEGORY_ID  the venue and its seated category, required
//   BASE_URL               the service, default http://127.0.0.1:8080
//   BUYERS [600]           buyers in all (shared iterations)
//   VUS [20]               buyers at a time
//   RUN_ID                 marks this run's buyers (seats-RUN_ID-VU-ITER@example.com)
//
// Counters: holds_made, seats_held (seats in holds made), side_by_side
// (holds whose seats are neighbours in one row), sold_out (refusals of
// a single seat: the venue is gone), busy (429s retried, each after its
// Retry-After, at most 1 s, and at most 20 times a request), unexpected
// (any other answer, a body that is not JSON, a 429 retried out). The run
// fails (k6 exits 99) on any unexpected answer or any status the contract
// does not promise (http_req_failed).

import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/$/, '');
function positiveInt(name, def) {
  const v = __ENV[name] === undefined ? def : Number(__ENV[name]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(__ENV[name])}`);
  return v;
}
if (!__ENV.EVENT_ID || !__ENV.CATEGORY_ID) throw new Error('EVENT_ID and CATEGORY_ID are required (seats.sh makes a venue)');
const EVENT_ID = positiveInt('EVENT_ID', 0);
const CATEGORY_ID = positiveInt('CATEGORY_ID', 0);
const BUYERS = positiveInt('BUYERS', 600);
const VUS = Math.min(positiveInt('VUS', 20), BUYERS);
const RUN_ID = __ENV.RUN_ID || Math.random().toString(36).slice(2, 10);

const holdsMade = new Counter('holds_made');
const seatsHeld = new Counter('seats_held');
const sideBySide = new Counter('side_by_side');
const soldOut = new Counter('sold_out');
const busy = new Counter('busy');
const unexpected = new Counter('unexpected');

export const options = {
  scenarios: { seats: { executor: 'shared-iterations', vus: VUS, iterations: BUYERS, maxDuration: '2m' } },
  thresholds: { unexpected: ['count==0'], http_req_failed: ['rate==0'] },
};

// Sold out and busy are answers the contract promises, not failures: they
// stay out of http_req_failed.
http.setResponseCallback(http.expectedStatuses(200, 201, 409, 429));

const JSON_HEADERS = { headers: { 'Content-Type': 'application/json' } };

// neighbours reports whether seat ids ("section-row-number", in the map's
// order) sit side by side in one row.
function neighbours(seats) {
  const parts = seats.map((s) => s.split('-'));
  return parts.every((p, i) => p[0] === parts[0][0] && p[1] === parts[0][1] && Number(p[2]) === Number(parts[0][2]) + i);
}

// post sends body and retries a 429 after its Retry-After (at most 1 s,
// 0.2 s without one), MAX_TRIES times in all; the last answer is returned.
const MAX_TRIES = 20;
function post(path, body) {
  let res;
  for (let i = 0; i < MAX_TRIES; i++) {
    res = http.post(BASE_URL + path, body === undefined ? null : JSON.stringify(body), JSON_HEADERS);
    if (res.status !== 429) return res;
    busy.add(1);
    const wait = parseFloat(res.headers['Retry-After']);
    sleep(Math.min(wait > 0 ? wait : 0.2, 1));
  }
  return res;
}

// field is name of res's JSON body, or undefined when the body is not JSON
// (counted unexpected by the caller, never an exception that would end the
// iteration uncounted).
function field(res, name) {
  try {
    return res.json(name);
  } catch (e) {
    return undefined;
  }
}

export default function () {
  const email = `seats-${RUN_ID}-${exec.vu.idInTest}-${exec.scenario.iterationInTest}@example.com`;
  for (const quantity of [2 + (exec.scenario.iterationInTest % 3), 2, 1]) {
    const res = post('/holds', { event_id: EVENT_ID, user_email: email, best_available: { category_id: CATEGORY_ID, quantity } });
    if (res.status === 409 && field(res, 'code') === 'sold_out') {
      if (quantity === 1) soldOut.add(1);
      continue;
    }
    if (res.status !== 201) {
      unexpected.add(1);
      console.error(`hold: ${res.status} ${res.body}`);
      return;
    }
    const seats = field(res, 'seats') || [];
    if (!Array.isArray(seats) || seats.length !== quantity) {
      unexpected.add(1);
      console.error(`a hold of ${quantity} has seats ${JSON.stringify(seats)}`);
    }
    holdsMade.add(1);
    seatsHeld.add(seats.length);
    if (neighbours(seats)) sideBySide.add(1);
    const id = field(res, 'id');
    if (typeof id !== 'string') {
      unexpected.add(1);
      console.error(`a hold without an id: ${res.body}`);
      return;
    }
    const c = post(`/holds/${id}/confirm`);
    if (c.status !== 200) {
      unexpected.add(1);
      console.error(`confirm: ${c.status} ${c.body}`);
    }
    return;
  }
}
