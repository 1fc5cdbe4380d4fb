// holds_lib.js: what hold_flow.js and spike.js share: the outcome counters,
// the hold latency trend, and one function per hold request that sorts its
// answer into exactly one outcome. Imported by those scripts; not a k6
// script on its own.
//
// Outcomes (each a Counter in the summary and in --summary-export):
//   holds_made    201 on POST /holds: a pending hold
//   confirmed     200 on POST /holds/{id}/confirm, status confirmed
//   released      200 on DELETE /holds/{id}, status released
//   abandoned     holds the buyer walked away from on purpose (hold_flow.js)
//   hold_expired  the hold lapsed first: 410 hold_expired on confirm, or
//                 DELETE answering status expired
//   gave_up       confirm or release still 429 after the retries: the hold is
//                 left to expire
//   sold_out      409 sold_out on POST /holds
//   busy          429 busy, on any request (each answer, retries included)
//   unexpected    anything else: a 5xx, another status or code, a body that
//                 is not the hold asked for, no answer
// and the Trend hold_latency: the duration of every answered POST /holds.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

export const holdsMade = new Counter('holds_made');
export const confirmed = new Counter('confirmed');
export const released = new Counter('released');
export const abandoned = new Counter('abandoned');
export const holdExpired = new Counter('hold_expired');
export const gaveUp = new Counter('gave_up');
export const soldOut = new Counter('sold_out');
export const busy = new Counter('busy');
export const unexpected = new Counter('unexpected');
export const holdLatency = new Trend('hold_latency', true);

const ALL = [holdsMade, confirmed, released, abandoned, holdExpired, gaveUp, soldOut, busy, unexpected];

// Every status the contract promises for these requests; anything else
// counts in http_req_failed (and in unexpected).
export const EXPECTED_STATUSES = [200, 201, 409, 410, 429];

// Sold out, busy and a lapsed hold are answers the contract promises, not
// failures: keep them out of http_req_failed. Every script that imports this
// file gets the callback, since its init code runs in each VU.
http.setResponseCallback(http.expectedStatuses(...EXPECTED_STATUSES));

// setup picks one run id for every VU (the init code runs once per VU);
// scripts re-export it so k6 runs it.
export function setup() {
  return { runId: __ENV.RUN_ID || `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}` };
}

// The thresholds both scripts use: any 5xx, other status or code, or failed
// connection fails the run (k6 exits 99).
export const THRESHOLDS = {
  unexpected: ['count==0'],
  http_req_failed: ['rate==0'],
};

// How many times a confirm or release answered 429 is retried, and the
// longest wait between tries whatever Retry-After says.
const MAX_RETRIES = 3;
const MAX_RETRY_WAIT = 1;

export function baseURL() {
  return (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
}

// positiveInt reads an integer setting, or throws naming it.
export function positiveInt(name, fallback) {
  const raw = __ENV[name];
  const v = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(v) || v <= 0) {
    throw new Error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`);
  }
  return v;
}

// zeroAll gives every counter a sample, so each appears in the summary (and
// in --summary-export) even at zero, and the thresholds always have data.
export function zeroAll() {
  for (const c of ALL) {
    c.add(0);
  }
}

function errorCode(res) {
  try {
    const body = res.json();
    return body && typeof body.code === 'string' ? body.code : '';
  } catch (e) {
    return '';
  }
}

function holdBody(res) {
  try {
    const body = res.json();
    return body && typeof body === 'object' ? body : null;
  } catch (e) {
    return null;
  }
}

function isUUID(s) {
  return typeof s === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}

// bad counts an unexpected answer and says what it was.
function bad(what, res, why) {
  const code = errorCode(res);
  unexpected.add(1, { status: String(res.status), code: code });
  check(res, { [`${what}: an expected answer`]: () => false });
  console.warn(`unexpected answer to ${what}: ${why}: status ${res.status} code ${JSON.stringify(code)} ` +
    `request id ${JSON.stringify(res.headers['X-Request-Id'] || '')} ` +
    `error ${JSON.stringify(res.error || '')} body ${JSON.stringify(String(res.body || '').slice(0, 300))}`);
}

// retryWait is how long to wait after a 429: its Retry-After, at most
// MAX_RETRY_WAIT seconds, and never more than the hold has left.
function retryWait(res, expiresAt) {
  let wait = parseFloat(res.headers['Retry-After']);
  if (!(wait > 0)) {
    wait = 0.2;
  }
  wait = Math.min(wait, MAX_RETRY_WAIT);
  if (expiresAt) {
    wait = Math.min(wait, Math.max(0, (expiresAt - Date.now()) / 1000));
  }
  return wait;
}

const JSON_HEADERS = { 'Content-Type': 'application/json' };

// createHold asks for a hold and returns it on 201, else null (sold out,
// busy or unexpected, each counted).
//
// items, when given, is a list of {category_id, quantity}: the hold asks for
// those categories instead of the seed's quantity, and quantity must be
// their sum.
export function createHold(eventId, email, quantity, idempotencyKey, items) {
  const headers = Object.assign({}, JSON_HEADERS);
  if (idempotencyKey) {
    headers['Idempotency-Key'] = idempotencyKey;
  }
  const body = items
    ? { event_id: eventId, user_email: email, items: items }
    : { event_id: eventId, user_email: email, quantity: quantity };
  const res = http.post(`${baseURL()}/holds`,
    JSON.stringify(body),
    { headers: headers, tags: { name: 'POST /holds' } });
  if (res.status !== 0) {
    holdLatency.add(res.timings.duration);
  }
  if (res.status === 201) {
    const h = holdBody(res);
    if (!h || !isUUID(h.id) || h.status !== 'pending' || h.event_id !== eventId ||
      h.quantity !== quantity || h.user_email !== email || !h.expires_at ||
      (items && (!Array.isArray(h.items) || h.items.length !== items.length))) {
      bad('POST /holds', res, 'not the pending hold asked for');
      return null;
    }
    holdsMade.add(1);
    check(res, { 'hold made': () => true });
    return { id: h.id, quantity: h.quantity, expiresAt: Date.parse(h.expires_at) };
  }
  const code = errorCode(res);
  if (res.status === 409 && code === 'sold_out') {
    soldOut.add(1);
    check(res, { 'sold out': () => true });
  } else if (res.status === 429 && code === 'busy') {
    busy.add(1);
    check(res, { busy: () => true });
  } else {
    bad('POST /holds', res, 'not 201, 409 sold_out or 429 busy');
  }
  return null;
}

// confirmHold confirms a hold, retrying a 429 up to MAX_RETRIES times (or,
// with untilExpiry, for as long as the hold lasts) with the same
// Idempotency-Key, which a 429 does not use up. It returns the outcome:
// 'confirmed', 'expired', 'gave_up' or 'unexpected'.
export function confirmHold(hold, idempotencyKey, untilExpiry) {
  const headers = {};
  if (idempotencyKey) {
    headers['Idempotency-Key'] = idempotencyKey;
  }
  const url = `${baseURL()}/holds/${hold.id}/confirm`;
  for (let attempt = 0; ; attempt++) {
    const res = http.post(url, null, { headers: headers, tags: { name: 'POST /holds/{id}/confirm' } });
    const code = res.status === 200 ? '' : errorCode(res);
    if (res.status === 200) {
      const h = holdBody(res);
      if (!h || h.id !== hold.id || h.status !== 'confirmed' || !h.confirmed_at) {
        bad('POST /holds/{id}/confirm', res, 'not the confirmed hold');
        return 'unexpected';
      }
      confirmed.add(1);
      check(res, { confirmed: () => true });
      return 'confirmed';
    }
    if (res.status === 410 && code === 'hold_expired') {
      holdExpired.add(1);
      check(res, { 'hold expired before confirm': () => true });
      return 'expired';
    }
    if (res.status === 429 && code === 'busy') {
      busy.add(1);
      check(res, { busy: () => true });
      const more = untilExpiry ? Date.now() < hold.expiresAt : attempt < MAX_RETRIES;
      if (!more) {
        gaveUp.add(1);
        return 'gave_up';
      }
      sleep(retryWait(res, untilExpiry ? hold.expiresAt : 0));
      continue;
    }
    bad('POST /holds/{id}/confirm', res, 'not 200 confirmed, 410 hold_expired or 429 busy');
    return 'unexpected';
  }
}

// releaseHold releases a hold, retrying a 429 like confirmHold. It returns
// 'released', 'expired', 'gave_up' or 'unexpected'.
export function releaseHold(hold) {
  const url = `${baseURL()}/holds/${hold.id}`;
  for (let attempt = 0; ; attempt++) {
    const res = http.del(url, null, { tags: { name: 'DELETE /holds/{id}' } });
    const code = res.status === 200 ? '' : errorCode(res);
    if (res.status === 200) {
      const h = holdBody(res);
      if (h && h.id === hold.id && h.status === 'released') {
        released.add(1);
        check(res, { released: () => true });
        return 'released';
      }
      if (h && h.id === hold.id && h.status === 'expired') {
        holdExpired.add(1);
        check(res, { 'hold expired before release': () => true });
        return 'expired';
      }
      bad('DELETE /holds/{id}', res, 'not the released (or expired) hold');
      return 'unexpected';
    }
    if (res.status === 429 && code === 'busy') {
      busy.add(1);
      check(res, { busy: () => true });
      if (attempt >= MAX_RETRIES) {
        gaveUp.add(1);
        return 'gave_up';
      }
      sleep(retryWait(res, 0));
      continue;
    }
    bad('DELETE /holds/{id}', res, 'not 200 released or 429 busy');
    return 'unexpected';
  }
}
