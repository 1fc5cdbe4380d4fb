// onsale.js: an on-sale through the waiting room. BUYERS buyers join the
// queue of a queued event (EVENT_ID) before its on_sale_at; from the sale
// each polls its place as poll_after_seconds says, and once admitted holds
// with its pass (Queue-Pass) and its own email, then confirms, or abandons
// the hold (ABANDON_PCT, released or left to expire). scripts/onsale.sh
// creates the event and checks the database afterwards; run it on its own
// only against an event made the same way.
//
// Each VU plays many buyers (VUS VUs, buyers i = vu-1, vu-1+VUS, ...): a
// k6 VU is too heavy to be one of 20,000 buyers, and a buyer spends nearly
// all its time waiting, so each VU keeps its buyers' places and polls
// whichever is due next.
//
// Counters (each in the summary and in --summary-export):
//   joined          201 on POST /events/{id}/queue: a new place
//   late_joins      joins answered with a position: they came after the
//                   sale opened, so they queue at the end, not in the shuffle
//   admitted        places seen admitted, with a pass
//   holds_made      201 on POST /holds with the pass
//   confirmed       200 on confirm
//   abandoned       holds the buyer walked away from (released or left)
//   released        abandoned holds released with DELETE (ABANDON_MODE=release)
//   done_seen       places read back as done after their confirm
//   told_sold_out   places that read sold_out while waiting
//   found_nothing   admitted places whose hold was 409 sold_out even for
//                   one ticket (step 3's queue knows the stock, so there it
//                   must be 0)
//   took_fewer      holds of more than one ticket refused sold_out and
//                   asked again for one (QUANTITY_MAX > 1)
//   pass_expired    admitted places whose pass lapsed before they held
//   still_waiting   buyers not finished when MAX_WAIT ran out
//   gave_up         joins, holds, confirms still 429 or 503 after 10 tries
//   unavailable     503 answers (Redis down): retried, not failures
//   busy            429 answers: retried
//   probes          deliberate misuses sent (PROBE_PCT of the buyers); a
//                   probe is refused by 403 with its code, or by 409
//                   sold_out (the contract does not order the two checks)
//   probe_holds     holds probes got and released at once (each also a
//                   violation below): the runner's database counts add them
// and the violations, each with a threshold count==0 (k6 exits 99):
//   hold_without_pass  a hold without a pass, or with another buyer's email
//                      on a pass, was made (201) instead of refused (403)
//   pass_reused        a second hold with a pass whose place is done was
//                      made (201) instead of 403 pass_used
//   admitted_twice     a place read admitted without a pass, or with a pass
//                      naming another place, email or event, or a second
//                      join of the same email answered another place
//   out_of_order       a place still waiting ORDER_TOLERANCE seconds after
//                      a place behind it was seen admitted (see below)
//   server_errors      a 5xx other than 503
//   unexpected         any other answer the contract does not promise
// Trends: time_in_queue (on_sale_at, or the join if later, to the first
// poll that reads admitted), hold_latency, and told_sold_out_at (ms from
// on_sale_at to the poll that read sold_out).
//
// Order. Positions of waiting places never grow, and a place ahead of
// another stays ahead. A VU sees its own buyers' positions: when it sees
// buyer B admitted, every buyer A of the same VU that was surely ahead of B
// (A's last position, seen no later than B's last waiting one, smaller than
// B's; or, seen later, smaller by more than what the queue could have
// admitted in between at RATE, plus half a second's burst) must read
// admitted by ORDER_TOLERANCE seconds after that. Buyers are dealt to VUs in
// stride, so each VU watches a sample spread over the whole queue.

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import encoding from 'k6/encoding';
import { Counter, Trend } from 'k6/metrics';

const counters = {};
for (const name of ['joined', 'late_joins', 'admitted', 'holds_made', 'confirmed', 'abandoned', 'released',
  'done_seen', 'told_sold_out', 'found_nothing', 'pass_expired', 'still_waiting', 'gave_up', 'unavailable', 'busy', 'probes',
  'probe_holds', 'took_fewer', 'hold_without_pass', 'pass_reused', 'admitted_twice', 'out_of_order', 'server_errors', 'unexpected']) {
  counters[name] = new Counter(name);
}
const timeInQueue = new Trend('time_in_queue', true);
const holdLatency = new Trend('hold_latency', true);
// When each place read sold_out, in ms after on_sale_at: its max is the
// last place told, which the runner sets against the last ticket sold.
const toldSoldOutAt = new Trend('told_sold_out_at', true);

const VIOLATIONS = ['hold_without_pass', 'pass_reused', 'admitted_twice', 'out_of_order', 'server_errors', 'unexpected'];

// 403 and 409 are the refusals the probes expect and sold out; 503 is the
// queue without Redis; none of them fails http_req_failed.
http.setResponseCallback(http.expectedStatuses(200, 201, 403, 409, 410, 429, 503));

function setting(name, fallback, ok) {
  const raw = __ENV[name];
  const v = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!ok(v)) {
    throw new Error(`${name} must be ${ok.what}, not ${JSON.stringify(raw)}`);
  }
  return v;
}
const positive = Object.assign((v) => Number.isInteger(v) && v > 0, { what: 'a positive integer' });
const percent = Object.assign((v) => Number.isFinite(v) && v >= 0 && v <= 100, { what: 'a percentage from 0 to 100' });
const seconds = Object.assign((v) => Number.isFinite(v) && v > 0, { what: 'a positive number of seconds' });

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const EVENT_ID = setting('EVENT_ID', undefined, positive);
const BUYERS = setting('BUYERS', 500, positive);
const VUS = Math.min(BUYERS, setting('VUS', 50, positive));
const RATE = setting('RATE', 50, positive);
const QUANTITY = setting('QUANTITY', 1, positive);
// Each buyer asks for QUANTITY to QUANTITY_MAX tickets (uniformly), and on
// 409 sold_out asks once more for one: a buyer who finds fewer than it
// wanted takes what is left, and found nothing only if not one is left.
const QUANTITY_MAX = Math.max(QUANTITY, setting('QUANTITY_MAX', QUANTITY, positive));
const ABANDON_PCT = setting('ABANDON_PCT', 25, percent);
const PROBE_PCT = setting('PROBE_PCT', 2, percent);
const ORDER_TOLERANCE = setting('ORDER_TOLERANCE', 1, seconds);
const MAX_WAIT = setting('MAX_WAIT', 600, seconds);
const ABANDON_MODE = __ENV.ABANDON_MODE || 'release';
if (ABANDON_MODE !== 'release' && ABANDON_MODE !== 'expire') {
  throw new Error(`ABANDON_MODE must be release or expire, not ${JSON.stringify(ABANDON_MODE)}`);
}
const ON_SALE_AT = Date.parse(__ENV.ON_SALE_AT || '');
if (!Number.isFinite(ON_SALE_AT)) {
  throw new Error(`ON_SALE_AT must be an RFC 3339 time (the event's on_sale_at), not ${JSON.stringify(__ENV.ON_SALE_AT)}`);
}
const RUN_ID = __ENV.RUN_ID || `${Date.now().toString(36)}`;

const thresholds = { http_req_failed: ['rate==0'] };
for (const v of VIOLATIONS) {
  thresholds[v] = ['count==0'];
}

export const options = {
  scenarios: {
    buyers: {
      executor: 'per-vu-iterations',
      vus: VUS,
      iterations: 1,
      // The join, the wait for the sale, MAX_WAIT after it, and a margin.
      maxDuration: `${Math.ceil(Math.max(0, ON_SALE_AT - Date.now()) / 1000 + MAX_WAIT + 60)}s`,
    },
  },
  thresholds: thresholds,
};

const JSON_HEADERS = { 'Content-Type': 'application/json' };

function body(res) {
  try {
    const b = res.json();
    return b && typeof b === 'object' ? b : null;
  } catch (e) {
    return null;
  }
}

function code(res) {
  const b = body(res);
  return b && typeof b.code === 'string' ? b.code : '';
}

// retryable counts the answers every request treats alike: a 5xx other
// than 503, a 503, a 429. It returns true when the caller should retry.
function retryable(res) {
  if (res.status === 503) {
    counters.unavailable.add(1);
    return true;
  }
  if (res.status === 429) {
    counters.busy.add(1);
    return true;
  }
  return false;
}

// bad counts an answer the contract does not promise, and logs it.
function bad(what, res, why) {
  if (res.status >= 500 && res.status !== 503) {
    counters.server_errors.add(1);
  } else {
    counters.unexpected.add(1);
  }
  check(res, { [`${what}: an expected answer`]: () => false });
  console.warn(`unexpected answer to ${what}: ${why}: status ${res.status} code ${JSON.stringify(code(res))} ` +
    `request id ${JSON.stringify(res.headers['X-Request-Id'] || '')} error ${JSON.stringify(res.error || '')} ` +
    `body ${JSON.stringify(String(res.body || '').slice(0, 300))}`);
}

function violation(name, message) {
  counters[name].add(1);
  console.error(`VIOLATION ${name}: ${message}`);
}

function retryAfter(res) {
  const s = parseFloat(res.headers['Retry-After']);
  return Math.min(s > 0 ? s : 0.5, 2);
}

// claims reads a JWT's payload without checking its signature (the server
// checks that); null when it is not a JWT.
function claims(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) {
    return null;
  }
  try {
    return JSON.parse(encoding.b64decode(parts[1], 'rawurl', 's'));
  } catch (e) {
    return null;
  }
}

// validPlace checks a Place answer is the buyer's place.
function validPlace(b, buyer) {
  return b && typeof b.id === 'string' && b.id !== '' && b.event_id === EVENT_ID && typeof b.status === 'string' &&
    (buyer.place === null || b.id === buyer.place);
}

function join(buyer, mine) {
  for (let attempt = 0; attempt < 10; attempt++) {
    const res = http.post(`${BASE_URL}/events/${EVENT_ID}/queue`, JSON.stringify({ user_email: buyer.email }),
      { headers: JSON_HEADERS, tags: { name: 'POST /events/{id}/queue' } });
    if (retryable(res)) {
      sleep(retryAfter(res));
      continue;
    }
    const b = body(res);
    if ((res.status !== 201 && res.status !== 200) || !validPlace(b, buyer)) {
      bad('POST /events/{id}/queue', res, 'not 201 (or 200) with a place');
      buyer.state = 'lost';
      return;
    }
    if (res.status === 200) {
      // A join that timed out on our side may have made the place.
      console.warn(`join of ${buyer.email} answered 200: an earlier attempt made the place`);
    }
    counters.joined.add(1);
    buyer.place = b.id;
    buyer.joinedAt = Date.now();
    if (b.position !== null && b.position !== undefined) {
      counters.late_joins.add(1);
    }
    // A join after the sale may be admitted at once.
    sortPlace(buyer, b, res, mine);
    return;
  }
  counters.gave_up.add(1);
  buyer.state = 'gave_up';
}

// rejoin joins again with the same email: the contract answers the same
// place (200), never a second one.
function rejoin(buyer) {
  counters.probes.add(1);
  const res = http.post(`${BASE_URL}/events/${EVENT_ID}/queue`, JSON.stringify({ user_email: buyer.email }),
    { headers: JSON_HEADERS, tags: { name: 'POST /events/{id}/queue (again)' } });
  if (retryable(res)) {
    return;
  }
  const b = body(res);
  if (res.status === 201 || (b && typeof b.id === 'string' && b.id !== buyer.place)) {
    violation('admitted_twice', `${buyer.email} joined again and got a second place ${b && b.id} (first ${buyer.place})`);
  } else if (res.status !== 200) {
    bad('POST /events/{id}/queue (again)', res, 'not 200 with the same place');
  }
}

function nextPoll(b) {
  const after = Number.isInteger(b.poll_after_seconds) && b.poll_after_seconds > 0 ? b.poll_after_seconds : 1;
  let at = Date.now() + after * 1000;
  // Before the sale the answer is "come back at on_sale_at" in halves;
  // poll at the sale itself rather than up to a second after it.
  if (Date.now() < ON_SALE_AT && at > ON_SALE_AT) {
    at = ON_SALE_AT;
  }
  return at;
}

function observe(buyer, position) {
  buyer.pos = position;
  buyer.posAt = Date.now();
}

// aheadOf reports whether a was surely ahead of b, from the positions last
// seen: a position never grows, and between two sightings at most RATE a
// second plus half a second's burst can have been admitted.
function aheadOf(a, b) {
  if (a.pos === null || b.pos === null) {
    return false;
  }
  if (a.posAt <= b.posAt) {
    return a.pos < b.pos;
  }
  return a.pos < b.pos - RATE * ((a.posAt - b.posAt) / 1000 + 0.5) - 1;
}

// admittedSeen sets deadlines on the buyers of this VU surely ahead of b.
function admittedSeen(b, mine) {
  const by = Date.now() + ORDER_TOLERANCE * 1000;
  for (const a of mine) {
    if (a !== b && a.state === 'waiting' && a.mustBeAdmittedBy === 0 && aheadOf(a, b)) {
      a.mustBeAdmittedBy = by;
      a.aheadOf = `${b.place} (position ${b.pos})`;
    }
  }
}

// poll reads the buyer's place and acts on it.
function poll(buyer, mine) {
  const res = http.get(`${BASE_URL}/queue/${buyer.place}`, { tags: { name: 'GET /queue/{place_id}' } });
  if (retryable(res)) {
    buyer.nextPoll = Date.now() + retryAfter(res) * 1000;
    return;
  }
  const b = body(res);
  if (res.status !== 200 || !validPlace(b, buyer)) {
    bad('GET /queue/{place_id}', res, 'not 200 with the place');
    buyer.state = 'lost';
    return;
  }
  sortPlace(buyer, b, res, mine);
}

// sortPlace acts on a place read by a join or a poll.
function sortPlace(buyer, b, res, mine) {
  switch (b.status) {
    case 'waiting':
      if (b.position !== null && b.position !== undefined) {
        if (!Number.isInteger(b.position) || b.position < 1 || (buyer.pos !== null && b.position > buyer.pos)) {
          bad('GET /queue/{place_id}', res, `position ${b.position} after ${buyer.pos}: positions never grow`);
        }
        observe(buyer, b.position);
      }
      if (buyer.mustBeAdmittedBy > 0 && Date.now() > buyer.mustBeAdmittedBy) {
        violation('out_of_order', `${buyer.place} still waiting at position ${b.position}, ` +
          `${ORDER_TOLERANCE}s after ${buyer.aheadOf}, which was behind it, was admitted`);
        buyer.mustBeAdmittedBy = -1; // once per place
      }
      buyer.nextPoll = nextPoll(b);
      return;
    case 'admitted':
      admitted(buyer, b, mine);
      return;
    case 'sold_out':
      counters.told_sold_out.add(1);
      toldSoldOutAt.add(Date.now() - ON_SALE_AT);
      buyer.state = 'sold_out';
      return;
    case 'expired':
      // Our own poll was late past the whole pass TTL.
      counters.pass_expired.add(1);
      buyer.state = 'expired';
      return;
    default:
      bad('GET /queue/{place_id}', res, `status ${b.status} for a place of ours that was waiting`);
      buyer.state = 'lost';
  }
}

function admitted(buyer, b, mine) {
  const c = claims(b.pass);
  if (!c || !b.pass_expires_at) {
    violation('admitted_twice', `${buyer.place} admitted without a pass (pass ${JSON.stringify(b.pass)})`);
    buyer.state = 'lost';
    return;
  }
  // The claims the issue names: the place (sub), the email, the event (aud).
  if ((c.sub !== undefined && c.sub !== buyer.place) ||
    (c.email !== undefined && String(c.email).toLowerCase() !== buyer.email) ||
    (c.aud !== undefined && ![].concat(c.aud).map(String).some((a) => a === String(EVENT_ID) || a.endsWith(`/${EVENT_ID}`) || a.endsWith(`:${EVENT_ID}`)))) {
    violation('admitted_twice', `${buyer.place} of ${buyer.email} got a pass for ${JSON.stringify(c)}`);
    buyer.state = 'lost';
    return;
  }
  counters.admitted.add(1);
  timeInQueue.add(Date.now() - Math.max(ON_SALE_AT, buyer.joinedAt));
  buyer.state = 'admitted';
  admittedSeen(buyer, mine);
  buy(buyer, b.pass);
}

function holdRequest(email, pass, name) {
  const headers = Object.assign({}, JSON_HEADERS);
  if (pass) {
    headers['Queue-Pass'] = pass;
  }
  return http.post(`${BASE_URL}/holds`, JSON.stringify({ event_id: EVENT_ID, user_email: email, quantity: QUANTITY }),
    { headers: headers, tags: { name: name } });
}

// releaseProbe gives back a hold a probe should never have got, so the
// violation does not also skew the stock.
function releaseProbe(res) {
  counters.probe_holds.add(1);
  const b = body(res);
  if (b && b.id) {
    http.del(`${BASE_URL}/holds/${b.id}`, null, { tags: { name: 'DELETE /holds/{id} (probe)' } });
  }
}

// refused reports whether a probe was refused as the contract says: 403
// with want, or 409 sold_out; a 429 or 503 tells nothing and is let go.
function refused(res, want) {
  return (res.status === 403 && code(res) === want) || (res.status === 409 && code(res) === 'sold_out') || retryable(res);
}

// probeBefore tries what a pass must stop: a hold with no pass, and a hold
// with this buyer's pass and another email.
function probeBefore(buyer, pass) {
  counters.probes.add(2);
  let res = holdRequest(buyer.email, '', 'POST /holds (probe: no pass)');
  if (res.status === 201) {
    violation('hold_without_pass', `a hold for ${buyer.email} was made without a pass`);
    releaseProbe(res);
  } else if (!refused(res, 'queue_required')) {
    bad('POST /holds (probe: no pass)', res, 'not 403 queue_required');
  }
  res = holdRequest(`other-${buyer.email}`, pass, 'POST /holds (probe: another email)');
  if (res.status === 201) {
    violation('hold_without_pass', `${buyer.email}'s pass made a hold for another email`);
    releaseProbe(res);
  } else if (!refused(res, 'pass_invalid')) {
    bad('POST /holds (probe: another email)', res, 'not 403 pass_invalid');
  }
}

function buy(buyer, pass) {
  const probe = Math.random() * 100 < PROBE_PCT;
  if (probe) {
    probeBefore(buyer, pass);
  }
  let key = `onsale-${RUN_ID}-${buyer.index}-hold`;
  let want = QUANTITY + Math.floor(Math.random() * (QUANTITY_MAX - QUANTITY + 1));
  let hold = null;
  for (let attempt = 0; attempt < 10 && hold === null; attempt++) {
    const res = http.post(`${BASE_URL}/holds`,
      JSON.stringify({ event_id: EVENT_ID, user_email: buyer.email, quantity: want }),
      { headers: Object.assign({ 'Queue-Pass': pass, 'Idempotency-Key': key }, JSON_HEADERS), tags: { name: 'POST /holds' } });
    if (res.status !== 0) {
      holdLatency.add(res.timings.duration);
    }
    if (retryable(res)) {
      sleep(retryAfter(res));
      continue;
    }
    const b = body(res);
    if (res.status === 201 && b && b.id && b.status === 'pending' && b.quantity === want && b.user_email === buyer.email) {
      hold = b;
      break;
    }
    if (res.status === 409 && code(res) === 'sold_out' && want > 1) {
      counters.took_fewer.add(1);
      want = 1;
      key = `${key}-1`;
      continue;
    }
    if (res.status === 409 && code(res) === 'sold_out') {
      counters.found_nothing.add(1);
      buyer.state = 'found_nothing';
      return;
    }
    if (res.status === 403 && code(res) === 'pass_expired') {
      counters.pass_expired.add(1);
      buyer.state = 'expired';
      return;
    }
    bad('POST /holds', res, 'not 201 pending, 409 sold_out or 403 pass_expired');
    buyer.state = 'lost';
    return;
  }
  if (hold === null) {
    buyer.state = 'gave_up';
    counters.gave_up.add(1);
    return;
  }
  counters.holds_made.add(1);

  if (Math.random() * 100 < ABANDON_PCT) {
    counters.abandoned.add(1);
    buyer.state = 'abandoned';
    if (ABANDON_MODE === 'release') {
      for (let attempt = 0; attempt < 10; attempt++) {
        const res = http.del(`${BASE_URL}/holds/${hold.id}`, null, { tags: { name: 'DELETE /holds/{id}' } });
        if (retryable(res)) {
          sleep(retryAfter(res));
          continue;
        }
        const b = body(res);
        if (res.status === 200 && b && (b.status === 'released' || b.status === 'expired')) {
          counters.released.add(b.status === 'released' ? 1 : 0);
        } else {
          bad('DELETE /holds/{id}', res, 'not 200 released');
        }
        break;
      }
    }
    return;
  }

  for (let attempt = 0; attempt < 10; attempt++) {
    const res = http.post(`${BASE_URL}/holds/${hold.id}/confirm`, null,
      { headers: { 'Idempotency-Key': `${key}-confirm` }, tags: { name: 'POST /holds/{id}/confirm' } });
    if (retryable(res)) {
      sleep(retryAfter(res));
      continue;
    }
    const b = body(res);
    if (res.status === 200 && b && b.status === 'confirmed') {
      counters.confirmed.add(1);
      buyer.state = 'confirmed';
      break;
    }
    bad('POST /holds/{id}/confirm', res, 'not 200 confirmed');
    buyer.state = 'lost';
    return;
  }
  if (buyer.state !== 'confirmed') {
    buyer.state = 'gave_up';
    counters.gave_up.add(1);
    return;
  }
  afterConfirm(buyer, pass, probe);
}

// afterConfirm reads the place back (done), and a probing buyer tries its
// used pass once more.
function afterConfirm(buyer, pass, probe) {
  const res = http.get(`${BASE_URL}/queue/${buyer.place}`, { tags: { name: 'GET /queue/{place_id} (after confirm)' } });
  const b = body(res);
  if (res.status === 200 && b && b.status === 'done') {
    counters.done_seen.add(1);
  } else if (res.status === 200 && b && b.status === 'admitted') {
    // The contract does not say how soon a place turns done; a pass whose
    // place is not done yet is what the probe below tries.
  } else if (!retryable(res)) {
    bad('GET /queue/{place_id} (after confirm)', res, 'not 200 done or admitted');
  }
  if (!probe) {
    return;
  }
  counters.probes.add(1);
  const again = holdRequest(buyer.email, pass, 'POST /holds (probe: used pass)');
  if (again.status === 201) {
    violation('pass_reused', `${buyer.email}'s pass made a second hold after its hold was confirmed`);
    releaseProbe(again);
  } else if (!refused(again, 'pass_used')) {
    bad('POST /holds (probe: used pass)', again, 'not 403 pass_used');
  }
}

export function setup() {
  const res = http.get(`${BASE_URL}/events/${EVENT_ID}/queue`, { tags: { name: 'GET /events/{id}/queue' } });
  const b = body(res);
  if (res.status !== 200 || !b || !b.state) {
    throw new Error(`GET /events/${EVENT_ID}/queue answered ${res.status} ${String(res.body).slice(0, 200)}: is the event queued?`);
  }
  if (Date.now() >= ON_SALE_AT) {
    console.warn(`the sale opened ${(Date.now() - ON_SALE_AT) / 1000}s before k6 started: every join is late`);
  }
  return {};
}

export default function () {
  for (const name of Object.keys(counters)) {
    counters[name].add(0); // every counter in the summary, and data for every threshold
  }
  const vu = exec.vu.idInTest;
  const mine = [];
  for (let i = vu - 1; i < BUYERS; i += VUS) {
    mine.push({
      index: i, email: `onsale-${RUN_ID}-${i}@example.com`, place: null, state: 'waiting',
      joinedAt: 0, nextPoll: 0, pos: null, posAt: 0, mustBeAdmittedBy: 0, aheadOf: '',
    });
  }
  for (const buyer of mine) {
    join(buyer, mine);
    if (buyer.state === 'waiting' && Math.random() * 100 < PROBE_PCT) {
      rejoin(buyer);
    }
  }
  const deadline = Math.max(Date.now(), ON_SALE_AT) + MAX_WAIT * 1000;
  let active = mine.filter((b) => b.state === 'waiting');
  while (active.length > 0 && Date.now() < deadline) {
    let next = deadline;
    for (const buyer of active) {
      if (buyer.nextPoll <= Date.now()) {
        poll(buyer, mine);
      }
      if (buyer.state === 'waiting') {
        next = Math.min(next, buyer.nextPoll);
      }
    }
    active = active.filter((b) => b.state === 'waiting');
    const wait = (next - Date.now()) / 1000;
    if (active.length > 0 && wait > 0) {
      sleep(wait);
    }
  }
  for (const buyer of active) {
    counters.still_waiting.add(1);
    console.warn(`${buyer.email} (${buyer.place}) still waiting after MAX_WAIT=${MAX_WAIT}s, last position ${buyer.pos}`);
  }
}
