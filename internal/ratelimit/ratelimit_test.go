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

// A failure counts on every limiter; a client over any is refused before
// its attempt is judged, and heard again the next second. A right attempt
// counts nothing, and a client that spent its writes (the looser limit,
// as the write limit is) but failed nothing is still judged: /admin's
// reads are no writes.
func TestFailuresCountOnEveryLimit(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(t *testing.T, shared ratelimit.Counter) {
		strict := ratelimit.New(2, nil, discard)
		loose := ratelimit.New(100, shared, discard).WithWait(10 * time.Second)
		f := ratelimit.NewFailures(strict, nil, loose)
		r := httptest.NewRequest("POST", "/admin/events", nil)
		r.RemoteAddr = "192.0.2.7:5555"
		ctx := context.Background()
		inOneSecond(t, func() error {
			for i := 0; i < 5; i++ {
				client, done, err := f.Try(r)
				if client != "192.0.2.7" || err != nil {
					return fmt.Errorf("right attempt %d: Try = %q, %v", i+1, client, err)
				}
				if err := done(ctx, true); err != nil {
					return fmt.Errorf("right attempt %d: %v", i+1, err)
				}
			}
			for i := 0; i < 2; i++ {
				_, done, err := f.Try(r)
				if err != nil {
					return fmt.Errorf("failure %d: Try %v", i+1, err)
				}
				if err := done(ctx, false); err != nil {
					return fmt.Errorf("failure %d: %v, want it within the limit", i+1, err)
				}
			}
			if _, _, err := f.Try(r); err != ratelimit.ErrTooMany {
				return fmt.Errorf("an attempt after the strict limit's 2 failures: %v, want %v unjudged", err, ratelimit.ErrTooMany)
			}
			// The two failures were hits on the looser limit too, the
			// right attempts none: 98 more fit in its 100.
			for i := 0; i < 98; i++ {
				if !loose.Allow(ctx, "192.0.2.7") {
					return fmt.Errorf("the looser limit full after %d more: the right attempts were counted", i)
				}
			}
			if loose.Allow(ctx, "192.0.2.7") {
				return fmt.Errorf("the failures were not counted on the looser limit")
			}
			return nil
		})
		// Another client spends the looser limit, refused by it nowhere:
		// its right attempt is judged.
		other := httptest.NewRequest("GET", "/admin/webhooks", nil)
		other.RemoteAddr = "192.0.2.9:5555"
		inOneSecond(t, func() error {
			for i := 0; i < 100; i++ {
				if !loose.Allow(ctx, "192.0.2.9") {
					return fmt.Errorf("write %d refused", i+1)
				}
			}
			_, done, err := f.Try(other)
			if err != nil {
				return fmt.Errorf("a right attempt of a client that spent its writes: %v, want it judged", err)
			}
			return done(ctx, true)
		})
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
		if _, _, err := f.Try(r); err != nil {
			t.Fatalf("Try the next second: %v", err)
		}
	})
}

// A burst of wrong guesses at once: on one instance the limit is judged and
// the rest refused unjudged; over two sharing Redis, at most the limit
// plus each instance's turns. Counted only after being judged, and refused
// only once an instance had seen a refusal, a burst had hundreds judged
// (182 in a second against 10, through HTTP).
func TestABurstOfGuessesHasABoundedNumberJudged(t *testing.T) {
	t.Parallel()
	r := testenv.PrivateRedis(t)
	rdb, err := store.OpenRedis(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	for _, n := range []int{1, 2} {
		prefix := testenv.Name(fmt.Sprintf("burst%d", n)) + ":"
		var instances []*ratelimit.Failures
		for i := 0; i < n; i++ {
			instances = append(instances, ratelimit.NewFailures(ratelimit.New(10, store.NewRateCounter(rdb, prefix), discard).WithWait(10*time.Second)))
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
					if _, done, err := instances[i%n].Try(req); err == nil {
						judged.Add(1)
						done(context.Background(), false)
					}
				}()
			}
			close(start)
			wg.Wait()
			// Fewer may be: an attempt is refused while the failures
			// and the attempts in judgment would pass the limit, though
			// some of those are refused in turn.
			if got, most := judged.Load(), int64(10*n); got > most || got < 1 {
				return fmt.Errorf("%d of 200 guesses judged on %d instances, want 1 to %d", got, n, most)
			}
			return nil
		})
	}
}
