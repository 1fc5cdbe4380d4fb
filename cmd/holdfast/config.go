package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
	"github.com/holdfast/holdfast/webhook"
)

// config is every setting of `holdfast serve` (and `dev`, which takes them
// all).
type config struct {
	Addr         string
	DatabaseURL  string
	RedisURL     string
	RedisPrefix  string
	HoldTTL      time.Duration
	HoldMax      time.Duration
	SweepEvery   time.Duration
	LockTTL      time.Duration
	LockWait     time.Duration
	UnsafeDemo   bool
	Batch        bool
	SimulateWork time.Duration
	MaxQuantity  int
	TicketCap    int
	ClientCap    int
	// QueueReserve is what an admitted place keeps aside of the stock:
	// "cap" or "average" (queue.Reserve).
	QueueReserve string
	// TrustedProxies is --trusted-proxies as given; validate parses it.
	TrustedProxies string
	RateLimit      int
	DBMaxConns     int
	LogLevel       string
	DebugAddr      string
	AdminToken     string
	// MaxConns bounds the open connections; a connection past it waits
	// to be accepted until another closes.
	MaxConns int
	// Webhook is the webhook delivery settings: RetryFor, RetryBase and
	// AllowPrivate are flags, the rest fixed (tests shorten them).
	Webhook webhook.Options
	// OutboxRetention is how long the outbox keeps an event once no
	// delivery of it is still being retried (--outbox-retention).
	OutboxRetention time.Duration
	// IdleTimeout closes a keep-alive connection idle that long. Not a
	// flag: tests shorten it.
	IdleTimeout time.Duration
}

func defaultConfig() config {
	return config{
		Addr:         ":8080",
		RedisURL:     "redis://127.0.0.1:6379/0",
		RedisPrefix:  "holdfast:",
		HoldTTL:      10 * time.Minute,
		HoldMax:      30 * time.Minute,
		SweepEvery:   time.Second,
		LockTTL:      5 * time.Second,
		LockWait:     2 * time.Second,
		MaxQuantity:  10,
		TicketCap:    10,
		ClientCap:    20,
		QueueReserve: "cap",
		DBMaxConns:   32,
		Batch:        true,
		LogLevel:     "info",
		MaxConns:     10_000,
		IdleTimeout:  30 * time.Second,
		Webhook:      webhook.DefaultOptions(),
		// Thirty days, as long as Stripe keeps its events.
		OutboxRetention: 30 * 24 * time.Hour,
	}
}

// settings registers flags on fs whose defaults come from the environment,
// so that a flag beats its variable and a variable beats the built-in
// default. A variable that does not parse is an error, returned by the
// function it gives back once fs has parsed.
type settings struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
	help   bool
}

func newSettings(name string, getenv func(string) string, stderr io.Writer) *settings {
	fs := flag.NewFlagSet("holdfast "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	s := &settings{fs: fs, getenv: getenv}
	// A bad flag gets its one-line message and a pointer to -h, not the
	// whole list.
	fs.Usage = func() {
		if !s.help {
			fmt.Fprintf(stderr, "run 'holdfast %s -h' for its flags\n", name)
			return
		}
		fmt.Fprintf(stderr, "usage: holdfast %s [flags]\n", name)
		fs.PrintDefaults()
	}
	return s
}

func (s *settings) str(p *string, name, env, usage string) {
	if v := s.getenv(env); v != "" {
		*p = v
	}
	s.fs.StringVar(p, name, *p, usage+" ("+env+")")
}

func (s *settings) duration(p *time.Duration, name, env, usage string) {
	if v := s.getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not a duration such as 1500ms or 2s", env, v))
		} else {
			*p = d
		}
	}
	s.fs.DurationVar(p, name, *p, usage+" ("+env+")")
}

func (s *settings) integer(p *int, name, env, usage string) {
	if v := s.getenv(env); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not an integer", env, v))
		} else {
			*p = n
		}
	}
	s.fs.IntVar(p, name, *p, usage+" ("+env+")")
}

func (s *settings) boolean(p *bool, name, env, usage string) {
	if v := s.getenv(env); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("%s=%q: not true or false", env, v))
		} else {
			*p = b
		}
	}
	s.fs.BoolVar(p, name, *p, usage+" ("+env+")")
}

// parse parses args and reports the first bad variable or flag.
func (s *settings) parse(args []string) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			s.help = true
		}
	}
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	if len(s.errs) > 0 {
		return s.errs[0]
	}
	if s.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", s.fs.Arg(0))
	}
	return nil
}

// serveFlags registers every serve setting into cfg.
func (s *settings) serveFlags(cfg *config) {
	s.str(&cfg.Addr, "addr", "HOLDFAST_ADDR", "listen address")
	s.str(&cfg.DatabaseURL, "database-url", "DATABASE_URL", "PostgreSQL URL")
	s.str(&cfg.RedisURL, "redis-url", "REDIS_URL", "Redis URL: redis://host:port/db, or redis+cluster://host:port,host:port for a Redis Cluster")
	s.str(&cfg.RedisPrefix, "redis-prefix", "HOLDFAST_REDIS_PREFIX", "prefix of every Redis key")
	s.duration(&cfg.HoldTTL, "hold-ttl", "HOLDFAST_HOLD_TTL", "how long a hold lasts")
	s.duration(&cfg.HoldMax, "hold-max", "HOLDFAST_HOLD_MAX", "the longest a hold may last after it was made, however often it is extended (at least --hold-ttl)")
	s.duration(&cfg.SweepEvery, "sweep-every", "HOLDFAST_SWEEP_EVERY", "how often the sweeper runs (at least 1s)")
	s.duration(&cfg.LockTTL, "lock-ttl", "HOLDFAST_LOCK_TTL", "TTL of the per-event Redis lock")
	s.duration(&cfg.LockWait, "lock-wait", "HOLDFAST_LOCK_WAIT", "how long a request may wait for the event's lock before 429")
	s.boolean(&cfg.UnsafeDemo, "unsafe-demo", "HOLDFAST_UNSAFE_DEMO", "mount POST /book/unsafe, which oversells on purpose")
	s.duration(&cfg.SimulateWork, "simulate-work", "HOLDFAST_SIMULATE_WORK", "the seed's artificial processing delay inside /book/*")
	s.integer(&cfg.MaxQuantity, "max-quantity", "HOLDFAST_MAX_QUANTITY", "the most tickets one request may ask for")
	s.boolean(&cfg.Batch, "batch", "HOLDFAST_BATCH", "serve holds per event in batches, one transaction for many (false: one transaction per hold)")
	s.integer(&cfg.TicketCap, "max-tickets-per-user", "HOLDFAST_MAX_TICKETS_PER_USER", "the most tickets of one event one buyer email may hold or have confirmed (0: no cap)")
	s.integer(&cfg.ClientCap, "max-tickets-per-client", "HOLDFAST_MAX_TICKETS_PER_CLIENT", "the most tickets of one event one client address may hold at once, pending holds (0: no cap)")
	s.str(&cfg.TrustedProxies, "trusted-proxies", "HOLDFAST_TRUSTED_PROXIES", "comma-separated CIDR ranges of proxies whose X-Forwarded-For names the client (empty: the header is ignored)")
	s.integer(&cfg.RateLimit, "rate-limit", "HOLDFAST_RATE_LIMIT", "write requests per second one client address may send, shared across instances through Redis (0: off)")
	s.integer(&cfg.DBMaxConns, "db-max-conns", "HOLDFAST_DB_MAX_CONNS", "PostgreSQL connection pool size")
	s.str(&cfg.LogLevel, "log-level", "HOLDFAST_LOG_LEVEL", "debug, info, warn or error")
	s.str(&cfg.AdminToken, "admin-token", "HOLDFAST_ADMIN_TOKEN", "bearer token of /admin (unset: /admin is 404)")
	s.str(&cfg.DebugAddr, "debug-addr", "HOLDFAST_DEBUG_ADDR", "loopback listen address of net/http/pprof, such as 127.0.0.1:6060 (off when empty)")
	s.str(&cfg.QueueReserve, "queue-reserve", "HOLDFAST_QUEUE_RESERVE", "what the waiting room keeps aside of the stock for each admitted place that holds nothing yet: cap (the per-buyer cap until the place books; no admitted buyer finds nothing unless one before it holds again) or average (the event's recent holds' average quantity)")
	s.duration(&cfg.Webhook.RetryFor, "webhook-retry-for", "HOLDFAST_WEBHOOK_RETRY_FOR", "how long a webhook delivery is retried after it was made")
	s.duration(&cfg.Webhook.RetryBase, "webhook-retry-base", "HOLDFAST_WEBHOOK_RETRY_BASE", "the delay before a webhook delivery's first retry; each next delay doubles the last (at most 10s)")
	s.duration(&cfg.OutboxRetention, "outbox-retention", "HOLDFAST_OUTBOX_RETENTION", "how long events stay in the change feed and the delivery log (0: for ever)")
	s.boolean(&cfg.Webhook.AllowPrivate, "webhook-allow-private", "HOLDFAST_WEBHOOK_ALLOW_PRIVATE", "allow webhook URLs on loopback, private and link-local addresses")
	s.integer(&cfg.MaxConns, "max-connections", "HOLDFAST_MAX_CONNECTIONS", "the most connections open at once; past it a new one waits to be accepted")
}

// validate refuses settings the service cannot run with, naming the flag.
// validSweepEvery is the rule for --sweep-every, serve's and check's: the
// sweeper runs at most once a second, and check judges a hold late by it.
func validSweepEvery(d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("--sweep-every must be at least 1s, got %s", d)
	}
	return nil
}

func (c config) validate(needDatabase bool) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Addr == "" {
		bad("--addr must not be empty")
	}
	if needDatabase {
		if err := store.ValidateURL(c.DatabaseURL); err != nil {
			bad("--database-url (DATABASE_URL) %v", err)
		}
	}
	if err := store.ValidateRedisURL(c.RedisURL); err != nil {
		bad("--redis-url: %v", err)
	}
	if c.HoldTTL <= 0 {
		bad("--hold-ttl must be positive, got %s", c.HoldTTL)
	}
	if c.HoldMax < c.HoldTTL {
		// A new hold lasts --hold-ttl; a cap below that would make every
		// hold outlive its own limit.
		bad("--hold-max (%s) must be at least --hold-ttl (%s)", c.HoldMax, c.HoldTTL)
	}
	if err := validSweepEvery(c.SweepEvery); err != nil {
		bad("%v", err)
	}
	if c.LockTTL < 10*time.Millisecond {
		bad("--lock-ttl must be at least 10ms, got %s", c.LockTTL)
	}
	if c.LockWait < 0 {
		bad("--lock-wait must not be negative, got %s", c.LockWait)
	}
	if c.SimulateWork < 0 {
		bad("--simulate-work must not be negative, got %s", c.SimulateWork)
	}
	if c.SimulateWork >= c.LockTTL {
		// The work runs while the event's locks are held; longer than the
		// lock's TTL, the Redis lock would lapse mid-booking and the
		// database would end the idle transaction.
		bad("--simulate-work (%s) must be shorter than --lock-ttl (%s)", c.SimulateWork, c.LockTTL)
	}
	if c.MaxQuantity < 1 || c.MaxQuantity > 10000 {
		bad("--max-quantity must be from 1 to 10000, got %d", c.MaxQuantity)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("--admin-token must be at least 16 characters")
	}
	if c.RateLimit < 0 {
		bad("--rate-limit must not be negative, got %d", c.RateLimit)
	}
	if c.TicketCap < 0 {
		bad("--max-tickets-per-user must not be negative, got %d", c.TicketCap)
	}
	if c.ClientCap < 0 {
		bad("--max-tickets-per-client must not be negative, got %d", c.ClientCap)
	}
	if _, err := clientaddr.ParseTrusted(c.TrustedProxies); err != nil {
		bad("--trusted-proxies: %v", err)
	}
	if c.DBMaxConns < 1 || c.DBMaxConns > 1000 {
		bad("--db-max-conns must be from 1 to 1000, got %d", c.DBMaxConns)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("--log-level: %v", err)
	}
	if c.DebugAddr != "" && !loopback(c.DebugAddr) {
		// Profiles show the service's internals; they are for the
		// machine's own operator only.
		bad("--debug-addr must be a loopback address with a port, such as 127.0.0.1:6060, got %q", c.DebugAddr)
	}
	if c.QueueReserve != string(queue.ReserveCap) && c.QueueReserve != string(queue.ReserveAverage) {
		bad("--queue-reserve must be cap or average, got %q", c.QueueReserve)
	}
	if strings.ContainsAny(c.RedisPrefix, "{}") {
		// Each event's queue keys carry a hash tag after the prefix: a
		// brace in it would move the tag, and Redis Cluster would spread
		// one queue's keys over slots its scripts cannot reach together.
		bad("--redis-prefix must hold no { or }, got %q", c.RedisPrefix)
	}
	if c.OutboxRetention < 0 {
		bad("--outbox-retention must not be negative, got %s", c.OutboxRetention)
	}
	if c.Webhook.RetryFor <= 0 {
		bad("--webhook-retry-for must be positive, got %s", c.Webhook.RetryFor)
	}
	if c.Webhook.RetryBase < 10*time.Millisecond || c.Webhook.RetryBase > 10*time.Second {
		// The first retry comes within 10 s.
		bad("--webhook-retry-base must be from 10ms to 10s, got %s", c.Webhook.RetryBase)
	}
	if c.MaxConns < 1 {
		bad("--max-connections must be at least 1, got %d", c.MaxConns)
	}
	if c.IdleTimeout <= 0 {
		bad("the idle timeout must be positive, got %s", c.IdleTimeout)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// loopback reports whether addr is host:port with a loopback host: an IP in
// 127.0.0.0/8 or ::1, or "localhost".
func loopback(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}
