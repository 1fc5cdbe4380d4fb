package queue

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/holdfast/holdfast/sale"
)

// AdmitEvery is how often an Admitter runs the admission step of each
// queued event: often enough that a poll sees its turn within a fraction
// of a second, rarely enough that many instances cost Redis little.
const AdmitEvery = 150 * time.Millisecond

// listEvery is how often an Admitter reads the list of queued events from
// PostgreSQL.
const listEvery = time.Second

// Admitter runs the admission step of every queued event, on every
// instance. The step itself is atomic and rate-limited in Redis, so any
// number of admitters together admit at the event's rate.
type Admitter struct {
	svc    *Service
	log    *slog.Logger
	every  time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []sale.Event
	listed time.Time

	// health is each event's run of failed or slow steps, for the log.
	healthMu sync.Mutex
	health   map[int64]*stepHealth
	// slowStep and reportEvery are the consts of those names (tests set
	// their own).
	slowStep, reportEvery time.Duration
}

// slowStep is how long a step may take before the admitter says so: past
// it the steps come less often than twice in a burst's time (half a
// second), and an admitter running alone loses the credit past the cap.
const slowStep = 300 * time.Millisecond

// reportEvery is how often at most the admitter logs an event's failing or
// slow steps again, with their count since the last report.
const reportEvery = 5 * time.Second

// stepHealth is one event's run of failed steps and its slow steps not
// yet reported.
type stepHealth struct {
	failingSince, failReported time.Time
	failed                     int // since failReported

	slowReported time.Time
	slow         int // since slowReported
	slowest      time.Duration
	slowestParts StepTimes
}

// NewAdmitter returns an admitter of svc's queues, running every interval.
func NewAdmitter(svc *Service, every time.Duration, log *slog.Logger) *Admitter {
	return &Admitter{svc: svc, log: log, every: every, slowStep: slowStep, reportEvery: reportEvery}
}

// Start runs the admitter until Stop, whatever becomes of ctx, which gives
// its runs their values only. The Admitter is a worker.Worker.
func (a *Admitter) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel, a.done = cancel, make(chan struct{})
	go func() {
		defer close(a.done)
		t := time.NewTicker(a.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.Run(ctx)
			}
		}
	}()
	return nil
}

// Stop cancels a run in progress and waits for it to end, at most until
// ctx is done.
func (a *Admitter) Stop(ctx context.Context) error {
	if a.cancel == nil {
		return nil
	}
	a.cancel()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue: admitter still running: %w", ctx.Err())
	}
}

// stepsAtOnce is how many events' steps a run takes at once: an event
// whose step is slow (its stock query waits for a lock or a connection)
// does not hold back the others' (one after another, a hundred queued
// events at a few milliseconds a step would come round less often than
// the burst's half second, and lose credit), while the admitter's share of
// the database pool stays small.
const stepsAtOnce = 4

// Run runs one step of every queued event that has work, and of a share
// of the idle ones (Service.due), up to stepsAtOnce at a time.
// Runs must not overlap: Start runs them one after another.
func (a *Admitter) Run(ctx context.Context) {
	run, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	evs := a.queued(run)
	// Each run steps about its share of the idle queues, so each is
	// stepped about every idleEvery (Service.due).
	evs = a.svc.due(run, evs, int(math.Ceil(float64(len(evs))*float64(a.every)/float64(idleEvery))))
	next := make(chan sale.Event)
	var wg sync.WaitGroup
	for range min(stepsAtOnce, len(evs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range next {
				// The step itself reads the stock (Service.Stock), which
				// limits it.
				t0 := time.Now()
				res, err := a.svc.Step(run, ev, Unlimited)
				if ctx.Err() != nil {
					continue // stopping
				}
				// A step the run's deadline cut off failed like any other.
				a.report(ctx, ev.ID, time.Since(t0), res.Took, err)
			}
		}()
	}
feed:
	for _, ev := range evs {
		select {
		case next <- ev:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
}

// report logs an event's steps when they fail or are slow: the first
// failure of a run at once, then at most every reportEvery, and the end of
// the run; slow steps likewise. Either costs admissions (a step that comes
// late loses the credit past the burst), so an operator must see it.
func (a *Admitter) report(ctx context.Context, eventID int64, took time.Duration, parts StepTimes, err error) {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	if a.health == nil {
		a.health = make(map[int64]*stepHealth)
	}
	h := a.health[eventID]
	if h == nil {
		h = &stepHealth{}
		a.health[eventID] = h
	}
	now := time.Now()
	switch {
	case err != nil && h.failingSince.IsZero():
		h.failingSince, h.failReported, h.failed = now, now, 0
		a.log.WarnContext(ctx, "queue: admission step failed", "event", eventID, "err", err)
	case err != nil:
		h.failed++
		if now.Sub(h.failReported) >= a.reportEvery {
			a.log.WarnContext(ctx, "queue: admission steps still failing", "event", eventID,
				"for", now.Sub(h.failingSince).Round(time.Millisecond), "failed", h.failed, "err", err)
			h.failReported, h.failed = now, 0
		}
	case !h.failingSince.IsZero():
		a.log.WarnContext(ctx, "queue: admission steps work again", "event", eventID,
			"failed_for", now.Sub(h.failingSince).Round(time.Millisecond))
		h.failingSince = time.Time{}
	}
	if took <= a.slowStep {
		return
	}
	h.slow++
	if took > h.slowest {
		h.slowest, h.slowestParts = took, parts
	}
	if now.Sub(h.slowReported) >= a.reportEvery {
		a.log.WarnContext(ctx, "queue: admission steps slow", "event", eventID, "slow", h.slow,
			"slowest", h.slowest.Round(time.Millisecond), "stock", h.slowestParts.Stock.Round(time.Millisecond),
			"admit", h.slowestParts.Admit.Round(time.Millisecond), "passes", h.slowestParts.Passes.Round(time.Millisecond))
		h.slowReported, h.slow, h.slowest = now, 0, 0
	}
}

// queued is the list of queued events, read again once a second.
func (a *Admitter) queued(ctx context.Context) []sale.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Since(a.listed) < listEvery {
		return a.events
	}
	evs, err := a.svc.events.QueuedEvents(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.WarnContext(ctx, "queue: list queued events", "err", err)
		}
		return a.events
	}
	a.events, a.listed = evs, time.Now()
	for _, ev := range evs {
		a.svc.remember(ev)
	}
	return evs
}
