package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/net/netutil"

	"github.com/holdfast/holdfast/internal/worker"
	"github.com/holdfast/holdfast/schema"
	"github.com/holdfast/holdfast/store"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	s := newSettings("serve", getenv, stderr)
	s.serveFlags(&cfg)
	if err := s.parse(args); err != nil {
		return err
	}
	if err := cfg.validate(true); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	return serve(ctx, cfg, log, nil)
}

// serve runs the service until ctx is done, then shuts down gracefully.
// onListen, when set, is told the address actually bound (":0" picks one).
func serve(ctx context.Context, cfg config, log *slog.Logger, onListen func(addr string)) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	// Past the bound a connection waits in the kernel's backlog instead
	// of costing a goroutine and buffers: idle keep-alive connections from
	// one client could otherwise hold thousands of descriptors.
	ln = netutil.LimitListener(ln, cfg.MaxConns)
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A request may wait for its lock, then do the simulated work,
		// then a statement, whose commit may wait for the standby a
		// little past the deadline, and whose socket is given up a
		// little after that (answered 503, its outcome unknown): the
		// write deadline must outlast all of them.
		WriteTimeout: requestDeadline(cfg) + store.Overrun + 3*time.Second,
		IdleTimeout:  cfg.IdleTimeout,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	workers := &worker.Group{}
	for _, w := range a.workers() {
		if err := workers.Start(ctx, w.name, w.Worker); err != nil {
			_ = workers.Stop(context.Background())
			return err
		}
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.InfoContext(ctx, "holdfast serving", "addr", ln.Addr().String(), "unsafe_demo", cfg.UnsafeDemo,
		"simulate_work", cfg.SimulateWork, "hold_ttl", cfg.HoldTTL, "lock_wait", cfg.LockWait)
	if onListen != nil {
		onListen(ln.Addr().String())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	// Only once the last request is answered do the workers stop, in the
	// reverse of a.workers' order.
	if werr := workers.Stop(shutdownCtx); werr != nil {
		log.Warn("workers", "err", werr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// namedWorker is a background worker and its name for logs.
type namedWorker struct {
	name string
	worker.Worker
}

// workers are the app's background workers in the order serve starts them.
// It stops them in the reverse order, and only after the server has
// answered its last request (or given up on it):
//
//   - the pass keyring's refresh starts first and stops last: every other
//     worker and every request with a pass uses its keys;
//   - the outbox's publisher, then the webhook deliverer, start next and
//     stop after every worker that changes holds (the sweeper, the
//     batcher), so the events of their last changes are still published
//     here; the deliverer stops before the publisher, cutting off the
//     attempts in flight and making their deliveries due again for
//     another instance (a receiver is never waited on for shutdown);
//   - the sweeper stops after the admitter and the batcher: a release or
//     confirm in flight, or a batch still draining, may count on the stock
//     it restores;
//   - the admitter stops after the batcher, so that polls in flight still
//     see their turns come while the last holds are served;
//   - the batcher starts last and stops first: the requests still queued
//     for a batch are served, or answered 503 if time runs out, never
//     dropped without a response, and they need all of the above.
func (a *app) workers() []namedWorker {
	ws := []namedWorker{
		{"pass keys", worker.NewLoop(a.passes.Run)},
		{"outbox publisher", a.publisher},
		{"webhook deliverer", a.deliverer},
		{"sweeper", a.sweeper},
		{"admitter", a.admitter},
	}
	if a.holds.Batcher != nil {
		ws = append(ws, namedWorker{"batcher", a.holds.Batcher})
	}
	return ws
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := defaultConfig()
	s := newSettings("migrate", getenv, stderr)
	s.str(&cfg.DatabaseURL, "database-url", "DATABASE_URL", "PostgreSQL URL")
	if err := s.parse(args); err != nil {
		return err
	}
	db, err := openTool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := schema.Apply(ctx, db.DB)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "migrate: up to date")
	}
	for _, v := range applied {
		fmt.Fprintln(stdout, "migrate: applied", v)
	}
	return nil
}

// serveDebug serves net/http/pprof on its own listener, never on the public
// router: profiles show the service's internals.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --debug-addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: debugMux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof serving", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// debugMux is net/http/pprof's handlers but the command line, which holds
// the admin token and the database URL. (The index still links "cmdline";
// it reads as an unknown profile.)
func debugMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// openTool opens the small pool a one-shot command (migrate, check) needs,
// refusing a bad URL before it dials.
func openTool(ctx context.Context, dsn string) (*sqlx.DB, error) {
	if err := store.ValidateURL(dsn); err != nil {
		return nil, fmt.Errorf("--database-url (DATABASE_URL) %v", err)
	}
	return store.Open(ctx, dsn, store.DBOptions{MaxConns: 2})
}
