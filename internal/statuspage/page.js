// The status page: reads /status.json every second and draws it. Every
// value from the feed goes into the page as text, never as HTML.
'use strict';
(() => {
  const PAGE_SIZE = 10;      // events per page; the feed is asked for one more to know if there is a next page
  const REFRESH_MS = 1000;
  const TIMEOUT_MS = 5000;

  const $ = (id) => document.getElementById(id);
  const eventsList = $('events');
  const holdsBody = $('holds-body');
  const numbers = new Intl.NumberFormat('en-US');
  const pace = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const QUEUE_STATES = { pre_queue: 'pre-queue', open: 'queue open', sold_out: 'sold out', closed: 'queue closed', unavailable: 'queue unavailable' };

  const state = {
    page: 0,
    names: new Map(),  // event id -> name, from every page seen, for the holds table
    holds: [],
    receivedAt: 0,     // performance.now() when the holds arrived
  };
  let seq = 0;         // the latest request; answers to older ones are dropped
  let timer = 0;

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(n, total) {
    if (total <= 0) return 0;
    return Math.min(100, Math.max(0, (n / total) * 100));
  }

  // newEventRow builds the row an event is drawn in; drawEvent fills it.
  function newEventRow(id) {
    const li = make('li', 'event');
    li.dataset.eventId = String(id);
    const head = make('div', 'event-head');
    head.append(make('span', 'event-name'), make('span', 'event-id', '#' + id));
    const taken = make('span', 'event-taken');
    taken.append(make('b', 'taken-pct'), ' taken');
    head.append(taken);
    const bar = make('div', 'bar');
    bar.setAttribute('role', 'img');
    bar.append(make('span', 'seg seg-confirmed'), make('span', 'seg seg-held'), make('span', 'seg seg-available'));
    const counts = make('div', 'counts');
    for (const kind of ['confirmed', 'held', 'available']) {
      const c = make('span', 'count ' + kind);
      c.append(make('i', 'swatch ' + kind), make('b', kind + '-count'), ' ' + kind);
      counts.append(c);
    }
    const total = make('span', 'count total');
    total.append('of ', make('b', 'total-count'));
    counts.append(total);
    // The waiting room, for an event with one: counts only, never a place.
    const queue = make('div', 'queue');
    queue.hidden = true;
    for (const part of ['state', 'waiting', 'rate', 'admitted']) {
      const c = make('span', 'queue-' + part);
      if (part !== 'state') c.append(make('b', 'queue-' + part + '-count'), make('span', 'queue-' + part + '-unit'));
      queue.append(c);
    }
    // The categories, for an event with several: what each has left.
    const cats = make('ul', 'categories');
    cats.hidden = true;
    // The seat map, for a seated event: every seat, never who holds it.
    const seats = make('canvas', 'seatmap');
    seats.hidden = true;
    seats.setAttribute('role', 'img');
    li.append(head, bar, counts, cats, queue, seats);
    return li;
  }

  const SEAT_KINDS = { a: 'available', h: 'held', s: 'confirmed' };
  const SEAT_LABEL_PX = 11;    // a section's name above its rows
  const SEAT_MAX_PX = 12;      // the largest a seat is drawn

  // drawSeats draws a seat map: each section's name, then its rows, one
  // square a seat. The layout (where each row is, how big a seat is) is
  // kept on the canvas's data attributes, for tests and for anyone reading
  // the page with tools.
  function drawSeats(canvas, rows) {
    canvas.hidden = !rows || rows.length === 0;
    if (canvas.hidden) return;
    const css = getComputedStyle(document.documentElement);
    const color = (kind) => css.getPropertyValue('--' + kind).trim();
    // The list's width: a new row is drawn before it joins the page.
    const width = Math.max(120, eventsList.clientWidth);
    const longest = rows.reduce((n, r) => Math.max(n, r.seats.length), 1);
    const cell = Math.max(2, Math.min(SEAT_MAX_PX, Math.floor(width / longest)));
    const gap = cell >= 5 ? 1 : 0;
    let height = 0;
    let section = null;
    const layout = rows.map((r) => {
      if (r.section !== section) {
        section = r.section;
        height += SEAT_LABEL_PX + 4;
      }
      const y = height;
      height += cell;
      return y;
    });
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext('2d');
    g.clearRect(0, 0, width, height);
    g.font = '10px system-ui, sans-serif';
    g.textBaseline = 'top';
    const counts = { available: 0, held: 0, confirmed: 0 };
    section = null;
    rows.forEach((r, i) => {
      if (r.section !== section) {
        section = r.section;
        g.fillStyle = color('muted');
        g.fillText('Section ' + r.section, 0, layout[i] - SEAT_LABEL_PX - 2);
      }
      for (let k = 0; k < r.seats.length; k++) {
        const kind = SEAT_KINDS[r.seats[k]] || 'available';
        counts[kind]++;
        g.fillStyle = color(kind);
        g.fillRect(k * cell, layout[i], cell - gap, cell - gap);
      }
    });
    canvas.dataset.cell = String(cell);
    canvas.dataset.rows = layout.join(',');
    canvas.dataset.available = String(counts.available);
    canvas.dataset.held = String(counts.held);
    canvas.dataset.sold = String(counts.confirmed);
    canvas.setAttribute('aria-label',
      `seat map: ${counts.confirmed} sold, ${counts.held} held, ${counts.available} available`);
  }

  function drawQueue(div, queue) {
    div.hidden = !queue;
    if (!queue) return;
    const q = (sel) => div.querySelector(sel);
    const known = (n, fmt) => (n === null ? '—' : fmt.format(n));
    div.dataset.state = queue.state;
    q('.queue-state').textContent = QUEUE_STATES[queue.state] || queue.state;
    q('.queue-waiting-count').textContent = known(queue.waiting, numbers);
    q('.queue-waiting-unit').textContent = ' waiting';
    q('.queue-rate-count').textContent = known(queue.admitted_per_second, pace) + '/s';
    q('.queue-rate-unit').textContent = ' admitted (at most ' + numbers.format(queue.admit_per_second) + '/s)';
    q('.queue-admitted-count').textContent = known(queue.admitted, numbers);
    q('.queue-admitted-unit').textContent = ' admitted in all';
  }

  function drawCategories(ul, categories) {
    ul.hidden = categories.length < 2;
    ul.replaceChildren(...(ul.hidden ? [] : categories.map((c) => {
      const item = make('li', 'category');
      item.append(make('span', 'category-name', c.name), ' ',
        make('b', 'category-available', numbers.format(c.available_tickets)),
        ' of ' + numbers.format(c.total_tickets) + ' left');
      return item;
    })));
  }

  function drawEvent(li, ev) {
    const q = (sel) => li.querySelector(sel);
    q('.event-name').textContent = ev.name;
    q('.event-name').title = ev.name;
    const taken = ev.confirmed_tickets + ev.held_tickets;
    q('.taken-pct').textContent = Math.round(percent(taken, ev.total_tickets)) + '%';
    for (const [kind, n] of [['confirmed', ev.confirmed_tickets], ['held', ev.held_tickets], ['available', ev.available_tickets]]) {
      q('.' + kind + '-count').textContent = numbers.format(n);
      q('.seg-' + kind).style.width = percent(n, ev.total_tickets) + '%';
    }
    q('.total-count').textContent = numbers.format(ev.total_tickets);
    drawCategories(q('.categories'), ev.categories || []);
    drawQueue(q('.queue'), ev.queue);
    drawSeats(q('.seatmap'), ev.seat_map);
    q('.bar').setAttribute('aria-label',
      `${ev.confirmed_tickets} confirmed, ${ev.held_tickets} held, ${ev.available_tickets} available of ${ev.total_tickets}`);
  }

  // drawEvents keeps the row of an event that stays on the page, so its bar
  // moves smoothly from one second to the next.
  function drawEvents(events) {
    const shown = events.slice(0, PAGE_SIZE);
    const old = new Map();
    for (const li of eventsList.children) old.set(li.dataset.eventId, li);
    const rows = shown.map((ev) => {
      state.names.set(ev.id, ev.name);
      const li = old.get(String(ev.id)) || newEventRow(ev.id);
      drawEvent(li, ev);
      return li;
    });
    eventsList.replaceChildren(...rows);
    $('events-empty').hidden = shown.length > 0;
    $('prev').disabled = state.page === 0;
    $('next').disabled = events.length <= PAGE_SIZE;
    $('page-label').textContent = 'Page ' + (state.page + 1);
    const first = state.page * PAGE_SIZE + 1;
    $('events-range').textContent = shown.length > 0
      ? `busiest first · ${first}–${first + shown.length - 1}`
      : 'busiest first';
  }

  function timeLeft(hold) {
    if (hold.status !== 'pending') return '—';
    const elapsed = (performance.now() - state.receivedAt) / 1000;
    const left = Math.max(0, Math.ceil(hold.seconds_left - elapsed));
    const m = Math.floor(left / 60);
    const s = left % 60;
    return m + ':' + String(s).padStart(2, '0');
  }

  function drawHolds(holds) {
    state.holds = holds;
    state.receivedAt = performance.now();
    const rows = holds.map((h) => {
      const tr = make('tr', 'hold');
      tr.dataset.tag = h.tag;
      tr.dataset.status = h.status;
      tr.dataset.eventId = String(h.event_id);
      tr.title = 'taken ' + new Date(h.created_at).toLocaleTimeString();
      const tag = make('td', 'hold-tag');
      tag.append(make('code', '', h.tag));
      // The id first: a long name is cut short, the id never is.
      const ev = make('td', 'hold-event');
      ev.append(make('span', 'event-id', '#' + h.event_id), ' ' + (state.names.get(h.event_id) || ''));
      const status = make('td', 'hold-status');
      status.append(make('span', 'pill pill-' + h.status, h.status));
      tr.append(tag, ev, make('td', 'hold-qty num', String(h.quantity)), status, make('td', 'hold-left num', timeLeft(h)));
      return tr;
    });
    holdsBody.replaceChildren(...rows);
    $('holds-empty').hidden = holds.length > 0;
  }

  // tick counts the pending holds down between two answers of the feed.
  function tick() {
    const rows = holdsBody.children;
    state.holds.forEach((h, i) => {
      if (rows[i]) rows[i].querySelector('.hold-left').textContent = timeLeft(h);
    });
  }

  function setLive(ok, text) {
    $('live').dataset.state = ok ? 'ok' : 'error';
    $('live-text').textContent = text;
  }

  async function refresh() {
    clearTimeout(timer);
    const mine = ++seq;
    const url = `/status.json?limit=${PAGE_SIZE + 1}&offset=${state.page * PAGE_SIZE}`;
    try {
      const res = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS) });
      const body = await res.json();
      if (mine !== seq) return;
      if (!res.ok) throw new Error(body.error || 'HTTP ' + res.status);
      drawEvents(body.events);
      drawHolds(body.holds);
      const db = body.database ? ' · database ' + body.database.role + ', ' + body.database.replication : '';
      setLive(true, 'live · updated ' + new Date(body.generated_at).toLocaleTimeString() + db);
    } catch (err) {
      if (mine === seq) setLive(false, 'reconnecting… (' + err.message + ')');
    } finally {
      if (mine === seq) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  $('prev').addEventListener('click', () => {
    if (state.page > 0) { state.page--; refresh(); }
  });
  $('next').addEventListener('click', () => { state.page++; refresh(); });
  setInterval(tick, 1000);
  refresh();
})();
