package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// extendConfig is the server of the extend tests: holds last 10m, at most
// 15m after they were made.
func extendConfig(c *config) {
	c.HoldTTL, c.HoldMax = 10*time.Minute, 15*time.Minute
	c.TicketCap = 0
	c.AdminToken = testToken
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return v
}

// dbTime reads one timestamp of a hold's row, as the database has it.
func (ts *testServer) dbTime(id, expr string) time.Time {
	ts.t.Helper()
	var v time.Time
	if err := ts.db().GetContext(context.Background(), &v, `SELECT `+expr+` FROM bookings WHERE hold_id = $1`, id); err != nil {
		ts.t.Fatal(err)
	}
	return v
}

func TestExtendMovesTheExpiryUpToTheMax(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, extendConfig)
	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 2)

	// An extend takes no body and ignores Content-Type.
	res := ts.do("POST", "/holds/"+h.ID+"/extend", "", "Content-Type", "text/plain")
	if res.Status != http.StatusOK {
		t.Fatalf("extend: %d %s", res.Status, res.Body)
	}
	var got holdBody
	res.json(t, &got)
	before, after := parseTime(t, h.ExpiresAt), parseTime(t, got.ExpiresAt)
	if got.Status != "pending" || got.ID != h.ID || !after.After(before) {
		t.Fatalf("extended hold = %+v, want pending with expires_at after %s", got, h.ExpiresAt)
	}
	if d := after.Sub(parseTime(t, got.CreatedAt)); d < 10*time.Minute || d > 11*time.Minute {
		t.Fatalf("extended hold lasts %s from its creation, want about now + 10m", d)
	}

	// Make the hold 8 minutes old, expiring in one: now + 10m would pass
	// created_at + 15m, so the extend stops at exactly the cap.
	if _, err := ts.db().ExecContext(context.Background(), `UPDATE bookings SET created_at = now() - interval '8 minutes',
		expires_at = now() + interval '1 minute' WHERE hold_id = $1`, h.ID); err != nil {
		t.Fatal(err)
	}
	res = ts.do("POST", "/holds/"+h.ID+"/extend", nil)
	if res.Status != http.StatusOK {
		t.Fatalf("extend to the cap: %d %s", res.Status, res.Body)
	}
	res.json(t, &got)
	capAt := ts.dbTime(h.ID, `created_at + interval '15 minutes'`)
	if exp := ts.dbTime(h.ID, "expires_at"); !exp.Equal(capAt) || !parseTime(t, got.ExpiresAt).Equal(capAt) {
		t.Fatalf("expires_at = %s (answered %s), want the cap %s", exp, got.ExpiresAt, capAt)
	}
	// At the cap: refused, and the hold is unchanged.
	expectError(t, "extend past the cap", ts.do("POST", "/holds/"+h.ID+"/extend", nil), 409, "extend_limit")
	if exp := ts.dbTime(h.ID, "expires_at"); !exp.Equal(capAt) {
		t.Fatalf("expires_at moved to %s after extend_limit, want %s", exp, capAt)
	}
	if n := ts.available(ev); n != 8 {
		t.Fatalf("stock = %d, want 8: extending moves no stock", n)
	}
	// Still confirmable within its time.
	if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil); res.Status != 200 {
		t.Fatalf("confirm after extends: %d %s", res.Status, res.Body)
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check failed:\n%s", out)
	}
}

func TestExtendRefusesHoldsThatAreOver(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, extendConfig)
	ev := ts.newEvent(10, true)
	auth := []string{"Authorization", "Bearer " + testToken}

	lapsed := ts.mustHold(ev, 1)
	ts.lapse(lapsed.ID)
	expectError(t, "extend of a lapsed hold", ts.do("POST", "/holds/"+lapsed.ID+"/extend", nil), 410, "hold_expired")
	// Failed as expired at once, its stock back, whether or not swept.
	var status, reason string
	if err := ts.db().QueryRowContext(context.Background(), `SELECT booking_status, failure_reason FROM bookings WHERE hold_id = $1`, lapsed.ID).Scan(&status, &reason); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || reason != "expired" {
		t.Fatalf("lapsed hold after extend: %s/%s, want failed/expired", status, reason)
	}
	expectError(t, "extend of an expired hold, again", ts.do("POST", "/holds/"+lapsed.ID+"/extend", nil), 410, "hold_expired")

	released := ts.mustHold(ev, 1)
	ts.do("DELETE", "/holds/"+released.ID, nil)
	expectError(t, "extend of a released hold", ts.do("POST", "/holds/"+released.ID+"/extend", nil), 409, "hold_released")

	confirmed := ts.mustHold(ev, 1)
	ts.do("POST", "/holds/"+confirmed.ID+"/confirm", nil)
	expectError(t, "extend of a confirmed hold", ts.do("POST", "/holds/"+confirmed.ID+"/extend", nil), 409, "hold_confirmed")

	cancelled := ts.mustHold(ev, 1)
	ts.do("POST", "/holds/"+cancelled.ID+"/confirm", nil)
	if res := ts.do("POST", "/holds/"+cancelled.ID+"/cancel", nil, auth...); res.Status != 200 {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	expectError(t, "extend of a cancelled booking", ts.do("POST", "/holds/"+cancelled.ID+"/extend", nil), 409, "hold_cancelled")

	expectError(t, "extend of no hold", ts.do("POST", "/holds/00000000-0000-4000-8000-000000000000/extend", nil), 404, "not_found")
	expectError(t, "extend of a bad id", ts.do("POST", "/holds/nope/extend", nil), 400, "invalid_request")

	if n := ts.available(ev); n != 9 {
		t.Fatalf("stock = %d, want 9 (only the confirmed hold's ticket out)", n)
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check failed:\n%s", out)
	}
}

func TestExtendHonoursItsIdempotencyKey(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, extendConfig)
	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 1)
	key := []string{"Idempotency-Key", "extend-once-0001"}
	first := ts.do("POST", "/holds/"+h.ID+"/extend", nil, key...)
	if first.Status != 200 {
		t.Fatalf("extend: %d %s", first.Status, first.Body)
	}
	exp := ts.dbTime(h.ID, "expires_at")
	again := ts.do("POST", "/holds/"+h.ID+"/extend", nil, key...)
	if again.Status != 200 || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s (replayed %q), want %s", again.Status, again.Body, again.Header.Get("Idempotent-Replayed"), first.Body)
	}
	if got := ts.dbTime(h.ID, "expires_at"); !got.Equal(exp) {
		t.Fatalf("a replay moved expires_at from %s to %s", exp, got)
	}
	// The key is scoped to the hold: on another hold it is another request.
	other := ts.mustHold(ev, 1)
	if res := ts.do("POST", "/holds/"+other.ID+"/extend", nil, key...); res.Status != 200 || res.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("same key on another hold: %d %s", res.Status, res.Body)
	}
	m := ts.scrape()
	if got := m["holdfast_holds_extended_total"]; got != 2 {
		t.Fatalf("holds_extended_total = %v, want 2", got)
	}
}

// Holds lapse while buyers extend them and sweepers sweep them. A hold the
// sweeper or an extend found expired must never come back: the first extend
// of a hold that succeeded was sent before the hold's expiry (the database
// and the test share the machine's clock), no hold is answered both 410 and
// 200, every hold left pending was extended, every other one failed as
// expired, and the stock adds up.
func TestExtendNeverResurrectsALapsedHold(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, extendConfig, func(t *testing.T, ts *testServer, _ bool) {
		const holds, extendsPerHold = 40, 4
		ev := ts.newEvent(holds, true)
		ids := make([]string, holds)
		for i := range ids {
			ids[i] = ts.mustHold(ev, 1).ID
		}
		// Each hold lapses within the next 300ms, some already.
		if _, err := ts.db().ExecContext(context.Background(), `UPDATE bookings
			SET expires_at = now() + (random() * 400 - 100) * interval '1 millisecond' WHERE event_id = $1`, ev); err != nil {
			t.Fatal(err)
		}
		expiry := map[string]time.Time{}
		for _, id := range ids {
			expiry[id] = ts.dbTime(id, "expires_at")
		}
		var (
			mu         sync.Mutex
			answers    = map[string]map[int]int{}
			firstGrant = map[string]time.Time{}
			wg         sync.WaitGroup
		)
		stop := make(chan struct{})
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := ts.app.store.SweepExpired(context.Background(), 10); err != nil {
						t.Errorf("sweep: %v", err)
						return
					}
				}
			}()
		}
		var buyers sync.WaitGroup
		for i, id := range ids {
			for k := 0; k < extendsPerHold; k++ {
				buyers.Add(1)
				go func() {
					defer buyers.Done()
					time.Sleep(time.Duration((i*7+k*53)%300) * time.Millisecond)
					sent := time.Now()
					res := ts.do("POST", "/holds/"+id+"/extend", nil)
					mu.Lock()
					defer mu.Unlock()
					if first, ok := firstGrant[id]; res.Status == 200 && (!ok || sent.Before(first)) {
						firstGrant[id] = sent
					}
					if answers[id] == nil {
						answers[id] = map[int]int{}
					}
					answers[id][res.Status]++
				}()
			}
		}
		buyers.Wait()
		close(stop)
		wg.Wait()
		ts.app.store.SweepExpired(context.Background(), 100)

		pending := 0
		for _, id := range ids {
			a := answers[id]
			for st := range a {
				if st != 200 && st != 410 {
					t.Errorf("hold %s: answered %d", id, st)
				}
			}
			var status string
			if err := ts.db().GetContext(context.Background(), &status, `SELECT booking_status || '/' || coalesce(failure_reason, '') FROM bookings WHERE hold_id = $1`, id); err != nil {
				t.Fatal(err)
			}
			switch {
			case a[200] > 0 && a[410] > 0:
				t.Errorf("hold %s answered both 200 and 410: %v", id, a)
			case a[200] > 0 && status != "pending/":
				t.Errorf("hold %s was extended but is %s", id, status)
			case a[200] == 0 && status != "failed/expired":
				t.Errorf("hold %s was never extended but is %s", id, status)
			}
			if first, ok := firstGrant[id]; ok && !first.Before(expiry[id]) {
				t.Errorf("hold %s expired at %s, but the first extend that succeeded was sent at %s", id,
					expiry[id].Format(time.RFC3339Nano), first.Format(time.RFC3339Nano))
			}
			if status == "pending/" {
				pending++
			}
		}
		if got := ts.available(ev); got != holds-pending {
			t.Fatalf("stock = %d, want %d (%d holds still pending)", got, holds-pending, pending)
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check failed:\n%s", out)
		}
		t.Logf("%d of %d holds extended in time", pending, holds)
	})
}

func TestCancelRefundsAConfirmedBookingOnce(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, extendConfig)
	ev := ts.newEvent(10, true)
	auth := []string{"Authorization", "Bearer " + testToken}
	h := ts.mustHold(ev, 3)
	ts.do("POST", "/holds/"+h.ID+"/confirm", nil)
	if n := ts.available(ev); n != 7 {
		t.Fatalf("stock = %d, want 7", n)
	}

	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong-token-xxxxxxxxxx"}} {
		res := ts.do("POST", "/holds/"+h.ID+"/cancel", nil, hdr...)
		expectError(t, fmt.Sprintf("cancel with auth %v", hdr), res, 401, "unauthorized")
	}
	res := ts.do("POST", "/holds/"+h.ID+"/cancel", nil, auth...)
	if res.Status != 200 {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	var got holdBody
	res.json(t, &got)
	if got.Status != "cancelled" || got.ID != h.ID || got.ConfirmedAt == nil {
		t.Fatalf("cancelled = %+v", got)
	}
	if n := ts.available(ev); n != 10 {
		t.Fatalf("stock = %d after cancel, want 10", n)
	}
	// Again: the same answer, no second refund.
	again := ts.do("POST", "/holds/"+h.ID+"/cancel", nil, auth...)
	if again.Status != 200 || string(again.Body) != string(res.Body) {
		t.Fatalf("cancel again: %d %s, want %s", again.Status, again.Body, res.Body)
	}
	if n := ts.available(ev); n != 10 {
		t.Fatalf("stock = %d after a second cancel, want 10", n)
	}
	var read holdBody
	ts.do("GET", "/holds/"+h.ID, nil).json(t, &read)
	if read.Status != "cancelled" {
		t.Fatalf("GET after cancel: status %q", read.Status)
	}
	expectError(t, "confirm of a cancelled booking", ts.do("POST", "/holds/"+h.ID+"/confirm", nil), 409, "hold_cancelled")

	pending := ts.mustHold(ev, 1)
	expectError(t, "cancel of a pending hold", ts.do("POST", "/holds/"+pending.ID+"/cancel", nil, auth...), 409, "hold_not_confirmed")
	ts.do("DELETE", "/holds/"+pending.ID, nil)
	expectError(t, "cancel of a released hold", ts.do("POST", "/holds/"+pending.ID+"/cancel", nil, auth...), 409, "hold_released")
	lapsed := ts.mustHold(ev, 2)
	ts.lapse(lapsed.ID)
	expectError(t, "cancel of a lapsed hold", ts.do("POST", "/holds/"+lapsed.ID+"/cancel", nil, auth...), 410, "hold_expired")
	expectError(t, "cancel of an expired hold", ts.do("POST", "/holds/"+lapsed.ID+"/cancel", nil, auth...), 410, "hold_expired")
	expectError(t, "cancel of no hold", ts.do("POST", "/holds/00000000-0000-4000-8000-000000000000/cancel", nil, auth...), 404, "not_found")
	expectError(t, "cancel of a bad id", ts.do("POST", "/holds/x/cancel", nil, auth...), 400, "invalid_request")
	if n := ts.available(ev); n != 10 {
		t.Fatalf("stock = %d at the end, want 10", n)
	}
	m := ts.scrape()
	if got := m["holdfast_holds_cancelled_total"]; got != 1 {
		t.Fatalf("holds_cancelled_total = %v, want 1", got)
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check failed:\n%s", out)
	}
}

func TestCancelIsNotFoundWithoutAnAdminToken(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(5, true)
	h := ts.mustHold(ev, 1)
	ts.do("POST", "/holds/"+h.ID+"/confirm", nil)
	expectError(t, "cancel without --admin-token", ts.do("POST", "/holds/"+h.ID+"/cancel", nil, "Authorization", "Bearer x"), 404, "not_found")
	if n := ts.available(ev); n != 4 {
		t.Fatalf("stock = %d, want 4", n)
	}
}

// Many admins cancel the same bookings at once: each booking's tickets come
// back exactly once, and every cancel answers the cancelled booking.
func TestConcurrentCancelsRefundOnce(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, extendConfig, func(t *testing.T, ts *testServer, _ bool) {
		const bookings, cancels = 4, 25
		ev := ts.newEvent(20, true)
		ids := make([]string, bookings)
		for i := range ids {
			ids[i] = ts.mustHold(ev, 2).ID
			if res := ts.do("POST", "/holds/"+ids[i]+"/confirm", nil); res.Status != 200 {
				t.Fatalf("confirm: %d %s", res.Status, res.Body)
			}
		}
		var wg sync.WaitGroup
		statuses := make([]int, bookings*cancels)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				statuses[i] = ts.do("POST", "/holds/"+ids[i%bookings]+"/cancel", nil, "Authorization", "Bearer "+testToken).Status
			}()
		}
		wg.Wait()
		for i, st := range statuses {
			if st != 200 {
				t.Fatalf("cancel %d: status %d", i, st)
			}
		}
		if n := ts.available(ev); n != 20 {
			t.Fatalf("stock = %d after %d cancels of %d bookings, want 20", n, len(statuses), bookings)
		}
		if got := ts.scrape()["holdfast_holds_cancelled_total"]; got != bookings {
			t.Fatalf("holds_cancelled_total = %v, want %d", got, bookings)
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check failed:\n%s", out)
		}
	})
}

// Extend and cancel are writes: --rate-limit counts them as it counts the
// others.
func TestExtendAndCancelAreRateLimited(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		extendConfig(c)
		c.RateLimit = 3
	})
	ev := ts.newEvent(10, true)
	// Taken and confirmed outside the measured second.
	h := ts.mustHold(ev, 1)
	c := ts.mustHold(ev, 1)
	time.Sleep(1100 * time.Millisecond)
	ts.do("POST", "/holds/"+c.ID+"/confirm", nil)
	time.Sleep(1100 * time.Millisecond)
	auth := []string{"Authorization", "Bearer " + testToken}
	inOneWindow(t, func() error {
		got := []int{
			ts.do("POST", "/holds/"+h.ID+"/extend", nil).Status,
			ts.do("POST", "/holds/"+h.ID+"/extend", nil).Status,
			ts.do("POST", "/holds/"+c.ID+"/cancel", nil, auth...).Status,
			ts.do("POST", "/holds/"+h.ID+"/extend", nil).Status,
			ts.do("POST", "/holds/"+c.ID+"/cancel", nil, auth...).Status,
		}
		if want := []int{200, 200, 200, 429, 429}; fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("five writes in one second: %v, want %v", got, want)
		}
		return nil
	})
}
