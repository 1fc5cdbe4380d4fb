package queue

import (
	"context"
	"fmt"
	"log/slog"
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
}

// NewAdmitter returns an admitter of svc's queues, running every interval.
func NewAdmitter(svc *Service, every time.Duration, log *slog.Logger) *Admitter {
	return &Admitter{svc: svc, log: log, every: every}
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

// Run runs one step of every queued event.
func (a *Admitter) Run(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, ev := range a.queued(ctx) {
		// The step itself reads the stock (Service.Stock), which limits it.
		if _, err := a.svc.Step(ctx, ev, Unlimited); err != nil && ctx.Err() == nil {
			a.log.DebugContext(ctx, "queue: admission step failed", "event", ev.ID, "err", err)
		}
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
