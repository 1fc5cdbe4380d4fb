package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// corrupt runs q with the schema's refusing triggers off, to make a state
// the database would refuse: as superuser (the test server's PostgreSQL is
// private), SET LOCAL session_replication_role = replica switches triggers
// off for this one transaction. CHECK constraints stay on.
func (ts *testServer) corrupt(q string, args ...any) {
	ts.t.Helper()
	ctx := context.Background()
	tx, err := ts.db().BeginTxx(ctx, nil)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		ts.t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		ts.t.Fatalf("%s: %v", q, err)
	}
	if err := tx.Commit(); err != nil {
		ts.t.Fatal(err)
	}
}

// runCheckOn runs `holdfast check --sweep-every 1s` for the events and
// returns its output and exit status (0, or the exitError's).
func (ts *testServer) runCheckOn(events ...int64) (string, int) {
	ts.t.Helper()
	args := []string{"check", "--database-url", ts.cfg.DatabaseURL, "--sweep-every", "1s"}
	for _, id := range events {
		args = append(args, "--event", itoa(id))
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	var exit exitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), int(exit)
	}
	ts.t.Fatalf("check: %v\n%s", err, errOut.String())
	return "", 0
}

// checkRow is the line of check's table for event id.
func checkRow(out string, id int64) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == itoa(id) {
			return line
		}
	}
	return ""
}

// Each invariant `holdfast check` claims, broken in the database the way a
// second writer would break it, at the edge of its comparison: check must
// exit 1 and name the event, and pass a healthy event checked with it. A
// check weakened at any edge (> for >=, a sum that misses a status, a grace
// doubled) fails one of these.
func TestCheckFindsEachBrokenInvariant(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := ts.db().ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	confirmHold := func(ev int64) string {
		t.Helper()
		h := ts.mustHold(ev, 2)
		if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil); res.Status != http.StatusOK {
			t.Fatalf("confirm: %d %s", res.Status, res.Body)
		}
		return h.ID
	}
	// foreignItem moves the item of a hold of 2 on event ev to a category
	// of event other.
	foreignItem := func() (ev, other int64) {
		ev, other = ts.newEvent(10, true), ts.newEvent(10, true)
		h := ts.mustHold(ev, 2)
		ts.corrupt(`UPDATE booking_items SET category_id = (SELECT min(id) FROM categories WHERE event_id = $2)
			WHERE booking_id = (SELECT id FROM bookings WHERE hold_id = $1)`, h.ID, other)
		return ev, other
	}
	cases := []struct {
		name  string
		event func() int64
		want  string
	}{
		{"a confirmed booking deleted: sum below total", func() int64 {
			ev := ts.newEvent(10, true)
			id := confirmHold(ev)
			ts.corrupt(`DELETE FROM bookings WHERE hold_id = $1`, id)
			return ev
		}, "available+held+confirmed = 8, total = 10"},
		{"a pending hold deleted: sum below total", func() int64 {
			ev := ts.newEvent(10, true)
			h := ts.mustHold(ev, 1)
			ts.corrupt(`DELETE FROM bookings WHERE hold_id = $1`, h.ID)
			return ev
		}, "available+held+confirmed = 9, total = 10"},
		{"stock put back under a confirmed booking: sum above total", func() int64 {
			ev := ts.newEvent(10, true)
			confirmHold(ev)
			ts.corrupt(`UPDATE events SET available_tickets = total_tickets WHERE id = $1`, ev)
			return ev
		}, "available+held+confirmed = 12, total = 10"},
		{"stock put back under a pending hold: sum above total", func() int64 {
			ev := ts.newEvent(10, true)
			ts.mustHold(ev, 1)
			ts.corrupt(`UPDATE events SET available_tickets = total_tickets WHERE id = $1`, ev)
			return ev
		}, "available+held+confirmed = 11, total = 10"},
		{"oversold by one", func() int64 {
			ev := ts.newEvent(1, false)
			exec(`INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
				VALUES ($1, 'a@example.com', 2, 51, 'confirmed')`, ev)
			return ev
		}, "oversold by 1"},
		{"available one above total", func() int64 {
			ev := ts.newEvent(10, true)
			// Only a dropped constraint lets this state exist; the
			// database is this test's own.
			exec(`ALTER TABLE events DROP CONSTRAINT events_stock_ceiling`)
			ts.corrupt(`UPDATE events SET available_tickets = total_tickets + 1 WHERE id = $1`, ev)
			return ev
		}, "available above total"},
		{"a category's stock put back under a hold: its sum above total", func() int64 {
			ev := ts.newEvent(10, true)
			ts.mustHold(ev, 1)
			ts.corrupt(`UPDATE categories SET available_tickets = total_tickets WHERE event_id = $1`, ev)
			return ev
		}, "available+held+confirmed = 11, total = 10"},
		{"a category's item deleted under its hold: its sum below total", func() int64 {
			ev := ts.newEvent(10, true)
			h := ts.mustHold(ev, 2)
			ts.corrupt(`DELETE FROM booking_items WHERE booking_id = (SELECT id FROM bookings WHERE hold_id = $1)`, h.ID)
			return ev
		}, "available+held+confirmed = 8, total = 10"},
		// booking_items and bookings have no foreign keys (schema/020):
		// triggers, which a replica session skips, keep each item's
		// booking and category and each booking's event, and check
		// reports what they would refuse.
		{"an item whose booking is gone", func() int64 {
			ev := ts.newEvent(10, true)
			h := ts.mustHold(ev, 2)
			ts.corrupt(`DELETE FROM bookings WHERE hold_id = $1`, h.ID)
			return ev
		}, "1 booking items of no booking"},
		{"an item whose category is gone", func() int64 {
			ev := ts.newEvent(10, true)
			h := ts.mustHold(ev, 2)
			ts.corrupt(`UPDATE booking_items SET category_id = 2147483647 WHERE booking_id = (SELECT id FROM bookings WHERE hold_id = $1)`, h.ID)
			return ev
		}, "1 booking items of no category"},
		{"an item of another event's category", func() int64 {
			ev, _ := foreignItem()
			return ev
		}, "1 booking items of a category of another event"},
		{"an item of another event's category, checked under that event", func() int64 {
			ev, other := foreignItem()
			// The stock moved to match, so only the item says so.
			ts.corrupt(`UPDATE categories SET available_tickets = available_tickets + 2 WHERE event_id = $1`, ev)
			ts.corrupt(`UPDATE categories SET available_tickets = available_tickets - 2 WHERE event_id = $1`, other)
			return other
		}, "1 booking items of another event's bookings in its categories"},
		{"a hold whose event is gone", func() int64 {
			ev := ts.newEvent(10, true)
			ts.mustHold(ev, 1)
			ts.corrupt(`DELETE FROM events WHERE id = $1`, ev)
			return ev
		}, "no such event; 1 bookings of this event, which does not exist"},
		{"a category oversold by one", func() int64 {
			ev := ts.newEvent(10, true)
			exec(`ALTER TABLE categories DROP CONSTRAINT categories_stock_guard`)
			ts.corrupt(`UPDATE categories SET total_tickets = 0, available_tickets = -1 WHERE event_id = $1`, ev)
			return ev
		}, "oversold by 1"},
		{"confirmed at the instant its hold expired", func() int64 {
			ev := ts.newEvent(10, true)
			id := confirmHold(ev)
			exec(`UPDATE bookings SET expires_at = confirmed_at WHERE hold_id = $1`, id)
			return ev
		}, "1 bookings confirmed after their hold expired"},
		{"a hold pending 3s past expiry, sweeping every 1s", func() int64 {
			ev := ts.newEvent(10, true)
			h := ts.mustHold(ev, 1)
			exec(`UPDATE bookings SET expires_at = now() - interval '3 seconds' WHERE hold_id = $1`, h.ID)
			return ev
		}, "1 pending holds more than a sweep interval + 1s past expiry"},
	}
	for _, c := range cases {
		healthy := ts.newEvent(10, true)
		ts.mustHold(healthy, 1)
		confirmHold(healthy)
		bad := c.event()
		out, code := ts.runCheckOn(healthy, bad)
		if code != 1 {
			t.Errorf("%s: check exited %d, want 1:\n%s", c.name, code, out)
		}
		if row := checkRow(out, bad); !strings.Contains(row, "VIOLATION") || !strings.Contains(row, c.want) {
			t.Errorf("%s: event %d's row is %q, want a VIOLATION naming %q:\n%s", c.name, bad, row, c.want, out)
		}
		if row := checkRow(out, healthy); !strings.HasSuffix(row, " ok") {
			t.Errorf("%s: healthy event %d's row is %q, want ok:\n%s", c.name, healthy, row, out)
		}
	}
	if out, code := ts.runCheckOn(999999); code != 1 || !strings.Contains(checkRow(out, 999999), "no such event") {
		t.Errorf("unknown event: exit %d:\n%s", code, out)
	}
}

// The edges on the healthy side: a hold lapsed within the grace, a confirm
// just in time, stock exactly at total and exactly at zero, all pass.
func TestCheckPassesTheEdgesOfEachInvariant(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ctx := context.Background()
	full := ts.newEvent(10, true) // available = total
	empty := ts.newEvent(2, true) // available = 0
	h := ts.mustHold(empty, 2)
	if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil); res.Status != http.StatusOK {
		t.Fatalf("confirm: %d %s", res.Status, res.Body)
	}
	if _, err := ts.db().ExecContext(ctx, `UPDATE bookings SET expires_at = confirmed_at + interval '1 microsecond' WHERE hold_id = $1`, h.ID); err != nil {
		t.Fatal(err)
	}
	lapsed := ts.newEvent(10, true)
	l := ts.mustHold(lapsed, 1)
	if _, err := ts.db().ExecContext(ctx, `UPDATE bookings SET expires_at = now() - interval '500 milliseconds' WHERE hold_id = $1`, l.ID); err != nil {
		t.Fatal(err)
	}
	if out, code := ts.runCheckOn(full, empty, lapsed); code != 0 {
		t.Fatalf("check exited %d on healthy edges:\n%s", code, out)
	}
}

// An event named by plain SQL may hold any character; check prints its name
// with control and format characters escaped, so an escape sequence cannot
// rewrite the operator's terminal, and cuts a long name between characters.
func TestCheckPrintsNamesSafely(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(5, true)
	evil := "Gala\x1b[2J\x1b]0;owned\x07\u202eevil\u200b" + strings.Repeat("é", 40)
	if _, err := ts.db().ExecContext(context.Background(), `UPDATE events SET name = $1 WHERE id = $2`, evil, ev); err != nil {
		t.Fatal(err)
	}
	out, code := ts.runCheckOn(ev)
	if code != 0 {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	for _, r := range out {
		if r != '\n' && (r < 0x20 || r == 0x7f || r == '\u202e' || r == '\u200b') {
			t.Fatalf("check printed %U raw:\n%q", r, out)
		}
	}
	if !strings.Contains(out, `Gala\u001b[2J`) || !strings.Contains(out, "...") || !utf8.ValidString(out) {
		t.Errorf("check output %q: want the escape shown as \\u001b, the name cut with ..., valid UTF-8", out)
	}
}

// --sweep-every below a second is refused, as serve refuses it: a grace
// below zero called fresh holds stale (exit 1, a violation) where a bad
// flag is exit 2.
func TestCheckRefusesASweepIntervalServeWouldRefuse(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(10, true)
	ts.mustHold(ev, 1)
	for _, every := range []string{"-20m", "0s", "500ms"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"check", "--database-url", ts.cfg.DatabaseURL, "--sweep-every", every, "--event", itoa(ev)},
			func(string) string { return "" }, &out, &errOut)
		var exit exitError
		if err == nil || errors.As(err, &exit) || !strings.Contains(err.Error(), "--sweep-every must be at least 1s") {
			t.Errorf("check --sweep-every %s: %v (%s), want the flag refused (exit 2)", every, err, out.String())
		}
	}
}
