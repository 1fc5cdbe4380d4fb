// booking_test.js: the seed article's k6 experiment. A crowd of virtual
// users each books one ticket per second for the same event, against
// POST /book/unsafe (the race, which oversells) or POST /book/safe (locked,
// which never does).
//
//   k6 run scripts/booking_test.js                          # /book/unsafe
//   k6 run -e ENDPOINT=safe scripts/booking_test.js         # /book/safe
//   k6 run -e VUS=5 -e DURATION=3s scripts/booking_test.js  # a short run
//
// Environment (all optional):
//   BASE_URL  the service, default http://127.0.0.1:8080
//   ENDPOINT  unsafe or safe, default unsafe
//   EVENT_ID  the event to book, default 1
//   VUS       virtual users, default 20
//   DURATION  how long to run, default 20s
//
// Every answer is one of four outcomes, each a Counter in the summary:
//   booked    200, a confirmed booking
//   sold_out  400 with code sold_out
//   busy      429 (the safe endpoint's lock was not had in time)
//   unexpected anything else: a 5xx, another status or code, no answer.
// The run fails (k6 exits non-zero) if any answer was unexpected.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const ENDPOINT = __ENV.ENDPOINT || 'unsafe';
const EVENT_ID = parseInt(__ENV.EVENT_ID || '1', 10);
const VUS = parseInt(__ENV.VUS || '20', 10);
const DURATION = __ENV.DURATION || '20s';

if (ENDPOINT !== 'unsafe' && ENDPOINT !== 'safe') {
  throw new Error(`ENDPOINT must be unsafe or safe, not ${JSON.stringify(ENDPOINT)}`);
}
if (!(EVENT_ID > 0)) {
  throw new Error(`EVENT_ID must be a positive integer, not ${JSON.stringify(__ENV.EVENT_ID)}`);
}
if (!(VUS > 0)) {
  throw new Error(`VUS must be a positive integer, not ${JSON.stringify(__ENV.VUS)}`);
}

const booked = new Counter('booked');
const soldOut = new Counter('sold_out');
const busy = new Counter('busy');
const unexpected = new Counter('unexpected');

export const options = {
  vus: VUS,
  duration: DURATION,
  thresholds: {
    // Any 5xx, other status, other error code or failed connection.
    unexpected: ['count==0'],
  },
};

// Sold out and busy are answers the contract promises, not failures: keep
// them out of http_req_failed.
http.setResponseCallback(http.expectedStatuses(200, 400, 429));

const URL = `${BASE_URL}/book/${ENDPOINT}`;
const PARAMS = {
  headers: { 'Content-Type': 'application/json' },
  tags: { name: `POST /book/${ENDPOINT}` },
};

// errorCode is the "code" of an error body, or '' when there is none.
function errorCode(res) {
  try {
    const body = res.json();
    return body && typeof body.code === 'string' ? body.code : '';
  } catch (e) {
    return '';
  }
}

export default function () {
  const payload = JSON.stringify({
    event_id: EVENT_ID,
    user_email: `user${__VU}@example.com`,
    quantity: 1,
  });
  const res = http.post(URL, payload, PARAMS);
  const code = res.status === 200 ? '' : errorCode(res);

  // One named check per outcome, so every check in a healthy run passes and
  // the summary shows how many answers of each kind there were.
  if (res.status === 200) {
    booked.add(1);
    check(res, { booked: (r) => r.status === 200 });
  } else if (res.status === 400 && code === 'sold_out') {
    soldOut.add(1);
    check(res, { 'sold out': (r) => r.status === 400 });
  } else if (res.status === 429) {
    busy.add(1);
    check(res, { busy: (r) => r.status === 429 });
  } else {
    unexpected.add(1, { status: String(res.status), code: code });
    check(res, { 'booked, sold out or busy': () => false });
    console.warn(`unexpected answer from ${URL}: status ${res.status} code ${JSON.stringify(code)} ` +
      `error ${JSON.stringify(res.error || '')} body ${JSON.stringify(String(res.body || '').slice(0, 200))}`);
  }
  // Give every counter a sample in every run, so each appears in the summary
  // (and in --summary-export) even at zero, and the threshold always has
  // data to judge.
  for (const c of [booked, soldOut, busy, unexpected]) {
    c.add(0);
  }

  sleep(1);
}
