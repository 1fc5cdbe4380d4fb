package hold

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// SweepResult is what one sweep did.
type SweepResult struct {
	Expired int // holds turned failed, their stock given back
	Events  int // events touched
	Busy    int // events skipped because their row stayed locked past lock_timeout
	// Failed lists the events whose sweep ended in an error. The sweep
	// went on with the next event: one event the database refuses to give
	// stock back to (say its total was lowered by hand under live holds)
	// must not stop expiry for every event after it.
	Failed []SweepFailure
}

// SweepFailure is one event the sweep could not finish.
type SweepFailure struct {
	EventID int64
	Err     error
}

// SweepStore is what the sweeper needs from storage.
type SweepStore interface {
	SweepExpired(ctx context.Context, batch int) (SweepResult, error)
	PurgeKeys(ctx context.Context, batch int) (int, error)
	SweeperLag(ctx context.Context) (time.Duration, error)
}

// SweepObserver hears each sweeper run: how many holds it expired and how
// far behind it still is, and each event whose sweep failed.
type SweepObserver interface {
	Swept(expired int, lag time.Duration)
	SweepFailed(events int)
}

// Sweeper puts the tickets of lapsed holds back on sale: a cron job every
// interval that fails them in batches. It never runs over itself (a slow run
// makes the next one skip), and any number of instances may sweep at once,
// since each batch skips the rows another holds.
type Sweeper struct {
	store     SweepStore
	log       *slog.Logger
	every     time.Duration
	batch     int
	cron      *cron.Cron
	ctx       context.Context
	cancel    context.CancelFunc
	lastPurge time.Time
	mu        sync.Mutex
	// Observe, when set, hears every run.
	Observe SweepObserver
}

// SweepBatch is how many holds one sweep transaction fails at most.
const SweepBatch = 1000

// NewSweeper returns a sweeper running every interval.
func NewSweeper(st SweepStore, every time.Duration, log *slog.Logger) *Sweeper {
	return &Sweeper{store: st, log: log, every: every, batch: SweepBatch}
}

// Start schedules the job; it runs until Stop, whatever becomes of ctx,
// which gives the runs its values only. The Sweeper is a worker.Worker.
func (s *Sweeper) Start(ctx context.Context) error {
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.cron = cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	if _, err := s.cron.AddFunc(fmt.Sprintf("@every %s", s.every), func() { s.Run(s.ctx) }); err != nil {
		return fmt.Errorf("hold: schedule sweeper: %w", err)
	}
	s.cron.Start()
	return nil
}

// Stop cancels a sweep in progress and waits for it to end, at most until
// ctx is done.
func (s *Sweeper) Stop(ctx context.Context) error {
	if s.cron == nil {
		return nil
	}
	done := s.cron.Stop()
	s.cancel()
	select {
	case <-done.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hold: sweep still running: %w", ctx.Err())
	}
}

// Run sweeps once: lapsed holds back on sale, then, at most hourly,
// idempotency keys past their 24 hours.
func (s *Sweeper) Run(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A run that gets stuck must not hold the sweeper forever: the next
	// runs are skipped while this one lasts.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	res, err := s.store.SweepExpired(ctx, s.batch)
	for _, f := range res.Failed {
		s.log.ErrorContext(ctx, "sweep of an event failed; its lapsed holds stay pending", "event_id", f.EventID, "err", f.Err)
	}
	if s.Observe != nil && len(res.Failed) > 0 {
		s.Observe.SweepFailed(len(res.Failed))
	}
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.ErrorContext(ctx, "sweep failed", "err", err, "expired", res.Expired)
	case res.Expired > 0 || res.Busy > 0:
		s.log.InfoContext(ctx, "swept lapsed holds", "expired", res.Expired, "events", res.Events,
			"busy_events", res.Busy, "failed_events", len(res.Failed), "duration_ms", time.Since(start).Milliseconds())
	}
	if s.Observe != nil && ctx.Err() == nil {
		lag, err := s.store.SweeperLag(ctx)
		if err == nil {
			s.Observe.Swept(res.Expired, lag)
		}
	}
	if time.Since(s.lastPurge) > time.Hour {
		n, err := s.store.PurgeKeys(ctx, 1000)
		if err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "purge idempotency keys failed", "err", err)
			}
			return
		}
		s.lastPurge = time.Now()
		if n > 0 {
			s.log.InfoContext(ctx, "purged idempotency keys", "deleted", n)
		}
	}
}
