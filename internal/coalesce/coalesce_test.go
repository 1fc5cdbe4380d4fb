package coalesce_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/coalesce"
)

// Many goroutines over a few keys: every call gets its own answer, no
// batch mixes keys, no batch is over the limit, at most one batch per key
// is in flight, and calls did share batches.
func TestEveryCallGetsItsOwnAnswer(t *testing.T) {
	const keys, callers, per, limit = 3, 64, 200, 16
	var inFlight [keys]atomic.Int32
	var batches, calls atomic.Int64
	g := coalesce.New(limit, func(_ context.Context, key int, args []int) ([]int, error) {
		if n := inFlight[key].Add(1); n != 1 {
			t.Errorf("key %d: %d batches in flight", key, n)
		}
		defer inFlight[key].Add(-1)
		if len(args) > limit {
			t.Errorf("a batch of %d calls, limit %d", len(args), limit)
		}
		batches.Add(1)
		calls.Add(int64(len(args)))
		out := make([]int, len(args))
		for i, a := range args {
			if a%keys != key {
				t.Errorf("arg %d in a batch of key %d", a, key)
			}
			out[i] = a * 2
		}
		time.Sleep(100 * time.Microsecond)
		return out, nil
	})
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				a := c*per + i
				got, err := g.Do(context.Background(), a%keys, a)
				if err != nil || got != a*2 {
					t.Errorf("Do(%d) = %d, %v; want %d", a, got, err, a*2)
					return
				}
			}
		}()
	}
	wg.Wait()
	if calls.Load() != callers*per {
		t.Fatalf("%d calls ran, want %d", calls.Load(), callers*per)
	}
	if b := batches.Load(); b >= calls.Load()/2 {
		t.Errorf("%d batches for %d calls: the calls were not coalesced", b, calls.Load())
	}
	t.Logf("%d calls in %d batches", calls.Load(), batches.Load())
}

// A lone call runs at once, in a batch of its own.
func TestALoneCallRunsAlone(t *testing.T) {
	var sizes []int
	g := coalesce.New(8, func(_ context.Context, _ string, args []string) ([]string, error) {
		sizes = append(sizes, len(args))
		return args, nil
	})
	for range 3 {
		if got, err := g.Do(context.Background(), "k", "a"); err != nil || got != "a" {
			t.Fatalf("Do = %q, %v", got, err)
		}
	}
	if len(sizes) != 3 || sizes[0] != 1 || sizes[1] != 1 || sizes[2] != 1 {
		t.Fatalf("batch sizes %v, want [1 1 1]", sizes)
	}
}

// A batch's error reaches each of its calls, and so does an answer of the
// wrong length; the key is free for the next call afterwards.
func TestABatchErrorFailsItsCalls(t *testing.T) {
	boom := errors.New("boom")
	fail := true
	g := coalesce.New(8, func(_ context.Context, _ int, args []int) ([]int, error) {
		if fail {
			return nil, boom
		}
		return args[:0], nil
	})
	if _, err := g.Do(context.Background(), 1, 1); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	fail = false
	if _, err := g.Do(context.Background(), 1, 1); err == nil {
		t.Fatal("a batch that answered no result for its call: no error")
	}
}

// A waiting call whose context ends returns at once; the batches go on,
// and a call of a later batch is still answered.
func TestAWaiterCanGiveUp(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 4)
	g := coalesce.New(8, func(_ context.Context, _ int, args []int) ([]int, error) {
		started <- struct{}{}
		<-release
		return args, nil
	})
	first := make(chan error, 1)
	go func() {
		_, err := g.Do(context.Background(), 1, 1)
		first <- err
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := g.Do(ctx, 1, 2)
		gaveUp <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiter that gave up: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if got, err := g.Do(context.Background(), 1, 3); err != nil || got != 3 {
		t.Fatalf("a later call: %d, %v", got, err)
	}
}

// Two batches in a row that fail (their server down or hung) fail every
// call queued behind them, at once: each would otherwise wait out a
// timeout of its own behind the one before. One batch that fails alone
// (a slow moment) fails its own calls only: failing everything queued
// behind it made one timeout on a busy machine a 503 for every poll of
// the event queued meanwhile, hundreds under a crowd. Failed before the
// fix: the 19 queued behind one failure failed with it.
func TestAFailedBatchFailsTheCallsQueuedBehindItOnlyTheSecondTime(t *testing.T) {
	boom := errors.New("timeout")
	for _, tc := range []struct {
		name       string
		failAfter  bool // the batches after the first fail too
		wantFailed int
		wantRuns   int32
	}{
		{"down", true, 20, 2},            // the first alone, then four, then the 15 queued fail with it
		{"one slow moment", false, 1, 6}, // the first alone, then the 19 four at a time
	} {
		t.Run(tc.name, func(t *testing.T) {
			var runs atomic.Int32
			release := make(chan struct{})
			started := make(chan struct{}, 1)
			g := coalesce.New(4, func(_ context.Context, _ int, args []int) ([]int, error) {
				if runs.Add(1) == 1 {
					started <- struct{}{}
					<-release
					return nil, boom
				}
				if tc.failAfter {
					return nil, boom
				}
				return args, nil
			})
			errs := make(chan error, 20)
			go func() {
				_, err := g.Do(context.Background(), 1, 0)
				errs <- err
			}()
			<-started
			for i := 1; i < 20; i++ {
				go func() {
					got, err := g.Do(context.Background(), 1, i)
					if err == nil && got != i {
						err = fmt.Errorf("call %d answered %d", i, got)
					}
					errs <- err
				}()
			}
			time.Sleep(50 * time.Millisecond) // the 19 queue behind the first
			close(release)
			failed := 0
			for range 20 {
				switch err := <-errs; {
				case errors.Is(err, boom):
					failed++
				case err != nil:
					t.Fatal(err)
				}
			}
			if failed != tc.wantFailed || runs.Load() != tc.wantRuns {
				t.Fatalf("%d of 20 calls failed in %d runs of the batch function, want %d in %d", failed, runs.Load(), tc.wantFailed, tc.wantRuns)
			}
		})
	}
}
