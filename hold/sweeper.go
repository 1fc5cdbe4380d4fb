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

// NextExpirer is a SweepStore that can tell how long, by the database's
// clock, until the next pending hold lapses (ok false: none is pending).
type NextExpirer interface {
	NextExpiry(ctx context.Context) (d time.Duration, ok bool, err error)
}

// wakeMargin is how long after the next expiry the extra run comes, so
// that the database's clock has passed it for certain.
const wakeMargin = 5 * time.Millisecond

// SweepObserver hears each sweeper run: how many holds it expired and how
// far behind it still is, and each event whose sweep failed.
type SweepObserver interface {
	Swept(expired int, lag time.Duration)
	SweepFailed(events int)
}

// Sweeper puts the tickets of lapsed holds back on sale: a cron job every
// interval that fails them in batches, and, when its store can tell when
// the next pending hold lapses (NextExpiry) and that is before the next
// run, one more run at that moment. A crowd of holds made at one moment
// lapses at one moment; swept on the interval alone they would wait up to
// a whole interval first. It never runs over itself (a slow run
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
	// wake runs a sweep the moment the next pending hold lapses, when
	// that comes before the next run; stopped ends it.
	wake    *time.Timer
	stopped bool
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
	// Holds already pending may lapse before the first run.
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.stopped {
			s.wakeForNextExpiry(s.ctx)
		}
	}()
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
	s.mu.Lock() // once a run in progress has seen the cancel
	s.stopped = true
	if s.wake != nil {
		s.wake.Stop()
	}
	s.mu.Unlock()
	select {
	case <-done.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("hold: sweep still running: %w", ctx.Err())
	}
}

// wakeForNextExpiry schedules a run for when the next pending hold lapses,
// if that is before the next run on the interval. Only a started sweeper
// wakes: Run called alone (tests, holdfast sweep) runs once.
func (s *Sweeper) wakeForNextExpiry(ctx context.Context) {
	ne, ok := s.store.(NextExpirer)
	if !ok || s.ctx == nil || ctx.Err() != nil {
		return
	}
	d, ok, err := ne.NextExpiry(ctx)
	if err != nil || !ok || d >= s.every {
		return
	}
	if s.wake != nil {
		s.wake.Stop()
	}
	s.wake = time.AfterFunc(d+wakeMargin, func() { s.run(s.ctx, false) })
}

// Run sweeps once: lapsed holds back on sale, then, at most hourly,
// idempotency keys past their 24 hours.
func (s *Sweeper) Run(ctx context.Context) { s.run(ctx, true) }

// run is Run; a run the wake started schedules no wake of its own, so a
// steady stream of expiries costs at most one extra run an interval.
func (s *Sweeper) run(ctx context.Context, mayWake bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
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
	if mayWake {
		s.wakeForNextExpiry(ctx)
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
