// Package ratelimit limits how many write requests one client address may
// send per second. The count is shared by every instance through Redis, so
// a client cannot multiply its allowance by spreading over instances; when
// Redis cannot be reached each instance goes on counting on its own, so the
// limit still holds per instance instead of vanishing.
package ratelimit

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// Counter counts a client's requests in one one-second window, shared
// across instances.
type Counter interface {
	Hit(ctx context.Context, client string, window int64) (int64, error)
	// Count is how many Hit has counted for client in window.
	Count(ctx context.Context, client string, window int64) (int64, error)
}

// ErrTooMany answers a client over its limit.
var ErrTooMany = problem.New(problem.Busy, "too many requests from this address, please slow down")

// Limiter allows each client address perSecond write requests a second.
type Limiter struct {
	perSecond int64
	shared    Counter
	log       *slog.Logger
	shards    [32]shard
	fallback  atomic.Bool
	// wait is how long a request waits for the shared count before it
	// counts in-process instead.
	wait time.Duration
}

// defaultWait bounds what a slow Redis adds to every write.
const defaultWait = 100 * time.Millisecond

type shard struct {
	mu     sync.Mutex
	window int64
	counts map[string]int64 // in-process counts, while Redis is down
	over   map[string]bool  // clients refused this window
}

// New returns a Limiter; shared may be nil to count in-process only.
func New(perSecond int, shared Counter, log *slog.Logger) *Limiter {
	l := &Limiter{perSecond: int64(perSecond), shared: shared, log: log, wait: defaultWait}
	for i := range l.shards {
		l.shards[i].counts = map[string]int64{}
		l.shards[i].over = map[string]bool{}
	}
	return l
}

// Allow counts one request from client and reports whether it is within
// the limit.
func (l *Limiter) Allow(ctx context.Context, client string) bool {
	window := time.Now().Unix()
	ok := l.allow(ctx, client, window)
	if !ok {
		l.refusedIn(client, window)
	}
	return ok
}

// refused marks client refused for the rest of the current second.
func (l *Limiter) refused(client string) { l.refusedIn(client, time.Now().Unix()) }

func (l *Limiter) refusedIn(client string, window int64) {
	sh := l.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.turn(window)
	if sh.window == window { // not a refusal that lands after its second
		sh.over[client] = true
	}
}

func (l *Limiter) allow(ctx context.Context, client string, window int64) bool {
	if l.shared != nil {
		// A slow Redis must not slow every write: a short deadline, then
		// the local count.
		ctx, cancel := context.WithTimeout(ctx, l.wait)
		n, err := l.shared.Hit(ctx, client, window)
		cancel()
		if err == nil {
			if l.fallback.Swap(false) {
				l.log.Info("rate limit shared through redis again")
			}
			return n <= l.perSecond
		}
		if !l.fallback.Swap(true) {
			l.log.Warn("rate limit counting in-process: redis unavailable", "err", err)
		}
	}
	return l.local(client, window) <= l.perSecond
}

// Over reports whether this instance has refused client in the current
// second, without counting a request: for an attempt that must not even be
// judged while its client is over the limit (a guess at a token, whose
// answer would otherwise tell right from wrong).
func (l *Limiter) Over(client string) bool {
	sh := l.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.turn(time.Now().Unix())
	return sh.over[client]
}

// roomFor reports whether client's allowance this second has room for n
// more requests, without counting any: read where Allow counts, Redis
// while it answers.
func (l *Limiter) roomFor(ctx context.Context, client string, n int64) bool {
	window := time.Now().Unix()
	if l.shared != nil && !l.fallback.Load() {
		ctx, cancel := context.WithTimeout(ctx, l.wait)
		used, err := l.shared.Count(ctx, client, window)
		cancel()
		if err == nil {
			return used+n <= l.perSecond
		}
	}
	sh := l.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.turn(window)
	return sh.counts[client]+n <= l.perSecond
}

func (l *Limiter) shard(client string) *shard {
	var h uint32 = 2166136261
	for i := 0; i < len(client); i++ {
		h = (h ^ uint32(client[i])) * 16777619
	}
	return &l.shards[h%uint32(len(l.shards))]
}

// turn forgets the last second's counts when window is a new one. It only
// moves forward: a request whose Redis call outlasted its second must not
// wipe the next second's counts. The caller holds sh.mu.
func (sh *shard) turn(window int64) {
	if window > sh.window {
		sh.window = window
		clear(sh.counts)
		clear(sh.over)
	}
}

func (l *Limiter) local(client string, window int64) int64 {
	sh := l.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.turn(window)
	sh.counts[client]++
	return sh.counts[client]
}

// Client is r's client address, as the limit counts it (an IPv6 client
// by its /64: clientaddr.Counted).
func (l *Limiter) Client(r *http.Request) string {
	if a := clientaddr.Key(r.Context()); a.IsValid() {
		return a.String()
	}
	// No resolved address (a request that skipped clientaddr's
	// middleware, or from a Unix socket): the peer as it reads.
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	if a, err := netip.ParseAddr(client); err == nil {
		return clientaddr.Counted(a).String()
	}
	return client
}

// Middleware limits the write methods (POST, PUT, PATCH, DELETE); reads
// pass. The client is the address clientaddr resolved (X-Forwarded-For
// only from a trusted proxy), or else the connection's peer.
func (l *Limiter) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if !l.Allow(r.Context(), l.Client(r)) {
			httpapi.WriteError(w, r, l.log, ErrTooMany)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Failures limits failed attempts at a secret (the admin token) per client
// address: each failure is a hit on every one of its limiters, and a client
// over any of them is refused before its attempt is judged. A right guess
// then gets the same 429 as a wrong one, so a brute force learns nothing
// past the limit.
//
// An attempt is judged only in a turn, of which one client has as many on
// an instance as the failure limit allows a second, and only if, once it
// has its turn, the client's failures this second (in Redis, where every
// instance counts them) and the attempts being judged on this instance
// still leave room. A failure is counted before its turn is given back.
// So however many guesses a burst sends at once, one instance judges at
// most the limit in a second, and several at most the limit plus each
// other instance's turns in flight when the count reached it: where they were
// counted only after they were judged, and refused only once this instance
// had seen a refusal, a burst had hundreds judged (182 in one second
// against 10). A right token holds its turn for the comparison only, so
// an admin's script sending many requests at once waits for turns, it is
// not refused.
type Failures struct {
	limits []*Limiter
	bound  *Limiter // the one that counts failures alone, and its turns
	turns  int

	mu      sync.Mutex
	judging map[string]*turns // per client with attempts waiting or judged
}

// turns are one client's: a slot per attempt being judged, and how many
// attempts wait for one or hold one (the entry goes when none do).
type turns struct {
	slots chan struct{}
	users int
}

// NewFailures counts failures on failures, which counts nothing else and
// bounds what is judged, and as hits on also (the write limit), which
// refuses an attempt only once it refused its client this second: a client
// that has spent its writes may still read /admin. Nil ones (a rate limit
// that is off) are skipped.
func NewFailures(failures *Limiter, also ...*Limiter) *Failures {
	f := &Failures{judging: map[string]*turns{}}
	for _, l := range append([]*Limiter{failures}, also...) {
		if l != nil {
			f.limits = append(f.limits, l)
		}
	}
	if failures != nil {
		f.bound = failures
		f.turns = int(failures.perSecond)
	}
	return f
}

// turnWait is the longest an attempt waits for a turn.
const turnWait = time.Second

// Try takes a turn for an attempt from r's client, and returns the client,
// done, which the caller must call once the attempt is judged (right or
// not) and which answers ErrTooMany for a failure over a limit, and
// ErrTooMany itself when the client is over a limit this second and must
// not be heard.
func (f *Failures) Try(r *http.Request) (client string, done func(ctx context.Context, right bool) error, err error) {
	none := func(context.Context, bool) error { return nil }
	if f.bound == nil {
		return r.RemoteAddr, none, nil
	}
	ctx := r.Context()
	client = f.limits[0].Client(r)
	for _, l := range f.limits {
		if l.Over(client) {
			return client, none, ErrTooMany
		}
	}
	release, judging, err := f.take(ctx, client)
	if err != nil {
		return client, none, err
	}
	// Every attempt being judged here may yet be a failure.
	if !f.bound.roomFor(ctx, client, int64(judging())) {
		release()
		f.bound.refused(client)
		return client, none, ErrTooMany
	}
	return client, func(ctx context.Context, right bool) error {
		defer release()
		if right {
			return nil
		}
		var err error
		for _, l := range f.limits {
			if !l.Allow(ctx, client) {
				err = ErrTooMany
			}
		}
		return err
	}, nil
}

// take waits for one of client's turns, and returns what gives it back and
// what counts the turns taken now, this one's included.
func (f *Failures) take(ctx context.Context, client string) (release func(), judging func() int, err error) {
	f.mu.Lock()
	ts, ok := f.judging[client]
	if !ok {
		ts = &turns{slots: make(chan struct{}, f.turns)}
		f.judging[client] = ts
	}
	ts.users++
	f.mu.Unlock()
	leave := func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if ts.users--; ts.users == 0 {
			delete(f.judging, client)
		}
	}
	t := time.NewTimer(turnWait)
	defer t.Stop()
	select {
	case ts.slots <- struct{}{}:
	case <-t.C:
		leave()
		return nil, nil, ErrTooMany
	case <-ctx.Done():
		leave()
		return nil, nil, ErrTooMany
	}
	return func() {
			<-ts.slots
			leave()
		}, func() int {
			return len(ts.slots)
		}, nil
}
