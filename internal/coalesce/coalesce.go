// Package coalesce groups concurrent calls that share a key into one call
// of a batch function: group commit for a round trip whose cost is mostly
// per call rather than per item, such as a Redis script over one event's
// queue.
//
// A call for a key with nothing in flight runs at once, alone, so a quiet
// key pays no wait. While a batch for a key is in flight, calls for that
// key queue up; when the batch returns, the queued calls (up to the
// group's limit) go together as the next batch. So there is at most one
// batch in flight per key, and under a crowd each batch carries the
// calls that arrived during the one before it.
package coalesce

import (
	"context"
	"fmt"
	"runtime"
	"sync"
)

// Func runs one batch: one result for each argument, in order. An error
// fails every call of the batch; a second in a row for a key fails every
// call queued for the key as well.
type Func[K comparable, A, R any] func(ctx context.Context, key K, args []A) ([]R, error)

// Group coalesces calls by key. The zero value is not usable: see New.
type Group[K comparable, A, R any] struct {
	run Func[K, A, R]
	max int

	mu sync.Mutex
	// waiting holds, for each key with a batch in flight, the calls for
	// the next one.
	waiting map[K][]*call[A, R]
}

type call[A, R any] struct {
	ctx  context.Context
	arg  A
	res  R
	err  error
	done chan struct{}
}

// New returns a group that runs batches with run, at most limit calls each
// (limit < 1 means 1: no coalescing).
func New[K comparable, A, R any](limit int, run Func[K, A, R]) *Group[K, A, R] {
	return &Group[K, A, R]{run: run, max: max(1, limit), waiting: map[K][]*call[A, R]{}}
}

// Do runs arg in the next batch for key and answers its result. A caller
// whose ctx ends while its call waits gets ctx's error; the call itself
// may still run with its batch (as a call whose answer was lost would).
// The batch runs with the context of its first call, without its
// cancellation, since it carries other callers' calls too.
func (g *Group[K, A, R]) Do(ctx context.Context, key K, arg A) (R, error) {
	c := &call[A, R]{ctx: ctx, arg: arg, done: make(chan struct{})}
	g.mu.Lock()
	if q, busy := g.waiting[key]; busy {
		g.waiting[key] = append(q, c)
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.res, c.err
		case <-ctx.Done():
			var zero R
			return zero, fmt.Errorf("coalesce: %w", ctx.Err())
		}
	}
	g.waiting[key] = nil
	g.mu.Unlock()
	err := g.runBatch(key, []*call[A, R]{c}, false)
	if g.more(key) {
		go g.drain(key, err != nil)
	}
	return c.res, c.err
}

// drain runs the batches of key while calls queue for it, so that the
// caller who found key idle returns as soon as its own batch is done. It
// is one goroutine for as long as the crowd lasts, not one a batch: a
// new goroutine's stack would grow again through the batch function's
// calls every time. failed says the batch before the first failed.
func (g *Group[K, A, R]) drain(key K, failed bool) {
	for {
		// Let the other runnable goroutines run first: under a crowd they
		// are mostly requests on their way to this key, and a call that
		// joins this batch costs far less than one that waits for the
		// next.
		runtime.Gosched()
		g.mu.Lock()
		q := g.waiting[key]
		n := min(len(q), g.max)
		batch := q[:n:n]
		g.waiting[key] = q[n:]
		g.mu.Unlock()
		failed = g.runBatch(key, batch, failed) != nil
		if !g.more(key) {
			return
		}
	}
}

// more reports whether calls wait for key; when none do, key is idle
// again and the next call runs at once.
func (g *Group[K, A, R]) more(key K) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting[key]) == 0 {
		delete(g.waiting, key)
		return false
	}
	return true
}

// runBatch runs batch, answers each of its calls and returns the batch's
// error. afterFailure says the batch before it, for key, failed.
func (g *Group[K, A, R]) runBatch(key K, batch []*call[A, R], afterFailure bool) error {
	args := make([]A, len(batch))
	for i, c := range batch {
		args[i] = c.arg
	}
	res, err := g.run(context.WithoutCancel(batch[0].ctx), key, args)
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("coalesce: a batch of %d calls answered %d results", len(batch), len(res))
	}
	if err != nil && afterFailure {
		// Two batches in a row failed: the server is down or hung, and
		// the calls queued meanwhile would meet the same fault. They fail
		// with this batch rather than wait out a timeout each, one batch
		// after another. After one failure alone they still run: one
		// batch that met a slow moment (a timeout on a busy machine) must
		// not fail every caller queued behind it.
		g.mu.Lock()
		batch = append(batch, g.waiting[key]...)
		g.waiting[key] = nil
		g.mu.Unlock()
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.res = res[i]
		}
		close(c.done)
	}
	return err
}
