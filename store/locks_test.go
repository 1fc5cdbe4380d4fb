package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	neturl "net/url"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newLocks(t *testing.T, ttl, wait time.Duration) (*store.Locks, func(context.Context, string) (string, error)) {
	t.Helper()
	ls, get := newLockSet(t, []time.Duration{ttl}, wait)
	return ls[0], get
}

// newLockSet returns Locks with the given TTLs on one Redis prefix, as if
// held by instances configured differently.
func newLockSet(t *testing.T, ttls []time.Duration, wait time.Duration, mark ...bool) ([]*store.Locks, func(context.Context, string) (string, error)) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	var out []*store.Locks
	for _, ttl := range ttls {
		opts := store.LockOptions{Prefix: prefix, TTL: ttl, Wait: wait, MarkWaits: len(mark) > 0 && mark[0]}
		out = append(out, store.NewLocks(rdb, opts, slog.New(slog.NewTextHandler(io.Discard, nil))))
	}
	get := func(ctx context.Context, key string) (string, error) { return rdb.Get(ctx, key).Result() }
	return out, get
}

func TestAHolderWhoseTTLRanOutCannotReleaseTheNextHoldersLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The first holder's lock lives 100ms, the second's long enough to
	// outlast a slow machine.
	ls, get := newLockSet(t, []time.Duration{100 * time.Millisecond, time.Minute}, 5*time.Second)
	locks, next := ls[0], ls[1]

	unlockFirst, err := locks.Lock(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The first holder stalls past its TTL; the second takes the lock.
	time.Sleep(150 * time.Millisecond)
	unlockSecond, err := next.Lock(ctx, 1)
	if err != nil {
		t.Fatalf("second holder: %v", err)
	}
	second, err := get(ctx, locks.Key(1))
	if err != nil {
		t.Fatal(err)
	}
	// The first holder wakes and releases: the compare-and-delete must
	// leave the second holder's lock alone.
	unlockFirst()
	if got, err := get(ctx, locks.Key(1)); err != nil || got != second {
		t.Fatalf("after the stale release the lock is %q (%v), want the second holder's %q", got, err, second)
	}
	unlockSecond()
	if _, err := get(ctx, locks.Key(1)); err == nil {
		t.Fatal("the second holder's release left the lock in place")
	}
}

func TestLockIsBusyAfterTheWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locks, _ := newLocks(t, 5*time.Second, 50*time.Millisecond)
	unlock, err := locks.Lock(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := locks.Lock(ctx, 7); !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	// Another event is not blocked by it.
	other, err := locks.Lock(ctx, 8)
	if err != nil {
		t.Fatalf("event 8: %v", err)
	}
	other()
}

func TestLockExcludesUnderContention(t *testing.T) {
	t.Parallel()
	ls, _ := countedLocks(t, 1, 20*time.Second)
	if most, done := hammerLock(t, ls, 50, 3, time.Millisecond); most != 1 || done != 50 {
		t.Fatalf("%d holders at once at most, %d done; want 1 and 50", most, done)
	}
}

func TestLockWithRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	r := testenv.PrivateRedis(t)
	rdb, err := store.OpenRedis(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	locks := store.NewLocks(rdb, store.LockOptions{Prefix: "t:", TTL: time.Second, Wait: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	unlock, err := locks.Lock(context.Background(), 1)
	if err != nil || unlock == nil {
		t.Fatalf("Lock with Redis down: %v; want a no-op unlock and no error", err)
	}
	unlock()
	if locks.Up(context.Background()) == nil {
		t.Fatal("Up says Redis answers while it is stopped")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("falling back took %s", time.Since(start))
	}
}

func TestLockWithoutWaitAnswersAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	locks, _ := newLocks(t, 5*time.Second, 0)
	unlock, err := locks.Lock(ctx, 9)
	if err != nil {
		t.Fatalf("a free lock with no wait: %v", err)
	}
	defer unlock()
	if _, err := locks.Lock(ctx, 9); !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("a held lock with no wait: %v, want ErrBusy", err)
	}
}

// hungLocks returns Locks on a Redis that never answers: a listener that
// never accepts, so connections hang instead of being refused, as with a
// Redis partitioned away or stalled.
func hungLocks(t *testing.T, ttl, wait time.Duration) *store.Locks {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rdb, err := store.OpenRedis("redis://" + ln.Addr().String() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return store.NewLocks(rdb, store.LockOptions{Prefix: "t:", TTL: ttl, Wait: wait}, quietLog())
}

func TestLockWithRedisNotAnsweringFallsBack(t *testing.T) {
	t.Parallel()
	locks := hungLocks(t, time.Second, 3*time.Second)
	for i := 0; i < 3; i++ {
		unlock, err := locks.Lock(context.Background(), 1)
		if err != nil {
			t.Fatalf("Lock with Redis not answering: %v; want a fall back to the row lock, not busy", err)
		}
		unlock()
	}
}

// A holder can see that another waits for its lock, for as long as it
// waits and no longer: a holder of another instance (marked in Redis), or
// one of its own (in the gate).
func TestAWaitingLockIsSeenByTheHolder(t *testing.T) {
	t.Parallel()
	for _, same := range []bool{false, true} {
		t.Run(fmt.Sprintf("same_instance=%v", same), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ls, _ := newLockSet(t, []time.Duration{10 * time.Second, 10 * time.Second}, 10*time.Second, true)
			holder, waiter := ls[0], ls[1]
			if same {
				waiter = holder
			}
			unlock, err := holder.Lock(ctx, 7)
			if err != nil {
				t.Fatal(err)
			}
			if holder.Wanted(ctx, 7) {
				t.Fatal("wanted before anyone waited")
			}
			got := make(chan error, 1)
			go func() {
				unlockW, err := waiter.Lock(ctx, 7)
				if err == nil {
					unlockW()
				}
				got <- err
			}()
			deadline := time.Now().Add(10 * time.Second)
			for !holder.Wanted(ctx, 7) {
				if time.Now().After(deadline) {
					t.Fatal("the waiter never showed")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if holder.Wanted(ctx, 8) {
				t.Fatal("another event's lock reads wanted")
			}
			unlock()
			if err := <-got; err != nil {
				t.Fatal(err)
			}
			if holder.Wanted(ctx, 7) {
				t.Fatal("still wanted after the waiter took the lock")
			}
		})
	}
}

// quietLog discards what the code under test logs.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// A lock whose answer came after the client's 500 ms timeout: Redis set
// it all the same, Lock fell back to the row lock, and every instance was
// then told busy for that event until the lock's TTL ran out (here 30 s).
// The holder that never heard must give it back by its token, so another
// instance has it within its wait. Failed before the fix: busy after 5 s.
func TestALockWhoseAnswerCameTooLateIsGivenBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, prefix := testenv.Redis(t)
	direct, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	slowRdb, err := store.OpenRedis("redis://" + p.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slowRdb.Close() })
	opts := store.LockOptions{Prefix: prefix, TTL: 30 * time.Second, Wait: 5 * time.Second}
	slow, other := store.NewLocks(slowRdb, opts, quietLog()), store.NewLocks(direct, opts, quietLog())

	// While Redis is quick: the lock's script is loaded, and the slow
	// instance's pool holds connections already open (a new one would
	// spend its handshake's answer on the delay and never send anything).
	unlock, err := slow.Lock(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	p.SetDelay(50 * time.Millisecond)
	var warm sync.WaitGroup
	for i := 0; i < 8; i++ {
		warm.Add(1)
		go func() { defer warm.Done(); slowRdb.Ping(ctx) }()
	}
	warm.Wait()

	// Now every answer to the slow instance comes after its timeout.
	p.SetDelay(700 * time.Millisecond)
	unlock, err = slow.Lock(ctx, 1)
	if err != nil {
		t.Fatalf("Lock with answers too late: %v, want a fall back to the row lock", err)
	}
	unlock()
	if slow.RedisUp() {
		t.Fatal("the slow instance says Redis is up")
	}

	start := time.Now()
	unlockOther, err := other.Lock(ctx, 1)
	if err != nil {
		t.Fatalf("another instance, %s later: %v; the lock whose answer was lost is still held", time.Since(start).Round(time.Millisecond), err)
	}
	unlockOther()
}

// locksOn returns one Locks per options on one Redis, with one prefix, as
// if on instances configured differently, and the count of the lock
// commands they send.
func locksOn(t *testing.T, opts ...store.LockOptions) ([]*store.Locks, *lockCalls) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	calls := &lockCalls{}
	rdb.AddHook(calls)
	var out []*store.Locks
	for _, o := range opts {
		o.Prefix = prefix
		out = append(out, store.NewLocks(rdb, o, quietLog()))
	}
	return out, calls
}

// The mark that someone waits for a lock was one flag: the first waiter
// to give up deleted it for every other, and the holder, seeing nobody
// wait, kept the lock from the one still waiting (with three instances,
// one starved). The mark must stay while any waiter waits. Failed before
// the fix: not wanted once the first waiter gave up.
func TestTheWaitMarkStaysWhileAnyWaiterWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ls, _ := locksOn(t,
		store.LockOptions{TTL: 10 * time.Second, Wait: 10 * time.Second, MarkWaits: true},
		store.LockOptions{TTL: 10 * time.Second, Wait: 10 * time.Second, MarkWaits: true},
		store.LockOptions{TTL: 10 * time.Second, Wait: 200 * time.Millisecond, MarkWaits: true})
	holder, patient, hasty := ls[0], ls[1], ls[2]
	unlock, err := holder.Lock(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		unlockP, err := patient.Lock(ctx, 7)
		if err == nil {
			unlockP()
		}
		got <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !holder.Wanted(ctx, 7) {
		if time.Now().After(deadline) {
			t.Fatal("the patient waiter never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := hasty.Lock(ctx, 7); !errors.Is(err, sale.ErrBusy) {
		t.Fatalf("the hasty waiter got %v, want busy", err)
	}
	if !holder.Wanted(ctx, 7) {
		t.Fatal("the hasty waiter gave up and the lock reads unwanted, while the patient one still waits")
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("the patient waiter: %v", err)
	}
	if holder.Wanted(ctx, 7) {
		t.Fatal("still wanted after every waiter is done")
	}
}

// A waiter that dies while it waits never clears its mark; the mark must
// stop counting when its wait would have ended, or every holder would
// hand its lock over to nobody from then on. The waiter's client is
// closed under it, as its process would be.
func TestTheMarkOfAWaiterThatDiedEndsWithItsWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, prefix := testenv.Redis(t)
	open := func() redis.UniversalClient {
		rdb, err := store.OpenRedis(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	holder := store.NewLocks(open(), store.LockOptions{Prefix: prefix, TTL: 10 * time.Second, Wait: time.Second, MarkWaits: true}, quietLog())
	dying := open()
	waiter := store.NewLocks(dying, store.LockOptions{Prefix: prefix, TTL: time.Second, Wait: time.Second, MarkWaits: true}, quietLog())
	unlock, err := holder.Lock(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if unlockW, err := waiter.Lock(ctx, 3); err == nil {
			unlockW()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !holder.Wanted(ctx, 3) {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never showed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	marked := time.Now()
	dying.Close()
	<-done
	if !holder.Wanted(ctx, 3) && time.Since(marked) < 500*time.Millisecond {
		t.Fatal("the waiter cleared its mark: it did not die as it should")
	}
	for holder.Wanted(ctx, 3) {
		if time.Since(marked) > 5*time.Second {
			t.Fatal("the mark of a waiter that died outlived its 1 s wait by 4 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
