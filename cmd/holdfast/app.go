package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/metrics"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/ratelimit"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/schema"
	"github.com/holdfast/holdfast/store"
	"github.com/holdfast/holdfast/webhook"
)

// app is the service wired together: what serve runs and what the tests
// drive through its handler.
type app struct {
	cfg     config
	log     *slog.Logger
	db      *sqlx.DB
	rdb     redis.UniversalClient
	store   *store.Store
	locks   *store.Locks
	booking *booking.Service
	holds   *hold.Service
	sweeper *hold.Sweeper
	queue   *queue.Service
	// admitter runs the admission steps of every queued event.
	admitter *queue.Admitter
	// webhooks manages endpoints and reads the change feed; publisher
	// and deliverer publish the outbox and send its deliveries.
	webhooks  *webhook.Service
	publisher *webhook.Publisher
	deliverer *webhook.Deliverer
	metrics   *metrics.Metrics
	limiter   *ratelimit.Limiter // nil without --rate-limit
	passes    *pass.Keyring
	// adminFailures counts wrong admin tokens: on the rate limit, and on
	// a fixed limit of their own that holds with --rate-limit off.
	adminFailures *ratelimit.Failures
	handler       http.Handler
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := parseLevel(level)
	return slog.New(httpapi.LogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})))
}

// newApp connects to PostgreSQL and Redis, migrates and builds the handler.
// Redis need not be up: the service runs on PostgreSQL alone until it is.
func newApp(ctx context.Context, cfg config, log *slog.Logger) (*app, error) {
	trusted, err := clientaddr.ParseTrusted(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.DBOptions{
		MaxConns: cfg.DBMaxConns,
		// PostgreSQL reads a lock_timeout of 0 as "wait forever"; a lock
		// wait of 0 means "do not wait", so it becomes a millisecond.
		LockTimeout:      max(cfg.LockWait, time.Millisecond),
		StatementTimeout: statementTimeout,
		IdleInTxTimeout:  cfg.LockTTL,
	})
	if err != nil {
		return nil, err
	}
	applied, err := migrate(ctx, cfg.DatabaseURL)
	if err != nil {
		db.Close()
		return nil, err
	}
	if len(applied) > 0 {
		log.InfoContext(ctx, "migrations applied", "versions", applied)
	}
	rdb, err := store.OpenRedis(cfg.RedisURL)
	if err != nil {
		db.Close()
		return nil, err
	}
	a := &app{cfg: cfg, log: log, db: db, rdb: rdb, store: store.New(db)}
	a.locks = store.NewLocks(rdb, store.LockOptions{Prefix: cfg.RedisPrefix, TTL: cfg.LockTTL, Wait: cfg.LockWait}, log)
	if err := a.locks.Up(ctx); err != nil {
		log.WarnContext(ctx, "redis is not answering; starting on PostgreSQL alone", "err", err)
	}
	a.metrics = metrics.New()
	a.metrics.WatchDB(db.DB)
	a.metrics.WatchRedis(a.locks.RedisUp)
	a.store.SetCounters(a.metrics)
	a.store.SetTicketCap(cfg.TicketCap)
	a.store.SetClientCap(cfg.ClientCap)
	a.locks.OnWait(a.metrics.LockWaited)
	// The first instance to start makes the pass key; every instance
	// signs and verifies with the keys in PostgreSQL, read every 30 s
	// once serve starts its workers.
	a.passes, err = pass.NewKeyring(ctx, a.store, pass.Options{}, log)
	if err != nil {
		_ = rdb.Close()
		db.Close()
		return nil, err
	}
	a.booking = &booking.Service{Store: a.store, Locks: a.locks, Work: cfg.SimulateWork, Passes: a.passes}
	a.holds = &hold.Service{Store: a.store, Locks: a.locks, TTL: cfg.HoldTTL, Max: cfg.HoldMax, Passes: a.passes}
	if cfg.Batch {
		// The batch worker's own lock waits are timed but never counted as
		// timeouts: the requests it waits for are, once each, when they
		// are answered busy.
		batchLocks := store.NewLocks(rdb, store.LockOptions{Prefix: cfg.RedisPrefix, TTL: cfg.LockTTL, Wait: cfg.LockWait, MarkWaits: true}, log)
		batchLocks.OnWait(func(d time.Duration, _ bool) { a.metrics.LockWaited(d, false) })
		a.holds.Batcher = hold.NewBatcher(a.store, batchLocks, cfg.HoldTTL, cfg.LockWait, log)
		// A batch's requests have already waited up to the lock wait in
		// their queue: its call gets the rest of a request's deadline.
		a.holds.Batcher.CallTimeout = requestDeadline(cfg) - cfg.LockWait
		a.holds.Batcher.Observe = a.metrics
		a.holds.Batcher.SetLockTTL(cfg.LockTTL)
	}
	a.sweeper = hold.NewSweeper(a.store, cfg.SweepEvery, log)
	a.sweeper.Observe = a.metrics
	a.queue = queue.NewService(store.NewQueues(rdb, cfg.RedisPrefix), a.store, a.passes, cfg.TicketCap, log)
	a.holds.Places, a.holds.Log = a.queue, log
	a.booking.Places, a.booking.Log = a.queue, log
	a.queue.Observe = a.metrics
	// Every admission step reads the event's stock, so the queue never
	// admits more buyers than there are tickets for them.
	a.queue.Stock, a.queue.Reserve, a.queue.MaxQuantity = a.store, queue.Reserve(cfg.QueueReserve), cfg.MaxQuantity
	a.admitter = queue.NewAdmitter(a.queue, queue.AdmitEvery, log)
	a.webhooks = &webhook.Service{Store: a.store, AllowPrivate: cfg.Webhook.AllowPrivate}
	a.deliverer = webhook.NewDeliverer(a.store, cfg.Webhook, log)
	a.deliverer.Observe = a.metrics
	a.publisher = webhook.NewPublisher(a.store, cfg.Webhook.Poll, log)
	a.publisher.Observe, a.publisher.Published = a.metrics, a.deliverer.Wake
	a.publisher.Retention = cfg.OutboxRetention
	r := chi.NewRouter()
	r.Use(httpapi.RequestID, httpapi.AccessLog(log), httpapi.Recover(log), a.metrics.Middleware,
		httpapi.Deadline(requestDeadline(cfg)), clientaddr.New(trusted).Middleware)
	if cfg.RateLimit > 0 {
		a.limiter = ratelimit.New(cfg.RateLimit, store.NewRateCounter(rdb, cfg.RedisPrefix), log)
	}
	a.adminFailures = ratelimit.NewFailures(
		ratelimit.New(adminFailuresPerSecond, store.NewRateCounter(rdb, cfg.RedisPrefix+"admin-failures:"), log),
		a.limiter)
	r.NotFound(httpapi.NotFound)
	r.MethodNotAllowed(httpapi.MethodNotAllowed)
	a.routes(r)
	a.handler = r
	return a, nil
}

// statementTimeout bounds any one statement; nothing holdfast runs should
// come near it.
const statementTimeout = 30 * time.Second

// migrate applies the schema on a pool of its own: the serving pool bounds
// every call (statement_timeout, and its sockets' deadlines, store/conn.go),
// and a migration may take longer (an index built on a large table) or wait
// for another instance's migrations to end.
func migrate(ctx context.Context, dsn string) ([]string, error) {
	db, err := store.Open(ctx, dsn, store.DBOptions{MaxConns: 1})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return schema.Apply(ctx, db.DB)
}

// requestDeadline is how long a request may take: its wait for the
// event's lock, the simulated work, a statement, and a little slack.
func requestDeadline(cfg config) time.Duration {
	return cfg.LockWait + cfg.SimulateWork + statementTimeout + 2*time.Second
}

// Close stops the batcher, which serves from newApp on (tests drive the
// handler without serve), if serve has not already, and closes the pools.
func (a *app) Close() error {
	if a.holds.Batcher != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.holds.Batcher.Stop(ctx)
	}
	errR := a.rdb.Close()
	errD := a.db.Close()
	if errD != nil {
		return fmt.Errorf("close database: %w", errD)
	}
	return errR
}
