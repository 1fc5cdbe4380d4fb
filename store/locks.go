package store

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/sale"
)

// OpenRedis returns a client for url with short timeouts: Redis only cuts
// contention, so a slow or missing Redis must cost a request little before
// it falls back on PostgreSQL's row lock. The URL chooses the client:
// redis://host:port/db (or rediss://) is one server;
// redis+cluster://host1:port1,host2:port2 (or rediss+cluster://) is a
// Redis Cluster reached through any of the nodes listed, with go-redis's
// cluster client.
func OpenRedis(url string) (redis.UniversalClient, error) {
	if cluster, ok, err := parseClusterURL(url); ok {
		if err != nil {
			return nil, fmt.Errorf("store: redis url: %w", err)
		}
		cluster.DialTimeout = 500 * time.Millisecond
		cluster.ReadTimeout = 500 * time.Millisecond
		cluster.WriteTimeout = 500 * time.Millisecond
		cluster.MaxRetries = -1
		cluster.DialerRetries = 1
		cluster.PoolSize = 64
		return redis.NewClusterClient(cluster), nil
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store: redis url: %w", err)
	}
	opts.DialTimeout = 500 * time.Millisecond
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.MaxRetries = -1 // a lock attempt is retried by its own strategy, not by the client
	// One dial attempt: with Redis down, every request would otherwise
	// spend the client's default five attempts (400 ms) before falling back.
	opts.DialerRetries = 1
	opts.PoolSize = 64
	return redis.NewClient(opts), nil
}

// ValidateRedisURL checks a Redis URL of either form OpenRedis takes.
func ValidateRedisURL(url string) error {
	if _, ok, err := parseClusterURL(url); ok {
		return err
	}
	_, err := redis.ParseURL(url)
	return err
}

// parseClusterURL reads a redis+cluster:// URL (ok false for any other):
// its comma-separated hosts become go-redis's cluster URL, the first as
// the host and the others as addr parameters.
func parseClusterURL(raw string) (*redis.ClusterOptions, bool, error) {
	scheme, rest, found := strings.Cut(raw, "://")
	if !found || (scheme != "redis+cluster" && scheme != "rediss+cluster") {
		return nil, false, nil
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo := ""
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		userinfo, authority = authority[:at+1], authority[at+1:]
	}
	hosts := strings.Split(authority, ",")
	if authority == "" || slices.Contains(hosts, "") {
		return nil, true, errors.New("redis+cluster:// needs host:port[,host:port...]")
	}
	path, query, _ := strings.Cut(tail, "?")
	if path != "" && path != "/" && path != "/0" {
		return nil, true, errors.New("a Redis Cluster has only database 0")
	}
	params := []string{}
	if query != "" {
		params = append(params, query)
	}
	for _, h := range hosts[1:] {
		params = append(params, "addr="+h)
	}
	u := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + hosts[0]
	if len(params) > 0 {
		u += "?" + strings.Join(params, "&")
	}
	opts, err := redis.ParseClusterURL(u)
	return opts, true, err
}

// LockOptions configure the per-event locks.
type LockOptions struct {
	// Prefix starts every key, so tests and deployments can share a Redis.
	Prefix string
	// TTL is how long a lock lives if its holder never releases it.
	TTL time.Duration
	// Wait is how long Lock tries before it answers ErrBusy.
	Wait time.Duration
	// MarkWaits makes a Lock that finds the lock held say so in Redis for
	// as long as it waits, so that a holder keeping the lock across
	// batches can see, with Wanted, that another instance waits for it.
	MarkWaits bool
}

// Locks are per-event Redis locks: a random token per holder, a TTL, and a
// compare-and-delete release (bsm/redislock), so a holder whose TTL ran out
// can never delete the lock of the holder after it.
//
// An attempt whose answer never came (a read timeout) may have taken the
// lock all the same; Lock then falls back on the row lock and gives the
// lock back by its token in the background, so no instance is told busy
// for the rest of its TTL by a lock nobody knows it holds.
//
// The callers of one Locks take turns per event in a gate (see gates)
// before they ask Redis: an instance has one caller at a time polling
// for an event's lock, however many wait for it.
type Locks struct {
	rdb    redis.UniversalClient
	client *redislock.Client
	opts   LockOptions
	log    *slog.Logger
	down   atomic.Bool
	// givingBack bounds the give-backs in flight (see giveBack).
	givingBack chan struct{}
	// waited, when set, hears how long each Lock waited and whether it
	// ended busy.
	waited func(d time.Duration, busy bool)
	gates  gates
}

// OnWait makes l report every wait for a lock to f.
func (l *Locks) OnWait(f func(d time.Duration, busy bool)) { l.waited = f }

// RedisUp reports whether Redis answered the last time it was asked.
func (l *Locks) RedisUp() bool { return !l.down.Load() }

// NewLocks returns Locks on rdb.
func NewLocks(rdb redis.UniversalClient, opts LockOptions, log *slog.Logger) *Locks {
	return &Locks{rdb: rdb, client: redislock.New(rdb), opts: opts, log: log, givingBack: make(chan struct{}, maxGivingBack)}
}

var (
	//go:embed lua/release.lua
	releaseScript string
	//go:embed lua/mark_wait.lua
	markWaitLua string
	//go:embed lua/waiters.lua
	waitersLua string

	markWaitScript = redis.NewScript(markWaitLua)
	waitersScript  = redis.NewScript(waitersLua)
)

// maxGivingBack is how many locks whose answer was lost one Locks gives
// back at once. Past it, such a lock lapses after its TTL, as it did
// before there were give-backs: Redis failing that often has already been
// logged, and the row lock keeps the sale correct.
const maxGivingBack = 64

// newToken returns a random token for one Lock call: its lock's value, and
// its mark while it waits.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: lock token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Key is the Redis key of eventID's lock.
func (l *Locks) Key(eventID int64) string {
	return l.opts.Prefix + "event_lock:" + strconv.FormatInt(eventID, 10)
}

// wantedKey is the sorted set of those waiting for eventID's lock. Named
// anew when it stopped being a flag (event_lock_wanted, a string), so
// instances of either kind in one rolling deploy never meet on one key.
func (l *Locks) wantedKey(eventID int64) string {
	return l.opts.Prefix + "event_lock_waiters:" + strconv.FormatInt(eventID, 10)
}

// Wanted reports whether a Lock of another holder is waiting for eventID's
// lock: one of another instance (with MarkWaits), or one of this instance
// in the gate. Unknown (Redis not answering) reads as no.
//
// Each waiter marks itself, by its token, until its wait ends: one waiter
// that gives up (or takes the lock) must not clear the mark of the others,
// or the holder keeps the lock from the ones still waiting. A single flag
// did that; with three instances one of them starved.
func (l *Locks) Wanted(ctx context.Context, eventID int64) bool {
	if l.gates.waiting(eventID) {
		return true // a caller of this instance, in the gate
	}
	n, err := waitersScript.Run(ctx, l.rdb, []string{l.wantedKey(eventID)}).Int64()
	return err == nil && n > 0
}

// markWait marks token as waiting for eventID's lock for wait.
func (l *Locks) markWait(ctx context.Context, eventID int64, token string, wait time.Duration) {
	markWaitScript.Run(ctx, l.rdb, []string{l.wantedKey(eventID)}, token, wait.Milliseconds())
}

// unmarkWait clears token's mark, and only its own.
func (l *Locks) unmarkWait(ctx context.Context, eventID int64, token string) {
	l.rdb.ZRem(ctx, l.wantedKey(eventID), token)
}

// retry polls for a held lock with growing pauses, so a crowd waiting on one
// event does not hammer Redis.
func retry() redislock.RetryStrategy {
	return redislock.ExponentialBackoff(2*time.Millisecond, 32*time.Millisecond)
}

// Lock takes eventID's lock, waiting up to the configured wait. It returns
// sale.ErrBusy if another holder kept it that long. If Redis cannot be
// reached it logs that, returns a no-op unlock and no error: the caller's
// row lock keeps the sale correct without it. An attempt that may have
// taken the lock without hearing so is given back (see giveBack).
//
// Callers of one Locks for one event take turns in its gate (see gates)
// before they ask Redis, and the wait counts from before the gate. With
// Redis known to be down there is no gate: each call tries Redis itself,
// which is how it learns that Redis is back.
func (l *Locks) Lock(ctx context.Context, eventID int64) (func(), error) {
	wait, strategy := l.opts.Wait, retry()
	if wait <= 0 {
		// No wait: one attempt, answered busy at once if the lock is held,
		// as the seed did. The attempt itself still needs time to run.
		wait, strategy = 500*time.Millisecond, redislock.NoRetry()
	}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	busyErr := func() error {
		if l.waited != nil {
			l.waited(time.Since(start), true)
		}
		return fmt.Errorf("%w: redis lock %s", sale.ErrBusy, l.Key(eventID))
	}
	var p *passage
	if !l.down.Load() {
		var err error
		p, err = l.gates.enter(waitCtx, eventID, l.opts.Wait <= 0)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			return nil, busyErr()
		}
		// Had with the turn, the caller goes on even if its context has
		// just ended: the attempt below sees that and gives the turn back.
	}
	token, err := newToken()
	if err != nil {
		p.leave()
		return nil, err
	}
	obtain := func(s redislock.RetryStrategy) (*redislock.Lock, error) {
		return l.client.Obtain(waitCtx, l.Key(eventID), l.opts.TTL, &redislock.Options{RetryStrategy: s, Token: token})
	}
	var lock *redislock.Lock
	if l.opts.MarkWaits && l.opts.Wait > 0 {
		lock, err = obtain(redislock.NoRetry())
		if errors.Is(err, redislock.ErrNotObtained) {
			// Held: say so while we wait, and clear our mark once we are
			// done waiting, whichever way.
			l.markWait(waitCtx, eventID, token, wait)
			lock, err = obtain(strategy)
			l.unmarkWait(context.WithoutCancel(ctx), eventID, token)
		}
	} else {
		lock, err = obtain(strategy)
	}
	if mayHaveLanded(err) {
		// Whatever is answered below, the lock may be ours in Redis.
		l.giveBack(l.Key(eventID), token)
	}
	switch {
	case err == nil:
		if l.waited != nil {
			l.waited(time.Since(start), false)
		}
		l.markUp(ctx)
		return func() { l.release(lock); p.leave() }, nil
	case ctx.Err() != nil:
		p.leave()
		return nil, ctx.Err()
	case errors.Is(err, redislock.ErrNotObtained) || waitCtx.Err() != nil:
		// Held by someone else for the whole wait. A dial or read timeout
		// also reads as context.DeadlineExceeded, so that alone proves
		// nothing: only the wait's own deadline passing means busy.
		p.leave()
		l.markUp(ctx)
		return nil, busyErr()
	default:
		l.markDown(ctx, err)
		// Those behind us would each wait out Redis's timeout in turn:
		// let them all go to their own attempts now.
		p.openGate()
		p.leave()
		return func() {}, nil
	}
}

// mayHaveLanded reports whether an attempt that failed with err may have
// taken the lock all the same: its command was sent and its answer lost
// (a read timeout, a connection reset). Not for a refusal (the lock was
// held), nor for an error before anything was sent: a dial that failed,
// or the wait ending between two polls.
func mayHaveLanded(err error) bool {
	if err == nil || errors.Is(err, redislock.ErrNotObtained) ||
		err == context.DeadlineExceeded || err == context.Canceled || errors.Is(err, redis.ErrPoolTimeout) {
		return false
	}
	var op *net.OpError
	return !errors.As(err, &op) || op.Op != "dial"
}

// giveBack deletes key in the background if it still holds token, for an
// attempt whose answer was lost. Each try has its own short deadline (the
// request that made the attempt may be long gone), and tries go on, further
// apart, until the lock would have lapsed anyway: a Redis that answers late
// still runs the delete, and one that comes back runs a later try. The
// script goes in full (EVAL, not EVALSHA): one round trip, whatever Redis
// has loaded.
func (l *Locks) giveBack(key, token string) {
	select {
	case l.givingBack <- struct{}{}:
	default:
		return // see maxGivingBack
	}
	go func() {
		defer func() { <-l.givingBack }()
		ctx := context.Background()
		end := time.Now().Add(l.opts.TTL)
		pause := 50 * time.Millisecond
		for {
			tryCtx, cancel := context.WithTimeout(ctx, time.Second)
			n, err := l.rdb.Eval(tryCtx, releaseScript, []string{key}, token).Int64()
			cancel()
			if err == nil {
				if n > 0 {
					l.log.InfoContext(ctx, "gave back an event lock whose answer was lost", "key", key)
				}
				return
			}
			if time.Now().Add(pause).After(end) {
				l.log.WarnContext(ctx, "an event lock whose answer was lost was not given back; it lapses after its TTL", "key", key, "ttl", l.opts.TTL, "err", err)
				return
			}
			time.Sleep(pause)
			pause = min(2*pause, time.Second)
		}
	}()
}

func (l *Locks) release(lock *redislock.Lock) {
	// The request's context may be cancelled by now; the release must still
	// happen, or the event's next buyers wait out the whole TTL. A release
	// lost to a passing network error is tried again, briefly.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := lock.Release(ctx)
		switch {
		case err == nil:
			return
		case errors.Is(err, redislock.ErrLockNotHeld):
			// Our TTL ran out and someone else may hold the lock now; the
			// compare-and-delete left theirs alone.
			l.log.WarnContext(ctx, "event lock expired before release", "key", lock.Key(), "ttl", l.opts.TTL)
			return
		case attempt >= 3 || ctx.Err() != nil:
			l.log.WarnContext(ctx, "event lock not released; it lapses after its TTL", "key", lock.Key(), "ttl", l.opts.TTL, "err", err)
			l.markDown(ctx, err)
			return
		}
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
}

func (l *Locks) markDown(ctx context.Context, err error) {
	if !l.down.Swap(true) {
		l.log.WarnContext(ctx, "redis unavailable: selling on PostgreSQL row locks alone", "err", err)
	}
}

func (l *Locks) markUp(ctx context.Context) {
	if l.down.Swap(false) {
		l.log.InfoContext(ctx, "redis is back: event locks in use again")
	}
}

// Up asks Redis for a PING and reports whether it answered.
func (l *Locks) Up(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	err := l.rdb.Ping(ctx).Err()
	if err != nil {
		l.markDown(ctx, err)
	} else {
		l.markUp(ctx)
	}
	return err
}
