package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/store"
)

// renderID keeps a hold's id as the body, so a replay can be told from a
// fresh answer.
func renderID(h hold.Hold, err error) idempotency.Response {
	if err != nil {
		return idempotency.Failure(err, nil)
	}
	return idempotency.Response{Status: 201, Body: []byte(h.ID.String())}
}

// keyed is a request for qty tickets with key k and values hash.
func keyed(ev int64, qty int, k, hash string) hold.Request {
	r := request(ev, "a@example.com", qty)
	r.Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: k, Hash: []byte(hash)}
	return r
}

func holdsOf(t *testing.T, s *store.Store, ev int64) int {
	t.Helper()
	var n int
	if err := s.DB().GetContext(context.Background(), &n, `SELECT count(*) FROM bookings WHERE event_id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	return n
}

// Key K is in flight with values X. A (K, Y) and B (K, X) arrive in one
// batch, A first. B used to be judged against A, in memory, and told
// idempotency_mismatch; B is an honest retry of the first claimant and must
// get its answer.
func TestBatchJudgesARepeatAgainstTheStoredClaim(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)

	first, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()
	if _, err := first.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, status, body)
		VALUES ($1, 'K', 'X', 0, '')`, hold.ScopeCreate); err != nil {
		t.Fatal(err)
	}

	type result struct {
		outs []hold.Outcome
		err  error
	}
	done := make(chan result, 1)
	go func() {
		outs, err := s.CreateHolds(ctx, ev, []hold.Request{keyed(ev, 2, "K", "Y"), keyed(ev, 1, "K", "X")}, time.Minute, renderID)
		done <- result{outs, err}
	}()
	waitBlocked(t, s.DB())
	if _, err := first.ExecContext(ctx, `UPDATE idempotency_keys SET status = 201, body = 'the first answer' WHERE key = 'K'`); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !errors.Is(r.outs[0].Err, idempotency.ErrMismatch) {
		t.Errorf("A (K, other values): %+v, want idempotency_mismatch", r.outs[0])
	}
	if got := r.outs[1]; got.Err != nil || got.Replay == nil || got.Replay.Status != 201 || string(got.Replay.Body) != "the first answer" {
		t.Errorf("B (K, the first claimant's values): err %v, replay %+v; want the first answer replayed", got.Err, got.Replay)
	}
	if n := holdsOf(t, s, ev); n != 0 {
		t.Errorf("%d holds made, want none", n)
	}
}

// A new key twice in one batch: the first request claims it. A repeat with
// the same values replays the first's answer; one with other values is 422.
// Without the in-batch checks a repeat would take a second hold, or a
// mismatch replay the first's answer.
func TestBatchRepeatsOfANewKey(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{
		keyed(ev, 2, "K", "X"), keyed(ev, 2, "K", "X"), keyed(ev, 3, "K", "Y"),
	}, time.Minute, renderID)
	if err != nil {
		t.Fatal(err)
	}
	if outs[0].Err != nil || outs[0].Replay != nil {
		t.Fatalf("first: %+v, want a fresh hold", outs[0])
	}
	if got := outs[1]; got.Err != nil || got.Replay == nil || got.Replay.Status != 201 || string(got.Replay.Body) != outs[0].Hold.ID.String() {
		t.Errorf("repeat with the same values: err %v, replay %+v; want the first's answer (%s)", got.Err, got.Replay, outs[0].Hold.ID)
	}
	if !errors.Is(outs[2].Err, idempotency.ErrMismatch) || outs[2].Replay != nil {
		t.Errorf("repeat with other values: %+v, want idempotency_mismatch", outs[2])
	}
	if n, avail := holdsOf(t, s, ev), stock(t, s, ev); n != 1 || avail != 8 {
		t.Errorf("%d holds, stock %d; want one hold, stock 8", n, avail)
	}
	// And a later request with the key replays the stored answer.
	again, err := s.CreateHolds(ctx, ev, []hold.Request{keyed(ev, 2, "K", "X"), keyed(ev, 3, "K", "Y")}, time.Minute, renderID)
	if err != nil {
		t.Fatal(err)
	}
	if got := again[0]; got.Replay == nil || string(got.Replay.Body) != outs[0].Hold.ID.String() {
		t.Errorf("later repeat: %+v, want the first's answer", got)
	}
	if !errors.Is(again[1].Err, idempotency.ErrMismatch) {
		t.Errorf("later mismatch: %+v, want idempotency_mismatch", again[1])
	}
}
