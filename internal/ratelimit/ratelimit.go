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
	// Unhit takes one of client's requests in window back, if the window
	// is still counted.
	Unhit(ctx context.Context, client string, window int64) error
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
	return l.take(ctx, client).ok
}

// hit is one request counted: in which window, where (shared or in
// process), and whether it was within the limit.
type hit struct {
	window int64
	shared bool
	ok     bool
}

func (l *Limiter) take(ctx context.Context, client string) hit {
	h := l.count(ctx, client, time.Now().Unix())
	if !h.ok {
		sh := l.shard(client)
		sh.mu.Lock()
		sh.turn(h.window)
		if sh.window == h.window { // not a refusal that lands after its second
			sh.over[client] = true
		}
		sh.mu.Unlock()
	}
	return h
}

func (l *Limiter) count(ctx context.Context, client string, window int64) hit {
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
			return hit{window: window, shared: true, ok: n <= l.perSecond}
		}
		if !l.fallback.Swap(true) {
			l.log.Warn("rate limit counting in-process: redis unavailable", "err", err)
		}
	}
	return hit{window: window, ok: l.local(client, window) <= l.perSecond}
}

// give takes back a request take counted within the limit, where it was
// counted. A request refused stays counted: it was over the limit anyway.
func (l *Limiter) give(ctx context.Context, client string, h hit) {
	if !h.ok {
		return
	}
	if h.shared {
		ctx, cancel := context.WithTimeout(ctx, l.wait)
		defer cancel()
		if err := l.shared.Unhit(ctx, client, h.window); err != nil {
			l.log.Warn("rate limit: could not take back a request counted in redis", "err", err)
		}
		return
	}
	sh := l.shard(client)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.window == h.window && sh.counts[client] > 0 {
		sh.counts[client]--
	}
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

// Client is r's client address, as the limit counts it.
func (l *Limiter) Client(r *http.Request) string {
	if a := clientaddr.From(r.Context()); a.IsValid() {
		return a.String()
	}
	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
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
// address, on every one of its limiters. An attempt is counted before it
// is judged, and one over any limit is refused unjudged: a right guess
// then gets the same 429 as a wrong one, so a brute force learns nothing
// past the limit. Counted after it was judged, every guess of a burst that
// came in before the first failure was counted was judged, on one instance
// or across several (hundreds a second against a limit of ten); counted
// first, in Redis where every instance counts, a burst has at most the
// limit judged. An attempt that proves right is given back: the limit
// counts failures.
type Failures struct {
	limits []*Limiter
}

// NewFailures counts failures on limits; nil ones (a rate limit that is
// off) are skipped.
func NewFailures(limits ...*Limiter) *Failures {
	f := &Failures{}
	for _, l := range limits {
		if l != nil {
			f.limits = append(f.limits, l)
		}
	}
	return f
}

// Try counts an attempt from r's client on every limit, and returns the
// client and ErrTooMany when that is over one of them: the attempt must
// not be judged. A client already refused this second is refused without
// being counted again. forgive takes the attempt back, for one that proved
// right; it is never nil.
func (f *Failures) Try(r *http.Request) (client string, forgive func(context.Context), err error) {
	if len(f.limits) == 0 {
		return r.RemoteAddr, func(context.Context) {}, nil
	}
	client = f.limits[0].Client(r)
	for _, l := range f.limits {
		if l.Over(client) {
			return client, func(context.Context) {}, ErrTooMany
		}
	}
	hits := make([]hit, len(f.limits))
	for i, l := range f.limits {
		if hits[i] = l.take(r.Context(), client); !hits[i].ok {
			err = ErrTooMany
		}
	}
	return client, func(ctx context.Context) {
		for i, h := range hits {
			f.limits[i].give(ctx, client, h)
		}
	}, err
}
