package queue_test

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
)

// faultyStock is a StockReader that fails or takes its time, as the test
// says, reading plenty of stock otherwise.
type faultyStock struct {
	mu    sync.Mutex
	err   error
	delay time.Duration
}

func (f *faultyStock) set(err error, delay time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.delay = err, delay
}

func (f *faultyStock) QueueStock(ctx context.Context, _ int64, _ time.Duration, since int64, _ bool) (queue.Stock, float64, error) {
	f.mu.Lock()
	err, delay := f.err, f.delay
	f.mu.Unlock()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return queue.Stock{}, 0, ctx.Err()
	}
	if err != nil {
		return queue.Stock{}, 0, err
	}
	return plentyOfStock(since), 0, nil
}

// plentyOfStock is a reading of more tickets than any test admits, newer
// than since.
func plentyOfStock(since int64) queue.Stock {
	return queue.Stock{ReadAt: max(since+1, time.Now().UnixMicro()), Available: 1_000_000}
}

// An admitter whose steps fail or come slow says so at WARN, once for a
// run of them and not at every step (it steps every 150 ms), and says
// when they work again: both cost admissions, so an operator must see
// them, and the slow report names the part that took the time.
func TestTheAdmitterReportsFailedAndSlowSteps(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ev := w.event(20, nil, 600)
	svc := w.instance()
	stock := &faultyStock{}
	svc.Stock = stock
	join(t, svc, ev.ID, 1)
	var logs testenv.LogBuffer
	ad := queue.NewAdmitter(svc, time.Hour, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx := context.Background()
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(logs.Take()), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	expect := func(when string, want ...string) {
		t.Helper()
		got := lines()
		if len(got) != len(want) {
			t.Fatalf("%s: logged %q, want %d lines %q", when, got, len(want), want)
		}
		for i, w := range want {
			if !regexp.MustCompile(w).MatchString(got[i]) {
				t.Fatalf("%s: line %d is %q, want it to match %q", when, i, got[i], w)
			}
		}
	}

	// No step of the failures' part counts as slow, however busy the
	// machine.
	ad.SetReportTimes(time.Hour, time.Hour)
	ad.Run(ctx)
	expect("a good step")

	stock.set(errors.New("database gone"), 0)
	ad.Run(ctx)
	expect("the first failed step", `msg="queue: admission step failed" .*database gone`)
	for i := 0; i < 5; i++ {
		ad.Run(ctx)
	}
	expect("more failed steps at once")
	// Past the report's interval, the run is said to go on, with its count.
	ad.SetReportTimes(time.Hour, 0)
	ad.Run(ctx)
	ad.Run(ctx)
	expect("failed steps past the interval", `msg="queue: admission steps still failing" .*failed=6 .*database gone`,
		`msg="queue: admission steps still failing" .*failed=1 `)
	ad.SetReportTimes(time.Hour, time.Hour)

	stock.set(nil, 0)
	ad.Run(ctx)
	expect("a good step after failures", `msg="queue: admission steps work again" .*failed_for=`)
	ad.Run(ctx)
	expect("another good step")

	// A step slower than the threshold, whatever the machine: the
	// report's interval from here counts from its first report.
	ad.SetReportTimes(200*time.Millisecond, time.Hour)
	stock.set(nil, 400*time.Millisecond)
	ad.Run(ctx)
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], `msg="queue: admission steps slow"`) || !strings.Contains(got[0], "slow=1") {
		t.Fatalf("a slow step logged %q, want one line of admission steps slow", got)
	}
	// The stock reading took the time, and the report says so.
	var stockTook time.Duration
	for _, f := range strings.Fields(got[0]) {
		if v, ok := strings.CutPrefix(f, "stock="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				stockTook = d
			}
		}
	}
	if stockTook < 400*time.Millisecond {
		t.Fatalf("the slow step's report %q puts %s on the stock, want at least 400ms", got[0], stockTook)
	}
	ad.Run(ctx)
	expect("another slow step at once")
}

// heldStock is a StockReader that holds one event's reading until the
// test lets it go, reading plenty of stock for every event.
type heldStock struct {
	held    int64
	waiting chan struct{} // closed when the held reading has begun
	release chan struct{}
	once    sync.Once
}

func (h *heldStock) QueueStock(ctx context.Context, eventID int64, _ time.Duration, since int64, _ bool) (queue.Stock, float64, error) {
	if eventID == h.held {
		h.once.Do(func() { close(h.waiting) })
		select {
		case <-h.release:
		case <-ctx.Done():
			return queue.Stock{}, 0, ctx.Err()
		}
	}
	return plentyOfStock(since), 0, nil
}

// One event's slow step does not hold back another's: one after another,
// the events after a slow one waited for it, and with many queued events
// each came round less often than the burst's half second and lost the
// credit past it.
func TestASlowEventsStepDoesNotHoldBackTheOthers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	slow := w.event(100, nil, 600) // listed first: ids in order
	fast := w.event(100, nil, 600)
	svc := w.instance()
	held := &heldStock{held: slow.ID, waiting: make(chan struct{}), release: make(chan struct{})}
	svc.Stock = held
	join(t, svc, slow.ID, 1)
	p := join(t, svc, fast.ID, 2)
	time.Sleep(20 * time.Millisecond) // credit
	ad := queue.NewAdmitter(svc, time.Hour, slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() {
		defer close(done)
		ad.Run(context.Background())
	}()
	<-held.waiting
	deadline := time.Now().Add(3 * time.Second)
	for get(t, svc, p.ID).Status != queue.StatusAdmitted {
		if time.Now().After(deadline) {
			close(held.release)
			<-done
			t.Fatal("the fast event's place was not admitted while the slow event's step waited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(held.release)
	<-done
}
