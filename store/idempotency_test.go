package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/testenv"
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

// Two instances (two pools on one database) send batches with keys in
// common, on two events, all at once, alone and in groups of both events:
// each key makes one hold, and every request with it gets that hold's
// answer, fresh or replayed.
func TestKeyedBatchesOfTwoInstancesMakeOneHoldAKey(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	var stores []*store.Store
	var pools []*sqlx.DB
	for i := 0; i < 3; i++ { // the third reads the database's statistics
		db, err := store.Open(context.Background(), url, store.DBOptions{MaxConns: 8, LockTimeout: 10 * time.Second, StatementTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		stores, pools = append(stores, store.New(db)), append(pools, db)
	}
	deadlocks := func() int64 {
		t.Helper()
		var n int64
		if err := pools[2].GetContext(context.Background(), &n, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := deadlocks()
	stores = stores[:2]
	ctx := context.Background()
	events := []int64{newEvent(t, stores[0], 1000), newEvent(t, stores[0], 1000)}
	const keys, workers, batches, size = 40, 4, 25, 8
	req := func(k int) hold.Request {
		ev := events[k%2]
		r := request(ev, fmt.Sprintf("k%d@example.com", k), 1)
		r.Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: fmt.Sprintf("K%d", k), Hash: []byte(fmt.Sprint("X", k))}
		return r
	}
	var mu sync.Mutex
	answers := map[int]map[string]bool{} // key -> the hold ids it was answered with
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for _, s := range stores {
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), 7))
				for b := 0; b < batches; b++ {
					// A batch is of one event: its keys of one parity.
					parity := rng.IntN(2)
					var ks []int
					var reqs []hold.Request
					for len(reqs) < size {
						k := 2*rng.IntN(keys/2) + parity
						ks, reqs = append(ks, k), append(reqs, req(k))
					}
					// Every other batch goes with one of the other event
					// in one call, as a lane's group; one passed over is
					// then served alone, as the batcher does.
					var outs []hold.Outcome
					var err error
					if b%2 == 0 {
						other := 1 - parity
						var oks []int
						var oreqs []hold.Request
						for len(oreqs) < size/2 {
							k := 2*rng.IntN(keys/2) + other
							oks, oreqs = append(oks, k), append(oreqs, req(k))
						}
						var got [][]hold.Outcome
						got, err = s.CreateHoldsEvents(ctx, []hold.EventBatch{{EventID: events[parity], Reqs: reqs}, {EventID: events[other], Reqs: oreqs}}, time.Minute, renderID)
						for j := 0; err == nil && j < 2; j++ {
							if got[j] == nil {
								got[j], err = s.CreateHolds(ctx, events[[]int{parity, other}[j]], [][]hold.Request{reqs, oreqs}[j], time.Minute, renderID)
							}
						}
						if err == nil {
							outs, ks = append(got[0], got[1]...), append(ks, oks...)
						}
					} else {
						outs, err = s.CreateHolds(ctx, events[parity], reqs, time.Minute, renderID)
					}
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for i, o := range outs {
						var id string
						switch {
						case o.Err != nil:
							mu.Unlock()
							errs <- fmt.Errorf("key %d: %w", ks[i], o.Err)
							return
						case o.Replay != nil:
							id = string(o.Replay.Body)
						default:
							id = o.Hold.ID.String()
						}
						if answers[ks[i]] == nil {
							answers[ks[i]] = map[string]bool{}
						}
						answers[ks[i]][id] = true
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k, ids := range answers {
		if len(ids) != 1 {
			t.Errorf("key %d answered with %d holds: %v", k, len(ids), ids)
		}
	}
	var n, emails int
	if err := stores[0].DB().QueryRowContext(ctx, `SELECT count(*), count(DISTINCT user_email) FROM bookings WHERE event_id = ANY ($1)`,
		pq.Array(events)).Scan(&n, &emails); err != nil {
		t.Fatal(err)
	}
	if n != len(answers) || emails != n {
		t.Fatalf("%d holds for %d keys (%d emails), want one a key", n, len(answers), emails)
	}
	// The store retries a deadlock, so none shows in the answers; the
	// database counts them. A backend reports its count when it ends.
	pools[0].Close()
	pools[1].Close()
	time.Sleep(time.Second)
	if d := deadlocks() - before; d != 0 {
		t.Fatalf("%d deadlocks between the instances' transactions, want none", d)
	}
}
