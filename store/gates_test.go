package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// lockCalls counts the commands a client sends that name a lock's key.
type lockCalls struct{ n atomic.Int64 }

func (c *lockCalls) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *lockCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		for _, a := range cmd.Args() {
			if s, ok := a.(string); ok && strings.Contains(s, "event_lock:") {
				c.n.Add(1)
				break
			}
		}
		return next(ctx, cmd)
	}
}

func (c *lockCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// countedLocks returns n Locks, as of n instances, with waits of wait
// (see locksOn).
func countedLocks(t *testing.T, n int, wait time.Duration) ([]*store.Locks, *lockCalls) {
	t.Helper()
	return locksOn(t, slices.Repeat([]store.LockOptions{{TTL: time.Minute, Wait: wait}}, n)...)
}

// hammerLock runs perInstance callers on each of locks, each taking event
// ev's lock once and keeping it for hold. It returns the most holders
// seen at once and how many took it.
func hammerLock(t *testing.T, locks []*store.Locks, perInstance int, ev int64, hold time.Duration) (maxInside, done int32) {
	t.Helper()
	var inside, most, n atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, l := range locks {
		for i := 0; i < perInstance; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				unlock, err := l.Lock(context.Background(), ev)
				if err != nil {
					t.Errorf("lock: %v", err)
					return
				}
				k := inside.Add(1)
				for {
					m := most.Load()
					if k <= m || most.CompareAndSwap(m, k) {
						break
					}
				}
				time.Sleep(hold)
				inside.Add(-1)
				n.Add(1)
				unlock()
			}()
		}
	}
	close(start)
	wg.Wait()
	return most.Load(), n.Load()
}

// The callers of one instance waiting for one event's lock each polled
// Redis with growing pauses: a crowd of them sent Redis several attempts
// apiece, and the lock lay free for up to a pause (32 ms) each time it
// was given back. They now take turns in the instance, and only the one
// whose turn it is asks Redis. Failed before the gate: 40 callers sent
// 230 to 330 lock commands, for 80 that take and give back.
func TestOneInstancesWaitersAskRedisOneAtATime(t *testing.T) {
	t.Parallel()
	ls, calls := countedLocks(t, 1, 20*time.Second)
	const n = 40
	most, done := hammerLock(t, ls, n, 5, 2*time.Millisecond)
	if most != 1 || done != n {
		t.Fatalf("%d holders at once at most, %d done; want 1 and %d", most, done, n)
	}
	// A take and a give-back each (and a script loaded once), with room
	// for a few polls of an attempt that met the previous holder's
	// give-back in flight.
	if got, want := calls.n.Load(), int64(2*n+10); got > want {
		t.Fatalf("%d callers sent %d lock commands to Redis, want at most %d", n, got, want)
	}
}

// Three instances, each with a crowd, on one event: the lock still
// excludes across instances (only a gate's head polls, in each).
func TestLockExcludesAcrossInstancesUnderContention(t *testing.T) {
	t.Parallel()
	ls, _ := countedLocks(t, 3, 30*time.Second)
	most, done := hammerLock(t, ls, 20, 6, time.Millisecond)
	if most != 1 || done != 60 {
		t.Fatalf("%d holders at once at most, %d done; want 1 and 60", most, done)
	}
}

// A caller that gives up in the gate (its wait ran out, or its client
// left) leaves it: the next caller still gets its turn.
func TestACallerThatGivesUpInTheGateLeavesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ls, _ := countedLocks(t, 1, 200*time.Millisecond)
	l := ls[0]
	unlock, err := l.Lock(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lock(ctx, 4); !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("a caller behind a holder for its whole wait: %v, want ErrBusy", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Lock(gone, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("a caller whose client left: %v, want context.Canceled", err)
	}
	unlock()
	next, err := l.Lock(ctx, 4)
	if err != nil {
		t.Fatalf("the next caller after two gave up: %v", err)
	}
	next()
}

// With Redis not answering, the first caller in the gate learns it after
// its timeout (500 ms): those behind it must not each wait out a timeout
// in turn, but go on at once to the row lock. Failed with a gate that
// never opens: 20 callers took 10 s.
func TestTheGateOpensWhenRedisStopsAnswering(t *testing.T) {
	t.Parallel()
	l := hungLocks(t, time.Minute, 30*time.Second)
	start := time.Now()
	const n = 20
	var wg sync.WaitGroup
	var fellBack atomic.Int32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := l.Lock(context.Background(), 2)
			if err != nil {
				t.Errorf("Lock with Redis not answering: %v; want the row lock's no-op unlock", err)
				return
			}
			fellBack.Add(1)
			unlock()
		}()
	}
	wg.Wait()
	// One timeout for the first, one for those that went on together,
	// and room for a slow machine; in turn it would be n timeouts.
	if took := time.Since(start); took > 4*time.Second || fellBack.Load() != n {
		t.Fatalf("%d of %d callers fell back, in %s; want all, in about two 500 ms timeouts", fellBack.Load(), n, took.Round(time.Millisecond))
	}
}

// A caller whose client left as its turn came (its context ended, and the
// gate's select took the turn all the same) must give the turn back: it
// kept it, and every later caller of the instance waited out its whole
// wait and was told busy. Failed before the fix within a few tries.
func TestACallerGoneAsItsTurnCameGivesTheTurnBack(t *testing.T) {
	t.Parallel()
	ls, _ := countedLocks(t, 1, time.Second)
	l := ls[0]
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 40; i++ {
		// The turn is free and the context over: the gate's select may
		// take either.
		if unlock, err := l.Lock(gone, 9); err == nil {
			unlock()
		}
		unlock, err := l.Lock(context.Background(), 9)
		if err != nil {
			t.Fatalf("try %d: a caller after one whose client left: %v", i, err)
		}
		unlock()
	}
}
