package hold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// ErrShuttingDown answers a request that arrives, or still waits in a queue,
// once the instance has stopped serving holds.
var ErrShuttingDown = problem.New(problem.Unavailable, "the service is shutting down, please try again")

// Batcher serves hold requests per event in batches. Requests for one event
// queue in arrival order inside the instance; one worker per event with
// requests waiting takes the event's lock once, runs one transaction that
// serves as many queued requests as fit, in order, and commits once; every
// request gets its own outcome. Across instances the row lock keeps it
// correct and the Redis lock cuts contention, taken only when more than
// FewMax requests wait (a few go straight to the row); within one instance
// the order of arrival is the order of service.
//
// A request waits at most its wait (--lock-wait) in the queue, then is told
// busy; once a worker has taken it into a batch it waits for that batch's
// answer, so nobody is told busy for a request that may have succeeded. A
// request whose client has gone leaves the queue. A batch whose event row
// stays another transaction's past lock_timeout (the lock wait too) is
// answered busy.
type Batcher struct {
	store    Store
	locks    sale.Locker
	ttl      time.Duration
	wait     time.Duration
	maxBatch int
	lease    time.Duration
	log      *slog.Logger

	shards [shardCount]shard

	// events is the Store as an EventsStore, nil if it is none: then every
	// batch is a call of its own.
	events EventsStore
	lanes  int
	gmu    sync.Mutex
	busy   int      // calls running, at most lanes
	groups []*group // waiting for a lane, in order

	ctx    context.Context // cancelled by Stop once the queues are drained
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// CallTimeout, when positive, bounds each batch from when it is taken
	// from its queue (its wait for a lane, its call, and a call of its
	// own after a group's that failed, together), as a request's deadline
	// bounds the request (the store lets a commit wait for the standby a
	// little past it): its requests have stopped waiting in their queue
	// and can no longer leave, so without it a commit waiting on a standby
	// that never comes would keep them, and the lane, until the batcher
	// stops, and their answer would reach a connection long closed.
	CallTimeout time.Duration

	// Observe, when set, hears each batch's size and each request that
	// waited its whole wait in a queue.
	Observe BatchObserver

	// noFew, set by tests of the Redis lock's hand-over, makes a few
	// requests take the lock as a larger batch does.
	noFew bool

	// onJoin, when set, is called with each request as it joins its queue,
	// under the queue's lock: tests read the order of arrival through it.
	onJoin func(eventID int64, req Request)
}

// BatchObserver hears what the batcher does, for metrics.
type BatchObserver interface {
	Batched(n int)
	QueueTimedOut()
}

// shardCount splits the queues so that requests for different events never
// meet on one mutex.
const shardCount = 64

type shard struct {
	mu     sync.Mutex
	queues map[int64]*queue
	closed bool
}

type queue struct {
	waiting []*waiter
}

type waiter struct {
	req   Request
	done  chan result // buffered: the worker never blocks on it
	taken bool        // guarded by the shard's mutex
}

type result struct {
	out Outcome
	err error
}

// DefaultMaxBatch bounds the requests one transaction serves, of one event
// or of a group.
const DefaultMaxBatch = 256

// DefaultLanes is how many calls of the Store the batches of different
// events run at once before they group: enough to keep PostgreSQL busy
// while one call's answer travels back, few enough that a crowd spread
// over many events makes large groups.
const DefaultLanes = 1

// group is the batches of several events waiting for a lane, to be served
// by one call.
type group struct {
	batches []EventBatch
	n       int           // requests in batches
	start   chan struct{} // closed when the group has its lane
	done    chan struct{} // closed once outs and err are set
	outs    [][]Outcome
	err     error
	// deadline is the earliest of its batches' (zero: none).
	deadline time.Time
}

// DefaultLease is how long a worker keeps its event's lock across batches
// while requests keep coming: several batches' worth on a hot event.
const DefaultLease = 25 * time.Millisecond

// HandOverPause is how long a worker whose lease ended stays away from the
// lock when another instance waits for it: longer than that instance's
// polls for the lock are apart (store.Locks backs off to 32 ms).
const HandOverPause = 40 * time.Millisecond

// lockWanter is a Locker that can tell that another holder waits.
type lockWanter interface {
	Wanted(ctx context.Context, eventID int64) bool
}

// wanted reports whether another holder, of this instance or another,
// waits for ev's lock.
func (b *Batcher) wanted(ev int64) bool {
	w, ok := b.locks.(lockWanter)
	return ok && w.Wanted(b.ctx, ev)
}

// SetLockTTL tells b the TTL of the locks it takes, so that it never keeps
// one across batches for more than a quarter of it.
func (b *Batcher) SetLockTTL(ttl time.Duration) { b.lease = min(DefaultLease, ttl/4) }

// NewBatcher returns a Batcher; Stop stops it.
func NewBatcher(st Store, locks sale.Locker, ttl, wait time.Duration, log *slog.Logger) *Batcher {
	b := &Batcher{store: st, locks: locks, ttl: ttl, wait: wait, maxBatch: DefaultMaxBatch, lease: DefaultLease, log: log,
		lanes: DefaultLanes}
	b.events, _ = st.(EventsStore)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	for i := range b.shards {
		b.shards[i].queues = map[int64]*queue{}
	}
	return b
}

func (b *Batcher) shard(eventID int64) *shard {
	return &b.shards[uint64(eventID)%shardCount]
}

// Submit queues req and waits for its outcome.
func (b *Batcher) Submit(ctx context.Context, req Request) (Outcome, error) {
	ev := req.Order.EventID
	sh := b.shard(ev)
	w := &waiter{req: req, done: make(chan result, 1)}
	sh.mu.Lock()
	if sh.closed {
		sh.mu.Unlock()
		return Outcome{}, ErrShuttingDown
	}
	q := sh.queues[ev]
	start := q == nil
	if start {
		q = &queue{}
		sh.queues[ev] = q
	}
	q.waiting = append(q.waiting, w)
	if b.onJoin != nil {
		b.onJoin(ev, req)
	}
	if start {
		b.wg.Add(1)
		go b.work(ev)
	}
	sh.mu.Unlock()

	var timeout <-chan time.Time
	if b.wait > 0 {
		t := time.NewTimer(b.wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-w.done:
		return r.out, r.err
	case <-ctx.Done():
		if b.leave(ev, w) {
			return Outcome{}, ctx.Err()
		}
	case <-timeout:
		if b.leave(ev, w) {
			if b.Observe != nil {
				b.Observe.QueueTimedOut()
			}
			return Outcome{}, sale.ErrBusy
		}
	}
	// A worker took it already: its answer is on the way.
	r := <-w.done
	return r.out, r.err
}

// leave takes w out of its queue unless a worker has taken it, and reports
// whether it did.
func (b *Batcher) leave(ev int64, w *waiter) bool {
	sh := b.shard(ev)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if w.taken {
		return false
	}
	q := sh.queues[ev]
	for i, x := range q.waiting {
		if x == w {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			break
		}
	}
	return true
}

// take removes up to max waiters from the front of ev's queue, or retires
// the queue (and its worker) when it is empty and retire is set.
func (b *Batcher) take(ev int64, max int, retire bool) []*waiter {
	sh := b.shard(ev)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.queues[ev]
	if len(q.waiting) == 0 {
		if retire {
			delete(sh.queues, ev)
		}
		return nil
	}
	if max == 0 {
		return []*waiter{}
	}
	return q.pop(min(len(q.waiting), max))
}

// pop removes the first n waiters of q and returns them, marked taken.
// The caller holds q's shard's lock.
func (q *queue) pop(n int) []*waiter {
	batch := make([]*waiter, n)
	copy(batch, q.waiting[:n])
	for _, w := range batch {
		w.taken = true
	}
	// Shift rather than reslice so the array does not grow without bound
	// under a queue that never empties.
	rest := copy(q.waiting, q.waiting[n:])
	clear(q.waiting[rest:])
	q.waiting = q.waiting[:rest]
	return batch
}

// FewMax is the most requests a batch serves without the event's Redis
// lock. The lock's take and give-back are two round trips, about 70 us of
// CPU in holdfast and Redis together (make bench over 10,000 events), paid
// once a lease: for a batch of one that was a third of holdfast's CPU a
// hold; from a few requests on, spread over the batch and its lease, and
// worth it on an event other instances sell too, where their workers wait
// for the lock in Redis rather than for the row in PostgreSQL.
const FewMax = 3

// takeFew takes ev's queued requests when there are FewMax or fewer, or
// nothing.
func (b *Batcher) takeFew(ev int64) []*waiter {
	sh := b.shard(ev)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.queues[ev]
	if b.noFew || len(q.waiting) == 0 || len(q.waiting) > FewMax {
		return nil
	}
	return q.pop(len(q.waiting))
}

// work serves ev's queue until it is empty. Unless a few requests wait
// (FewMax), it takes the event's lock before it takes requests from the
// queue, so that while it waits for the lock (another instance is selling
// the event) every request is still in the queue, free to leave when its
// client goes or its wait runs out.
func (b *Batcher) work(ev int64) {
	defer b.wg.Done()
	for {
		if b.take(ev, 0, true) == nil {
			return
		}
		if few := b.takeFew(ev); few != nil {
			// A few requests: no Redis lock (see FewMax). The event's
			// row lock keeps the sale correct on its own, as with
			// Redis down; another instance selling the event holds
			// its row a batch at a time, so this batch waits for the
			// row at most its lock_timeout (the lock wait) and is told
			// busy past it.
			b.serve(ev, few)
			continue
		}
		unlock, err := b.locks.Lock(b.ctx, ev)
		switch {
		case err != nil && b.ctx.Err() != nil:
			b.failQueued(ev, ErrShuttingDown)
			return
		case err != nil && b.wait <= 0:
			// No wait allowed (--lock-wait 0): whoever is queued is told
			// busy now, as the seed did.
			b.failQueued(ev, err)
			return
		case err != nil:
			// Busy: the waiting requests give up on their own timers;
			// whoever is still queued gets another try.
			continue
		}
		// Keep the lock for the batches that follow while the queue keeps
		// filling, up to a lease: taking and giving back the lock is two
		// round trips to Redis, a third of a batch's time on a busy event.
		leased := time.Now()
		handOver := false
		for {
			batch := b.take(ev, b.maxBatch, false)
			if batch == nil {
				break
			}
			b.serve(ev, batch)
			if time.Since(leased) >= b.lease {
				// Whether another instance waits matters only if this
				// worker would take the lock straight back: asking Redis
				// with nothing queued was a third round trip per batch
				// for an event of one request on a slow machine.
				handOver = b.take(ev, 0, false) != nil && b.wanted(ev)
				break
			}
		}
		unlock()
		if handOver {
			// Another instance waits for this event. It polls for the
			// lock, and would almost never find it free in the moment
			// between this release and the next take: stay away for
			// longer than its polls are apart, so it gets its turn.
			select {
			case <-time.After(HandOverPause):
			case <-b.ctx.Done():
			}
		}
	}
}

// failQueued answers every request still queued for ev with err.
func (b *Batcher) failQueued(ev int64, err error) {
	for {
		batch := b.take(ev, b.maxBatch, true)
		if batch == nil {
			return
		}
		for _, w := range batch {
			if b.Observe != nil && errors.Is(err, sale.ErrBusy) {
				b.Observe.QueueTimedOut()
			}
			w.done <- result{err: err}
		}
	}
}

func (b *Batcher) serve(ev int64, batch []*waiter) {
	defer func() {
		// A panic here would take the whole process down with every
		// queued request; answer this batch as a fault of ours instead.
		if v := recover(); v != nil {
			b.log.Error("hold batch panicked", "event", ev, "panic", v, "stack", string(debug.Stack()))
			for _, w := range batch {
				select {
				case w.done <- result{err: fmt.Errorf("hold: batch panicked: %v", v)}:
				default: // already answered
				}
			}
		}
	}()
	reqs := make([]Request, len(batch))
	for i, w := range batch {
		reqs[i] = w.req
	}
	if b.Observe != nil {
		b.Observe.Batched(len(batch))
	}
	// The batch belongs to its requests, not to any one client: it runs to
	// the end even if some of them have gone. Only Stop, out of time,
	// cancels it.
	outs, err := b.holds(ev, reqs, b.deadline())
	if b.Observe != nil && errors.Is(err, sale.ErrBusy) {
		// The row stayed another transaction's past lock_timeout: each
		// request is answered busy, and counted so, once.
		for range batch {
			b.Observe.QueueTimedOut()
		}
	}
	for i, w := range batch {
		switch {
		case err != nil && b.ctx.Err() != nil:
			w.done <- result{err: ErrShuttingDown}
		case err != nil:
			w.done <- result{err: err}
		default:
			w.done <- result{out: outs[i]}
		}
	}
}

// holds serves one event's batch: at once when a lane is free, else in
// the group that the next lane to free serves (with idempotency keys too:
// the group's transaction claims and keeps them). On a lane it takes only
// event rows that are free: one another transaction holds (an admin's edit,
// /book/safe's work, another instance's batch) would keep the lane, and
// every other event's batches queued behind it, for up to the lock wait.
// A batch whose row is held gives the lane up, then waits for its row
// alone.
func (b *Batcher) holds(ev int64, reqs []Request, deadline time.Time) ([]Outcome, error) {
	if b.events == nil {
		return b.alone(ev, reqs, deadline)
	}
	b.gmu.Lock()
	if b.busy < b.lanes {
		b.busy++
		b.gmu.Unlock()
		g := &group{batches: []EventBatch{{EventID: ev, Reqs: reqs}}, n: len(reqs), done: make(chan struct{}), deadline: deadline}
		b.runGroup(g)
		return b.outcome(g, 0, ev, reqs, deadline)
	}
	var g *group
	if n := len(b.groups); n > 0 && b.groups[n-1].n+len(reqs) <= b.maxBatch {
		g = b.groups[n-1]
	}
	lead := g == nil
	if lead {
		g = &group{start: make(chan struct{}), done: make(chan struct{})}
		b.groups = append(b.groups, g)
	}
	k := len(g.batches)
	g.batches = append(g.batches, EventBatch{EventID: ev, Reqs: reqs})
	g.n += len(reqs)
	// The group's call ends when its earliest batch's time does.
	if g.deadline.IsZero() || deadline.Before(g.deadline) {
		g.deadline = deadline
	}
	b.gmu.Unlock()
	if lead {
		<-g.start
		b.runGroup(g)
	} else {
		<-g.done
	}
	return b.outcome(g, k, ev, reqs, deadline)
}

// outcome is what g's call answered batch k (ev's reqs), once the lane is
// handed on.
func (b *Batcher) outcome(g *group, k int, ev int64, reqs []Request, deadline time.Time) ([]Outcome, error) {
	switch {
	case g.err == nil && g.outs[k] != nil:
		return g.outs[k], nil
	case g.err == nil, !errors.Is(g.err, sale.ErrUnavailable) && b.ctx.Err() == nil:
		// Its event's row was another transaction's (or its seats are
		// picked one event a call), or the call failed in a way that
		// committed nothing, perhaps for another batch's sake: this
		// batch alone, off the lane, waiting for its row, in what is
		// left of its time.
		return b.alone(ev, reqs, deadline)
	}
	return nil, g.err
}

// alone serves ev's batch in a call of its own.
func (b *Batcher) alone(ev int64, reqs []Request, deadline time.Time) ([]Outcome, error) {
	ctx, cancel := b.call(deadline)
	defer cancel()
	return b.store.CreateHolds(ctx, ev, reqs, b.ttl, renderCreated)
}

// deadline is when a batch taken now must be done: CallTimeout from now,
// for its wait for a lane, its call and a call of its own after a group's
// that failed, together; zero without a CallTimeout.
func (b *Batcher) deadline() time.Time {
	if b.CallTimeout <= 0 {
		return time.Time{}
	}
	return time.Now().Add(b.CallTimeout)
}

// call is the context of one call of the Store: the batcher's, ending at
// deadline (none when zero).
func (b *Batcher) call(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(b.ctx)
	}
	return context.WithDeadline(b.ctx, deadline)
}

// runGroup serves g in one call that waits for no row, then hands its
// lane on.
func (b *Batcher) runGroup(g *group) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("hold group panicked", "batches", len(g.batches), "panic", v, "stack", string(debug.Stack()))
			// Perhaps after its statement committed: unknown, so that no
			// batch of it is served again alone.
			g.outs, g.err = nil, fmt.Errorf("%w: hold: batch panicked: %v", sale.ErrUnavailable, v)
		}
		close(g.done)
		b.next()
	}()
	ctx, cancel := b.call(g.deadline)
	defer cancel()
	g.outs, g.err = b.events.CreateHoldsEvents(ctx, g.batches, b.ttl, renderCreated)
}

// next gives the lane of a call that ended to the first group waiting, or
// frees it.
func (b *Batcher) next() {
	b.gmu.Lock()
	defer b.gmu.Unlock()
	if len(b.groups) == 0 {
		b.busy--
		return
	}
	g := b.groups[0]
	b.groups = slices.Delete(b.groups, 0, 1)
	close(g.start)
}

// Start is the Batcher's side of worker.Worker. It does nothing: a batch
// worker starts per event when its first request comes, so a Batcher
// serves from NewBatcher on, and only its Stop is ordered.
func (b *Batcher) Start(context.Context) error { return nil }

// Stop stops taking requests, lets the workers serve every request already
// queued, and returns when they are done or ctx ends. Requests still queued
// then are answered ErrShuttingDown: nobody is left without an answer.
// Stopping again returns at once.
func (b *Batcher) Stop(ctx context.Context) error {
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		sh.closed = true
		sh.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	// Out of time: answer whoever still waits in a queue, and stop the
	// batches in flight.
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for _, q := range sh.queues {
			for _, w := range q.waiting {
				w.taken = true
				w.done <- result{err: ErrShuttingDown}
			}
			q.waiting = nil
		}
		sh.mu.Unlock()
	}
	b.cancel()
	<-done
	return errors.New("hold: batcher closed before its queues drained")
}
