package hold_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// downLocks returns Locks on a Redis that has been stopped.
func downLocks(t *testing.T, prefix string) *store.Locks {
	t.Helper()
	r := testenv.PrivateRedis(t)
	rdb, err := store.OpenRedis(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	return store.NewLocks(rdb, store.LockOptions{Prefix: prefix, TTL: 5 * time.Second, Wait: time.Minute},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// A request alone in its event's queue takes no Redis lock: its take and
// give-back were two round trips for one hold. It goes straight to the
// event's row, so another instance holding the Redis lock (between its
// batches, the row free) does not make it wait. Fails with the lone path
// taken out: five locks taken, and the request told busy after its wait.
func TestALoneRequestTakesNoRedisLock(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 100*time.Millisecond)
	ev := f.event(t, 10)
	locks := &countingLocks{Locker: f.locks}
	b := hold.NewBatcher(f.store, locks, time.Minute, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Stop(context.Background())
	unlock, err := f.locks.Lock(context.Background(), ev) // another instance is between batches
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	for i := 0; i < 5; i++ {
		out, err := b.Submit(context.Background(), request(ev, i))
		if err != nil || out.Err != nil {
			t.Fatalf("request %d: %v, %v; want a hold", i, err, out.Err)
		}
	}
	if n := locks.taken.Load(); n != 0 {
		t.Fatalf("five lone requests took the Redis lock %d times, want none", n)
	}
}

// A lone request whose event row another transaction keeps past
// lock_timeout is told busy, and counted busy once: the row lock is the
// lock it waited for. Then the row is free and it is served. Fails without
// the count in serve.
func TestALoneRequestIsBusyWhileTheRowIsHeld(t *testing.T) {
	t.Parallel()
	f := newFixtureLockTimeout(t, time.Minute, 100*time.Millisecond)
	ev := f.event(t, 10)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Stop(context.Background())
	observed := &timedOut{}
	b.Observe = observed
	ctx := context.Background()
	tx, err := f.store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	_, err = b.Submit(ctx, request(ev, 1))
	if !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if n := observed.n.Load(); n != 1 {
		t.Fatalf("%d busy answers counted, want 1", n)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if out, err := b.Submit(ctx, request(ev, 2)); err != nil || out.Err != nil {
		t.Fatalf("with the row free: %v, %v", err, out.Err)
	}
}

// Two instances sell a few tickets of each of many events, their buyers
// mostly alone in their queues (so on the row lock alone) and sometimes
// not, with Redis up and stopped: every event sells exactly its tickets,
// and the stock matches the holds.
func TestLoneRequestsOfTwoInstancesNeverOversell(t *testing.T) {
	t.Parallel()
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", up), func(t *testing.T) {
			t.Parallel()
			const events, tickets, buyers = 20, 3, 400
			f := newFixture(t, time.Minute)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			instances := make([]*hold.Batcher, 2)
			for i := range instances {
				var locks sale.Locker = store.NewLocks(f.rdb, store.LockOptions{Prefix: f.prefix, TTL: 5 * time.Second, Wait: time.Minute, MarkWaits: true}, quiet)
				if !up {
					locks = downLocks(t, f.prefix)
				}
				instances[i] = hold.NewBatcher(f.store, locks, time.Minute, time.Minute, quiet)
			}
			evs := make([]int64, events)
			for i := range evs {
				evs[i] = f.event(t, tickets)
			}
			var mu sync.Mutex
			won := map[int64]int{}
			var wg sync.WaitGroup
			const workers = 16
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < buyers; i += workers {
						ev := evs[(i*7)%events]
						out, err := instances[i%2].Submit(context.Background(), request(ev, i))
						switch {
						case err != nil:
							t.Errorf("buyer %d: %v", i, err)
						case out.Err == nil:
							mu.Lock()
							won[ev]++
							mu.Unlock()
						case !errors.Is(out.Err, sale.ErrSoldOut):
							t.Errorf("buyer %d: %v", i, out.Err)
						}
					}
				}()
			}
			wg.Wait()
			for _, b := range instances {
				if err := b.Stop(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for _, ev := range evs {
				var avail, held int
				if err := f.store.DB().GetContext(context.Background(), &avail, `SELECT available_tickets FROM events WHERE id = $1`, ev); err != nil {
					t.Fatal(err)
				}
				if err := f.store.DB().GetContext(context.Background(), &held, `SELECT coalesce(sum(quantity), 0) FROM bookings WHERE event_id = $1`, ev); err != nil {
					t.Fatal(err)
				}
				if won[ev] != tickets || held != tickets || avail != 0 {
					t.Errorf("event %d: %d holds answered, %d tickets held, %d left; want %d, %d, 0", ev, won[ev], held, avail, tickets, tickets)
				}
			}
		})
	}
}

// Up to FewMax requests queued behind a batch are served without the
// Redis lock; one more and the batch takes it. A first request is held in
// the store while the others join. Fails with the threshold ignored (the
// batch of FewMax+1 takes none).
func TestAFewRequestsTakeNoRedisLock(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		behind int
		want   int64
	}{{hold.FewMax, 0}, {hold.FewMax + 1, 1}} {
		t.Run(fmt.Sprint(c.behind, " behind"), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, time.Minute)
			ev := f.event(t, 10)
			locks := &countingLocks{Locker: f.locks}
			st := &stallingStore{Store: f.store, taken: make(chan int, 4), release: make(chan struct{})}
			b := hold.NewBatcher(st, locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
			joined := make(chan struct{}, 8)
			b.SetOnJoin(func(int64, hold.Request) { joined <- struct{}{} })
			var wg sync.WaitGroup
			var failed sync.Map
			submit := func(i int) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if out, err := b.Submit(context.Background(), request(ev, i)); err != nil || out.Err != nil {
						failed.Store(i, fmt.Sprint(err, out.Err))
					}
				}()
				<-joined
			}
			submit(0)
			if n := <-st.taken; n != 1 {
				t.Fatalf("first batch of %d, want 1", n)
			}
			for i := 1; i <= c.behind; i++ {
				submit(i)
			}
			close(st.release)
			if n := <-st.taken; n != c.behind {
				t.Fatalf("second batch of %d, want %d", n, c.behind)
			}
			wg.Wait()
			if err := b.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			failed.Range(func(k, v any) bool { t.Errorf("request %v: %v", k, v); return true })
			if got := locks.taken.Load(); got != c.want {
				t.Fatalf("a batch of %d took the Redis lock %d times, want %d", c.behind, got, c.want)
			}
		})
	}
}
