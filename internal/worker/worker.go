package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Worker is a background job of the service.
type Worker interface {
	// Start begins the work and returns at once. ctx gives the work its
	// values, never its end: only Stop ends it.
	Start(ctx context.Context) error
	// Stop ends the work and waits for it to end, at most until ctx is
	// done; it returns ctx's error if the work outlived it.
	Stop(ctx context.Context) error
}

// Group starts workers in order and stops them in the reverse order.
type Group struct {
	mu      sync.Mutex
	names   []string
	started []Worker
}

// Start starts w, named name for errors, after those already started.
func (g *Group) Start(ctx context.Context, name string, w Worker) error {
	if err := w.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.names, g.started = append(g.names, name), append(g.started, w)
	return nil
}

// Stop stops every started worker, the last started first, each given ctx,
// and returns their errors joined. Stopping again stops nothing.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	names, started := g.names, g.started
	g.names, g.started = nil, nil
	g.mu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if err := started[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", names[i], err))
		}
	}
	return errors.Join(errs...)
}

// Loop is a Worker that runs one function until it is stopped: the
// function must return once its context is done.
type Loop struct {
	run    func(ctx context.Context)
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLoop returns a Loop of run.
func NewLoop(run func(ctx context.Context)) *Loop { return &Loop{run: run} }

// Start runs the function in a goroutine of its own.
func (l *Loop) Start(ctx context.Context) error {
	if l.cancel != nil {
		return errors.New("worker: loop started twice")
	}
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		l.run(ctx)
	}()
	return nil
}

// Stop cancels the function's context and waits for it to return, at most
// until ctx is done.
func (l *Loop) Stop(ctx context.Context) error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("worker: loop still running: %w", ctx.Err())
	}
}
