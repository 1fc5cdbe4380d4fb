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
	at := max(since+1, time.Now().UnixMicro())
	return queue.Stock{ReadAt: at, Horizon: at, Available: 1_000_000}
}

// An admitter whose steps fail or come slow says so at WARN, once for a
// run of them and not at every step (it steps every 150 ms), and says
// when they work again: both cost admissions, so an operator must see
// them, and the slow report names the part that took the time.
func TestTheAdmitterReportsFailedAndSlowSteps(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ev := w.event(5, nil, 600)
	svc := w.instance()
	stock := &faultyStock{}
	svc.Stock = stock
	// Places enough to keep the queue waiting for every run below, at 5
	// a second: a queue with none is idle, stepped about once a second,
	// and a loaded machine admitted a lone place at the first step, so
	// that the slow step was never taken.
	for i := 0; i < 50; i++ {
		join(t, svc, ev.ID, i)
	}
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

// perEvent is a number per event, safe for concurrent use.
type perEvent[V int | int64] struct {
	mu sync.Mutex
	m  map[int64]V
}

// update sets the event's number to f of it.
func (p *perEvent[V]) update(eventID int64, f func(V) V) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int64]V{}
	}
	p.m[eventID] = f(p.m[eventID])
}

func (p *perEvent[V]) of(eventID int64) V {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[eventID]
}

// countedStock is a StockReader of plenty of stock that counts its
// readings, per event.
type countedStock struct{ perEvent[int] }

func (c *countedStock) QueueStock(_ context.Context, eventID int64, _ time.Duration, since int64, _ bool) (queue.Stock, float64, error) {
	c.update(eventID, func(n int) int { return n + 1 })
	return plentyOfStock(since), 0, nil
}

// An idle queue (nothing waiting, no pass about to run out) is stepped
// once a second, for its sold-out flag, not at every run: every step
// reads the stock from PostgreSQL, and with hundreds of queued events
// between their sales those steps were most of the admitters' work. A
// place that joins it is admitted at the next run.
func TestAnIdleQueueIsSteppedOnlyForItsFlag(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idle := w.event(100, nil, 600)
	busy := w.event(1, nil, 600) // a burst of one: its line stays
	svc := w.instance()
	stock := &countedStock{}
	svc.Stock = stock
	for i := range 5 {
		join(t, svc, busy.ID, i)
	}
	ad := queue.NewAdmitter(svc, time.Hour, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for range 4 {
		ad.Run(ctx)
	}
	// The idle queue was never stepped before: its first run steps it.
	if got, want := stock.of(idle.ID), 1; got != want {
		t.Fatalf("the idle queue's stock was read %d times in 4 runs, want %d", got, want)
	}
	if got, want := stock.of(busy.ID), 4; got != want {
		t.Fatalf("the busy queue's stock was read %d times in 4 runs, want %d", got, want)
	}
	p := join(t, svc, idle.ID, 10)
	time.Sleep(20 * time.Millisecond) // credit
	ad.Run(ctx)
	if got := get(t, svc, p.ID).Status; got != queue.StatusAdmitted {
		t.Fatalf("a place that joined an idle queue is %s after the next run, want admitted", got)
	}
	// Admitted, with its pass far from running out: idle again, until a
	// second after its last step.
	ad.Run(ctx)
	if got, want := stock.of(idle.ID), 2; got != want {
		t.Fatalf("the idle queue's stock was read %d times, want %d", got, want)
	}
	time.Sleep(1100 * time.Millisecond)
	ad.Run(ctx)
	if got, want := stock.of(idle.ID), 3; got != want {
		t.Fatalf("a second later the idle queue's stock was read %d times, want %d", got, want)
	}
}

// The idle queues' steps are spread over the runs, the stalest first,
// rather than all falling due in one run every second: a run that steps a
// thousand idle queues at once holds back the next run's busy ones.
func TestIdleQueuesAreSteppedAShareARun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var idle []int64
	for range 20 {
		idle = append(idle, w.event(100, nil, 600).ID)
	}
	svc := w.instance()
	stock := &countedStock{}
	svc.Stock = stock
	ad := queue.NewAdmitter(svc, queue.AdmitEvery, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	stepped := func() (n, most int) {
		for _, id := range idle {
			r := stock.of(id)
			n += r
			most = max(most, r)
		}
		return n, most
	}
	// 20 queues, a run every 150 ms, each stepped about once a second:
	// three a run.
	ad.Run(ctx)
	if n, _ := stepped(); n != 3 {
		t.Fatalf("one run stepped %d of 20 idle queues, want 3", n)
	}
	for range 6 {
		ad.Run(ctx)
	}
	if n, most := stepped(); n != 20 || most != 1 {
		t.Fatalf("seven runs stepped the 20 idle queues %d times, one of them %d times; want each once", n, most)
	}
}

// waitingGauge is an Observer that keeps the waiting gauge.
type waitingGauge struct{ perEvent[int64] }

func (*waitingGauge) Joined(string)               {}
func (*waitingGauge) Polled(string)               {}
func (*waitingGauge) QueueAdmitted(time.Duration) {}
func (*waitingGauge) AdmissionLag(time.Duration)  {}
func (g *waitingGauge) QueueWaiting(eventID int64, n int64) {
	g.update(eventID, func(int64) int64 { return n })
}

// Where no step reads the stock, an idle queue is not stepped at all, and
// what a step would do still happens: the gauge of a queue whose last
// waiting place left reads nothing waiting, a pass that runs out with
// nothing waiting turns its place expired, and a pre-queue is shuffled
// and admitted at its on-sale.
func TestWhatAnIdleQueuesStepWouldDoStillHappens(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	left := w.event(2, nil, 600) // a burst of one
	lapsing := w.event(100, nil, 1)
	onSale := time.Now().Add(1200 * time.Millisecond)
	pre := w.event(100, &onSale, 600)
	svc := w.instance()
	gauge := &waitingGauge{}
	svc.Observe = gauge
	ctx := context.Background()
	join(t, svc, left.ID, 1)
	second := join(t, svc, left.ID, 2)
	short := join(t, svc, lapsing.ID, 3)
	early := []queue.Place{join(t, svc, pre.ID, 4), join(t, svc, pre.ID, 5)}
	ad := queue.NewAdmitter(svc, time.Hour, slog.New(slog.DiscardHandler))
	time.Sleep(600 * time.Millisecond) // credit for one place
	ad.Run(ctx)
	if got := gauge.of(left.ID); got != 1 {
		t.Fatalf("after one admission of two the gauge reads %d waiting, want 1", got)
	}
	if _, err := svc.Leave(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	ad.Run(ctx)
	if got := gauge.of(left.ID); got != 0 {
		t.Fatalf("after the last waiting place left the gauge reads %d waiting, want 0", got)
	}
	if got := get(t, svc, short.ID).Status; got != queue.StatusAdmitted {
		t.Fatalf("the place with a short pass is %s, want admitted", got)
	}
	deadline := time.Now().Add(4 * time.Second)
	for {
		ad.Run(ctx)
		// Not polled: a poll of a place whose pass ran out expires it
		// itself.
		backlog, err := w.queues().Backlogs(ctx, []int64{lapsing.ID}, time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		expired := !backlog[0].Lapsing
		admitted := 0
		for _, p := range early {
			if get(t, svc, p.ID).Status == queue.StatusAdmitted {
				admitted++
			}
		}
		if expired && admitted == len(early) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("4 s on: the short pass's place expired %v, %d of the pre-queue's %d admitted", expired, admitted, len(early))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := get(t, svc, short.ID).Status; got != queue.StatusExpired {
		t.Fatalf("the place whose pass ran out is %s, want expired", got)
	}
}

// BenchmarkAdmitterRunAmongIdleQueues is one run of the admitter over a
// thousand queued events nobody waits for and one with a line, reading
// the stock from PostgreSQL: what an instance does every 150 ms between a
// platform's sales.
func BenchmarkAdmitterRunAmongIdleQueues(b *testing.B) {
	w := newStocked(b)
	w.exec(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price, queue_admit_per_second, queue_pass_ttl_seconds)
		SELECT 'idle ' || g, now() + interval '30 days', 100, 100, 10, 50, 600 FROM generate_series(1, 1000) g`)
	busy := w.event(1_000_000, 1)
	svc := w.instance(4)
	ctx := context.Background()
	for i := range 100 {
		if _, _, err := svc.Join(ctx, busy.ID, email(i)); err != nil {
			b.Fatal(err)
		}
	}
	ad := queue.NewAdmitter(svc, queue.AdmitEvery, slog.New(slog.DiscardHandler))
	ad.Run(ctx)
	for b.Loop() {
		ad.Run(ctx)
	}
}
