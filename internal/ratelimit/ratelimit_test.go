package ratelimit_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/ratelimit"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// withRedisUpAndDown runs f with a limiter counting through a Redis that
// answers, and through one that was stopped.
func withRedisUpAndDown(t *testing.T, f func(t *testing.T, shared ratelimit.Counter)) {
	for _, up := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", up), func(t *testing.T) {
			t.Parallel()
			r := testenv.PrivateRedis(t)
			rdb, err := store.OpenRedis(r.URL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rdb.Close() })
			if !up {
				if err := r.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			f(t, store.NewRateCounter(rdb, testenv.Name("rl")+":"))
		})
	}
}

// inOneSecond runs burst from just after a second starts until it runs
// within one second, as the limit's window is, and fails the test with
// burst's error from a run that did.
func inOneSecond(t *testing.T, burst func() error) {
	t.Helper()
	for try := 0; try < 5; try++ {
		now := time.Now()
		time.Sleep(now.Truncate(time.Second).Add(time.Second + 10*time.Millisecond).Sub(now))
		start := time.Now().Unix()
		err := burst()
		if time.Now().Unix() == start {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Logf("the burst straddled a second (%v); again", err)
	}
	t.Fatal("no burst ran within one second in five tries")
}

// Many goroutines at once from one client: exactly the limit passes in a
// second, whether Redis counts or each instance does.
func TestLimiterAllowsExactlyItsRate(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(t *testing.T, shared ratelimit.Counter) {
		// Exactly 7 needs every count to reach Redis: 40 first dials on a
		// loaded machine can outlast the default wait and count locally.
		l := ratelimit.New(7, shared, discard).WithWait(10 * time.Second)
		inOneSecond(t, func() error {
			var passed atomic.Int64
			var wg sync.WaitGroup
			for i := 0; i < 40; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if l.Allow(context.Background(), "10.0.0.1") {
						passed.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := passed.Load(); n != 7 {
				return fmt.Errorf("%d of 40 passed, want exactly 7", n)
			}
			if !l.Over("10.0.0.1") || l.Over("10.0.0.2") {
				return fmt.Errorf("Over: the client refused %v, another %v", l.Over("10.0.0.1"), l.Over("10.0.0.2"))
			}
			if !l.Allow(context.Background(), "10.0.0.2") {
				return fmt.Errorf("another client was refused")
			}
			return nil
		})
	})
}

// An attempt counts on every limiter before it is judged; a client over
// any is refused unjudged, and heard again the next second. An attempt
// that proved right is given back.
func TestFailuresCountOnEveryLimit(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(t *testing.T, shared ratelimit.Counter) {
		strict := ratelimit.New(2, nil, discard)
		loose := ratelimit.New(100, shared, discard).WithWait(10 * time.Second)
		f := ratelimit.NewFailures(strict, nil, loose)
		r := httptest.NewRequest("POST", "/admin/events", nil)
		r.RemoteAddr = "192.0.2.7:5555"
		inOneSecond(t, func() error {
			// Right ones, given back: they do not count.
			for i := 0; i < 5; i++ {
				client, forgive, err := f.Try(r)
				if client != "192.0.2.7" || err != nil {
					return fmt.Errorf("right attempt %d: Try = %q, %v", i+1, client, err)
				}
				forgive(context.Background())
			}
			for i, want := range []error{nil, nil, ratelimit.ErrTooMany} {
				if _, _, err := f.Try(r); err != want {
					return fmt.Errorf("failure %d: %v, want %v", i+1, err, want)
				}
			}
			if _, _, err := f.Try(r); err != ratelimit.ErrTooMany {
				return fmt.Errorf("Try over the limit: %v", err)
			}
			// Every failure was a hit on the looser limit too: 3 of 100.
			for i := 0; i < 97; i++ {
				loose.Allow(context.Background(), "192.0.2.7")
			}
			if loose.Allow(context.Background(), "192.0.2.7") {
				return fmt.Errorf("the failures were not counted on every limit, or the right ones were")
			}
			return nil
		})
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		if _, _, err := f.Try(r); err != nil {
			t.Fatalf("Try the next second: %v", err)
		}
	})
}

// A burst of guesses at once, spread over two instances sharing Redis:
// at most the limit is judged in a second. Counted only after a guess was
// judged, every guess that came in before the first failure was counted
// was judged (up to 182 a second against 10, measured through HTTP).
func TestABurstOfAttemptsHasAtMostTheLimitJudged(t *testing.T) {
	t.Parallel()
	r := testenv.PrivateRedis(t)
	rdb, err := store.OpenRedis(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	prefix := testenv.Name("burst") + ":"
	instances := []*ratelimit.Failures{
		ratelimit.NewFailures(ratelimit.New(10, store.NewRateCounter(rdb, prefix), discard).WithWait(10 * time.Second)),
		ratelimit.NewFailures(ratelimit.New(10, store.NewRateCounter(rdb, prefix), discard).WithWait(10 * time.Second)),
	}
	inOneSecond(t, func() error {
		var judged atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := httptest.NewRequest("POST", "/admin/events", nil)
				req.RemoteAddr = "192.0.2.8:5555"
				<-start
				if _, _, err := instances[i%2].Try(req); err == nil {
					judged.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := judged.Load(); n != 10 {
			return fmt.Errorf("%d of 200 attempts judged across two instances, want the limit, 10", n)
		}
		return nil
	})
}
