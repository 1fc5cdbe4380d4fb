package hold_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	store  *store.Store
	locks  *store.Locks
	rdb    redis.UniversalClient
	prefix string
}

func newFixture(t *testing.T, wait time.Duration) fixture {
	t.Helper()
	return newFixtureLockTimeout(t, wait, time.Minute)
}

// newFixtureLockTimeout is newFixture with PostgreSQL's lock_timeout.
func newFixtureLockTimeout(t *testing.T, wait, lockTimeout time.Duration) fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.DatabaseURL(t), store.DBOptions{MaxConns: 10, LockTimeout: lockTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	return fixture{store: store.New(db), locks: store.NewLocks(rdb, store.LockOptions{Prefix: prefix, TTL: 5 * time.Second, Wait: wait}, quiet),
		rdb: rdb, prefix: prefix}
}

func (f fixture) event(t *testing.T, tickets int) int64 {
	t.Helper()
	var id int64
	err := f.store.DB().QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('e', now(), $1, $1, 10) RETURNING id`, tickets).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func request(ev int64, i int) hold.Request {
	return hold.Request{Order: sale.Order{EventID: ev, Email: fmt.Sprintf("buyer%d@example.com", i), Quantity: 1}}
}

func TestFirstToJoinIsFirstServed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 20)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Stop(context.Background())

	var mu sync.Mutex
	var joined []string
	b.SetOnJoin(func(_ int64, req hold.Request) {
		mu.Lock()
		joined = append(joined, req.Order.Email)
		mu.Unlock()
	})
	type answer struct {
		email string
		out   hold.Outcome
		err   error
	}
	answers := make(chan answer, 200)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req := request(ev, i)
			out, err := b.Submit(context.Background(), req)
			answers <- answer{req.Order.Email, out, err}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)

	rank := map[string]int{}
	for i, e := range joined {
		rank[e] = i
	}
	winners := 0
	for a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("%s (joined %d): %v", a.email, rank[a.email], a.err)
		case a.out.Err == nil:
			winners++
			if rank[a.email] >= 20 {
				t.Errorf("%s joined %dth and got a hold", a.email, rank[a.email]+1)
			}
		case errors.Is(a.out.Err, sale.ErrSoldOut):
			if rank[a.email] < 20 {
				t.Errorf("%s joined %dth, while tickets remained, and was told sold out", a.email, rank[a.email]+1)
			}
		default:
			t.Errorf("%s: %v", a.email, a.out.Err)
		}
	}
	if winners != 20 || len(joined) != 200 {
		t.Fatalf("%d winners of %d joined, want 20 of 200", winners, len(joined))
	}
}

func TestStopAnswersEveryQueuedRequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 100)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))

	// Stall the event: another session holds its row, so the first batch
	// waits in PostgreSQL and the rest of the crowd waits in the queue.
	tx, err := f.store.DB().BeginTxx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, ev); err != nil {
		t.Fatal(err)
	}
	var joined sync.WaitGroup
	joined.Add(50)
	b.SetOnJoin(func(int64, hold.Request) { joined.Done() })
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		go func() {
			out, err := b.Submit(context.Background(), request(ev, i))
			errs <- errors.Join(err, out.Err)
		}()
	}
	joined.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.Stop(ctx); err == nil {
		t.Fatal("Stop reported a clean drain while the event was stalled")
	}
	for i := 0; i < 50; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, hold.ErrShuttingDown) {
				t.Fatalf("a queued request got %v, want ErrShuttingDown", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 50 queued requests were answered", i)
		}
	}
	if _, err := b.Submit(context.Background(), request(ev, 99)); !errors.Is(err, hold.ErrShuttingDown) {
		t.Fatalf("a request after Stop got %v, want ErrShuttingDown", err)
	}
}

func TestStopServesWhatIsQueuedWhenThereIsTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 1000)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var joined sync.WaitGroup
	joined.Add(100)
	b.SetOnJoin(func(int64, hold.Request) { joined.Done() })
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		go func() {
			out, err := b.Submit(context.Background(), request(ev, i))
			errs <- errors.Join(err, out.Err)
		}()
	}
	joined.Wait()
	if err := b.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("queued request: %v, want served", err)
		}
	}
}

func TestAQueuedRequestIsBusyAfterItsWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 10)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.SetNoFew() // a lone request would go straight to the row
	defer b.Stop(context.Background())
	unlock, err := f.locks.Lock(context.Background(), ev) // another instance is selling
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = b.Submit(context.Background(), request(ev, 1))
	if !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Submit(ctx, request(ev, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled request got %v, want it to leave the queue", err)
	}
}

// countingLocks counts the locks a batcher takes.
type countingLocks struct {
	sale.Locker
	taken atomic.Int64
}

func (c *countingLocks) Lock(ctx context.Context, ev int64) (func(), error) {
	c.taken.Add(1)
	return c.Locker.Lock(ctx, ev)
}

// feedingStore makes sure a request waits in the queue whenever a batch
// ends, for its first batches: the worker always has another batch to
// serve, as on a hot event.
type feedingStore struct {
	hold.Store
	feed func() // queues one more request and returns once it has joined
	left int    // batches still to feed
}

func (f *feedingStore) CreateHolds(ctx context.Context, ev int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	if f.left > 0 {
		f.left--
		f.feed()
	}
	return f.Store.CreateHolds(ctx, ev, reqs, ttl, render)
}

// A worker keeps its event's lock across batches while the queue keeps
// filling, for as long as its lease, and no longer: taking the lock is a
// round trip to Redis, and other instances need their turn. Counted, not
// timed: with a lease of an hour, ten batches back to back take the lock
// once; with none, once each.
func TestTheLockIsKeptAcrossBatchesForTheLease(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		lease time.Duration
		want  int64
	}{{time.Hour, 1}, {0, 10}} {
		t.Run(fmt.Sprint("lease ", c.lease), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, time.Minute)
			ev := f.event(t, 100)
			locks := &countingLocks{Locker: f.locks}
			st := &feedingStore{Store: f.store, left: 9}
			b := hold.NewBatcher(st, locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
			b.SetNoFew() // one request is fed at a time
			b.SetLease(c.lease)
			joined := make(chan struct{}, 16)
			b.SetOnJoin(func(int64, hold.Request) { joined <- struct{}{} })
			var wg sync.WaitGroup
			var failed atomic.Int64
			submit := func(i int) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if out, err := b.Submit(context.Background(), request(ev, i)); err != nil || out.Err != nil {
						failed.Add(1)
					}
				}()
				<-joined
			}
			n := 0
			st.feed = func() { n++; submit(n) }
			submit(0)
			wg.Wait()
			if err := b.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if failed.Load() != 0 {
				t.Fatalf("%d of 10 requests failed", failed.Load())
			}
			if got := locks.taken.Load(); got != c.want {
				t.Fatalf("ten batches took the lock %d times, want %d", got, c.want)
			}
		})
	}
}

// Two instances sell one event. One keeps its queue full, so at the end of
// each lease it has more to serve and takes the lock straight back; the
// other polls for the lock and would seldom find it free in between (it
// waited 0.5 s to over 3 s, against 6 to 41 ms with the hand-over). Its
// buyer must get a turn within a second, not be told busy.
func TestAnotherInstanceGetsItsTurnOnABusyEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 1_000_000)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	instance := func(st hold.Store, wait time.Duration) *hold.Batcher {
		locks := store.NewLocks(f.rdb, store.LockOptions{Prefix: f.prefix, TTL: 5 * time.Second, Wait: wait, MarkWaits: true}, quiet)
		b := hold.NewBatcher(st, locks, time.Minute, wait, quiet)
		b.SetNoFew() // single requests, which would go straight to the row
		return b
	}
	busy := &feedingStore{Store: f.store, left: 1 << 30}
	a, b := instance(busy, time.Minute), instance(f.store, time.Second)
	joined := make(chan struct{}, 16)
	a.SetOnJoin(func(int64, hold.Request) { joined <- struct{}{} })
	var stop atomic.Bool
	var wg sync.WaitGroup
	served := make(chan struct{}, 1<<12)
	submit := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Submit(context.Background(), request(ev, i)); err == nil {
				served <- struct{}{}
			}
		}()
		<-joined
	}
	n := 0
	busy.feed = func() {
		if !stop.Load() {
			n++
			submit(n)
		}
	}
	submit(0)
	for i := 0; i < 20; i++ { // a has been at it for several batches
		<-served
	}
	start := time.Now()
	out, err := b.Submit(context.Background(), request(ev, -1))
	took := time.Since(start)
	stop.Store(true)
	wg.Wait()
	for _, x := range []*hold.Batcher{a, b} {
		if err := x.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err != nil || out.Err != nil {
		t.Fatalf("the other instance's buyer got %v, %v after %s", err, out.Err, took.Round(time.Millisecond))
	}
}

// stallingStore holds every batch it is given until release is closed,
// and tells taken the size of each as it arrives.
type stallingStore struct {
	hold.Store
	taken   chan int
	release chan struct{}
}

func (s *stallingStore) CreateHolds(ctx context.Context, ev int64, reqs []hold.Request, ttl time.Duration, render hold.Render) ([]hold.Outcome, error) {
	s.taken <- len(reqs)
	<-s.release
	return s.Store.CreateHolds(ctx, ev, reqs, ttl, render)
}

// timedOut counts the requests the batcher reports as timed out in a queue.
type timedOut struct{ n atomic.Int64 }

func (*timedOut) Batched(int)      {}
func (o *timedOut) QueueTimedOut() { o.n.Add(1) }

// A request taken into a batch gets that batch's answer, even when its wait
// runs out or its client goes while the batch runs: told busy, the buyer
// would retry (or leave) while the batch grants them a hold, a ghost hold
// that keeps its tickets from everyone until it lapses. The batch is held
// in the store past the request's wait; the request must come back with
// its hold. Fails if leave answers a request a worker has taken.
func TestARequestTakenIntoABatchIsNeverAnsweredBusy(t *testing.T) {
	t.Parallel()
	for _, gone := range []bool{false, true} {
		t.Run(fmt.Sprint("client gone ", gone), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, time.Minute)
			ev := f.event(t, 10)
			st := &stallingStore{Store: f.store, taken: make(chan int, 1), release: make(chan struct{})}
			const wait = 100 * time.Millisecond
			b := hold.NewBatcher(st, f.locks, time.Minute, wait, slog.New(slog.NewTextHandler(io.Discard, nil)))
			defer b.Stop(context.Background())
			var once sync.Once
			letGo := func() { once.Do(func() { close(st.release) }) }
			defer letGo() // before Stop, which waits for the batch
			observed := &timedOut{}
			b.Observe = observed
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type answer struct {
				out hold.Outcome
				err error
			}
			got := make(chan answer, 1)
			go func() {
				out, err := b.Submit(ctx, request(ev, 1))
				got <- answer{out, err}
			}()
			if n := <-st.taken; n != 1 {
				t.Fatalf("a batch of %d, want 1", n)
			}
			if gone {
				cancel()
			}
			time.Sleep(3 * wait) // the request's wait runs out inside the batch
			select {
			case a := <-got:
				t.Fatalf("answered %v, %v while its batch still runs", a.err, a.out.Err)
			default:
			}
			letGo()
			a := <-got
			if a.err != nil || a.out.Err != nil {
				t.Fatalf("the request taken into a batch got %v, %v; want the hold the batch granted", a.err, a.out.Err)
			}
			var holds int
			if err := f.store.DB().GetContext(context.Background(), &holds, `SELECT count(*) FROM bookings WHERE event_id = $1`, ev); err != nil {
				t.Fatal(err)
			}
			if holds != 1 || a.out.Hold.ID.String() == "" {
				t.Fatalf("%d holds made, answer %+v", holds, a.out.Hold)
			}
			if n := observed.n.Load(); n != 0 {
				t.Fatalf("%d queue timeouts counted for a request that was served", n)
			}
		})
	}
}

// Three instances sell one event: one keeps its queue full, the other two
// each send one request at the same moment, round after round. Each waiter
// marks that it waits; when the mark was one flag, the first of the two to
// take the lock cleared it for the other, the busy instance stopped handing
// over, and the other waited out its whole wait (1 of 18 requests told
// busy). With a mark per waiter every request of the two is served within
// its wait.
func TestThreeInstancesEachGetTheirTurnOnABusyEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 1_000_000)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	instance := func(st hold.Store, wait time.Duration) *hold.Batcher {
		locks := store.NewLocks(f.rdb, store.LockOptions{Prefix: f.prefix, TTL: 5 * time.Second, Wait: wait, MarkWaits: true}, quiet)
		b := hold.NewBatcher(st, locks, time.Minute, wait, quiet)
		b.SetNoFew() // single requests, which would go straight to the row
		return b
	}
	hot := &feedingStore{Store: f.store, left: 1 << 30}
	a := instance(hot, time.Minute)
	others := []*hold.Batcher{instance(f.store, time.Second), instance(f.store, time.Second)}
	joined := make(chan struct{}, 16)
	a.SetOnJoin(func(int64, hold.Request) { joined <- struct{}{} })
	var stop atomic.Bool
	var wg sync.WaitGroup
	served := make(chan struct{}, 1<<12)
	submit := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Submit(context.Background(), request(ev, i)); err == nil {
				served <- struct{}{}
			}
		}()
		<-joined
	}
	n := 0
	hot.feed = func() {
		if !stop.Load() {
			n++
			submit(n)
		}
	}
	submit(0)
	for i := 0; i < 20; i++ { // a has been at it for several batches
		<-served
	}
	const rounds = 6
	var failures []string
	for round := 0; round < rounds; round++ {
		errs := make([]string, len(others))
		var both sync.WaitGroup
		for k, x := range others {
			both.Add(1)
			go func() {
				defer both.Done()
				start := time.Now()
				out, err := x.Submit(context.Background(), request(ev, -1-round*len(others)-k))
				if err != nil || out.Err != nil {
					errs[k] = fmt.Sprintf("round %d, instance %d: %v, %v after %s", round, k+1, err, out.Err, time.Since(start).Round(time.Millisecond))
				}
			}()
		}
		both.Wait()
		for _, e := range errs {
			if e != "" {
				failures = append(failures, e)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	for _, x := range append(others, a) {
		if err := x.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// grouping is a store that counts the calls that served several events'
// batches at once.
type grouping struct {
	*store.Store
	groups atomic.Int64
}

func (g *grouping) CreateHoldsEvents(ctx context.Context, batches []hold.EventBatch, ttl time.Duration, render hold.Render) ([][]hold.Outcome, error) {
	g.groups.Add(1)
	return g.Store.CreateHoldsEvents(ctx, batches, ttl, render)
}

// A crowd spread over many events, served in groups (one lane, so that
// the events' batches group): on every event the first to join are the
// ones served, with the Redis locks and with Redis stopped. Each event's
// requests are served in their order within whatever group they land in.
func TestFirstToJoinIsFirstServedAcrossEvents(t *testing.T) {
	t.Parallel()
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", up), func(t *testing.T) {
			t.Parallel()
			const events, tickets, buyers = 12, 5, 240
			f := newFixture(t, time.Minute)
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			locks := f.locks
			if !up {
				r := testenv.PrivateRedis(t)
				rdb, err := store.OpenRedis(r.URL())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rdb.Close() })
				if err := r.Stop(); err != nil {
					t.Fatal(err)
				}
				locks = store.NewLocks(rdb, store.LockOptions{Prefix: f.prefix, TTL: 5 * time.Second, Wait: time.Minute}, quiet)
			}
			evs := make([]int64, events)
			for i := range evs {
				evs[i] = f.event(t, tickets)
			}
			st := &grouping{Store: f.store}
			b := hold.NewBatcher(st, locks, time.Minute, time.Minute, quiet)
			defer b.Stop(context.Background())

			var mu sync.Mutex
			joined := map[int64][]string{}
			b.SetOnJoin(func(ev int64, req hold.Request) {
				mu.Lock()
				joined[ev] = append(joined[ev], req.Order.Email)
				mu.Unlock()
			})
			type answer struct {
				ev    int64
				email string
				out   hold.Outcome
				err   error
			}
			answers := make(chan answer, buyers)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < buyers; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					req := request(evs[i%events], i)
					out, err := b.Submit(context.Background(), req)
					answers <- answer{req.Order.EventID, req.Order.Email, out, err}
				}()
			}
			close(start)
			wg.Wait()
			close(answers)

			rank := map[string]int{}
			for _, emails := range joined {
				for i, e := range emails {
					rank[e] = i
				}
			}
			winners := map[int64]int{}
			for a := range answers {
				switch {
				case a.err != nil:
					t.Errorf("%s (joined %d on event %d): %v", a.email, rank[a.email], a.ev, a.err)
				case a.out.Err == nil:
					winners[a.ev]++
					if rank[a.email] >= tickets {
						t.Errorf("%s joined event %d %dth and got a hold", a.email, a.ev, rank[a.email]+1)
					}
				case errors.Is(a.out.Err, sale.ErrSoldOut):
					if rank[a.email] < tickets {
						t.Errorf("%s joined event %d %dth, while tickets remained, and was told sold out", a.email, a.ev, rank[a.email]+1)
					}
				default:
					t.Errorf("%s: %v", a.email, a.out.Err)
				}
			}
			for _, ev := range evs {
				if winners[ev] != tickets || len(joined[ev]) != buyers/events {
					t.Errorf("event %d: %d winners of %d joined, want %d of %d", ev, winners[ev], len(joined[ev]), tickets, buyers/events)
				}
			}
			if st.groups.Load() == 0 {
				t.Fatal("no call served several events: the test does not test grouping")
			}
		})
	}
}

// Another transaction holds event A's row (an admin's edit, /book/safe,
// another instance's batch). A request for A waits for it, but not on the
// instance's lane: a request for event B, whose row is free, is served at
// once. It waited behind A for A's whole lock wait.
func TestAHeldEventRowHoldsUpNoOtherEvent(t *testing.T) {
	t.Parallel()
	f := newFixtureLockTimeout(t, 2*time.Second, 2*time.Second)
	a, bEv := f.event(t, 10), f.event(t, 10)
	b := hold.NewBatcher(f.store, f.locks, time.Minute, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Stop(context.Background())
	ctx := context.Background()
	tx, err := f.store.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT 1 FROM events WHERE id = $1 FOR UPDATE`, a); err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() {
		out, err := b.Submit(ctx, request(a, 1))
		aDone <- errors.Join(err, out.Err)
	}()
	time.Sleep(100 * time.Millisecond) // A's request is on its way to the row
	start := time.Now()
	out, err := b.Submit(ctx, request(bEv, 2))
	if took := time.Since(start); err != nil || out.Err != nil || took > time.Second {
		t.Fatalf("a hold of event B, its row free: %v %v in %v; want it at once, not after A's row", err, out.Err, took)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; err != nil {
		t.Fatalf("A's hold, once its row was free: %v", err)
	}
}

// hangingStore never answers a call until its context ends, as a commit
// waiting for a synchronous standby that never comes: the batcher's bound
// on a call is all that ends it (or the test's end, closing release).
type hangingStore struct {
	*store.Store
	release chan struct{}
}

func (s hangingStore) hang(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", sale.ErrUnavailable, ctx.Err())
	case <-s.release:
		return errors.New("the test ended")
	}
}

func (s hangingStore) CreateHolds(ctx context.Context, _ int64, _ []hold.Request, _ time.Duration, _ hold.Render) ([]hold.Outcome, error) {
	return nil, s.hang(ctx)
}

func (s hangingStore) CreateHoldsEvents(ctx context.Context, _ []hold.EventBatch, _ time.Duration, _ hold.Render) ([][]hold.Outcome, error) {
	return nil, s.hang(ctx)
}

// A call that does not come back is bounded as a request is: its requests
// are answered unavailable when CallTimeout runs out, on the shared lane
// and alone (a batch with an idempotency key), instead of waiting until
// the batcher stops, long after their clients' connections closed.
func TestACallThatHangsIsBoundedLikeARequest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 10)
	st := hangingStore{f.store, make(chan struct{})}
	b := hold.NewBatcher(st, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.CallTimeout = 300 * time.Millisecond
	defer b.Stop(context.Background())
	defer close(st.release) // before Stop, which waits for the call
	keyed := request(ev, 2)
	keyed.Key = &idempotency.Key{Scope: "holds", Key: "k"}
	for _, req := range []hold.Request{request(ev, 1), keyed} {
		got := make(chan error, 1)
		go func() {
			_, err := b.Submit(context.Background(), req)
			got <- err
		}()
		select {
		case err := <-got:
			if !errors.Is(err, sale.ErrUnavailable) {
				t.Fatalf("a call that hangs answered %v, want unavailable", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a call that hangs (key %v) was not ended by its bound", req.Key != nil)
		}
	}
}

// A batch whose statement ran but whose answer could not be read (here the
// database's hold_batch_events garbles the outcome of a hold it made) has
// an unknown outcome: answered unavailable, never served again, which
// would make its holds twice. The fixture's database is the test's own.
func TestAnAnswerThatCannotBeReadIsNeverServedAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 10)
	if _, err := f.store.DB().ExecContext(context.Background(), `
		ALTER FUNCTION hold_batch_events(bigint[], text[], text[], inet[], int[], int[], int[], bigint, int, int, text[], boolean)
			RENAME TO hold_batch_events_real;
		CREATE FUNCTION hold_batch_events(p_events bigint[], p_emails text[], p_keys text[], p_clients inet[],
		                                  p_item_reqs int[], p_item_cats int[], p_item_qtys int[],
		                                  p_ttl_us bigint, p_cap int, p_client_cap int,
		                                  p_places text[] DEFAULT NULL, p_skip_locked boolean DEFAULT false)
		RETURNS TABLE (n int, outcome text, price numeric, expired int,
		               hold_id uuid, event_id int, user_email varchar, quantity int, total_amount numeric,
		               expires_at timestamptz, created_at timestamptz, confirmed_at timestamptz, status text,
		               short_category int, item_categories int[], item_quantities int[], item_prices numeric[])
		AS $$ SELECT r.n, 'garbled', r.price, r.expired, r.hold_id, r.event_id, r.user_email, r.quantity, r.total_amount,
		             r.expires_at, r.created_at, r.confirmed_at, r.status, r.short_category, r.item_categories,
		             r.item_quantities, r.item_prices
		      FROM hold_batch_events_real(p_events, p_emails, p_keys, p_clients, p_item_reqs, p_item_cats, p_item_qtys,
		                                  p_ttl_us, p_cap, p_client_cap, p_places, p_skip_locked) AS r $$ LANGUAGE sql`); err != nil {
		t.Fatal(err)
	}
	b := hold.NewBatcher(f.store, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer b.Stop(context.Background())
	_, err := b.Submit(context.Background(), request(ev, 1))
	var holds int
	if err := f.store.DB().GetContext(context.Background(), &holds, `SELECT count(*) FROM bookings WHERE event_id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	if holds != 1 {
		t.Fatalf("%d holds made for one request, want the one its statement made", holds)
	}
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Fatalf("a batch whose answer cannot be read: %v, want unavailable", err)
	}
}

// A batch's time runs from when it leaves its queue, its wait for the lane
// included: behind a call that hangs, another event's batch is answered
// when its own time is up, not after the call ahead of it and a whole
// CallTimeout more.
func TestABatchWaitingForTheLaneHasOneCallTimeoutInAll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	evA, evB := f.event(t, 10), f.event(t, 10)
	st := hangingStore{f.store, make(chan struct{})}
	b := hold.NewBatcher(st, f.locks, time.Minute, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const bound = 2 * time.Second
	b.CallTimeout = bound
	defer b.Stop(context.Background())
	defer close(st.release)
	go b.Submit(context.Background(), request(evA, 1)) // takes the one lane, and hangs
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	_, err := b.Submit(context.Background(), request(evB, 2))
	took := time.Since(start)
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Fatalf("the batch behind a hanging call: %v, want unavailable", err)
	}
	if took > bound*8/5 {
		t.Fatalf("the batch behind a hanging call was answered after %s, its CallTimeout is %s", took.Round(time.Millisecond), bound)
	}
}
