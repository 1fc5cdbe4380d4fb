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
)

// Counter counts a client's requests in one one-second window, shared
// across instances.
type Counter interface {
	Hit(ctx context.Context, client string, window int64) (int64, error)
}

// ErrTooMany answers a client over its limit.
var ErrTooMany = &httpapi.Error{Code: httpapi.CodeBusy, Message: "too many requests from this address, please slow down", RetryAfter: time.Second}

// Limiter allows each client address perSecond write requests a second.
type Limiter struct {
	perSecond int64
	shared    Counter
	log       *slog.Logger
	shards    [32]shard
	fallback  atomic.Bool
}

type shard struct {
	mu     sync.Mutex
	window int64
	counts map[string]int64
}

// New returns a Limiter; shared may be nil to count in-process only.
func New(perSecond int, shared Counter, log *slog.Logger) *Limiter {
	l := &Limiter{perSecond: int64(perSecond), shared: shared, log: log}
	for i := range l.shards {
		l.shards[i].counts = map[string]int64{}
	}
	return l
}

// Allow counts one request from client and reports whether it is within
// the limit.
func (l *Limiter) Allow(ctx context.Context, client string) bool {
	window := time.Now().Unix()
	if l.shared != nil {
		// A slow Redis must not slow every write: a short deadline, then
		// the local count.
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
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

func (l *Limiter) local(client string, window int64) int64 {
	var h uint32 = 2166136261
	for i := 0; i < len(client); i++ {
		h = (h ^ uint32(client[i])) * 16777619
	}
	sh := &l.shards[h%uint32(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.window != window {
		// A new second: forget the last one's counts.
		sh.window = window
		clear(sh.counts)
	}
	sh.counts[client]++
	return sh.counts[client]
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
		var client string
		if a := clientaddr.From(r.Context()); a.IsValid() {
			client = a.String()
		} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			client = host
		} else {
			client = r.RemoteAddr
		}
		if !l.Allow(r.Context(), client) {
			httpapi.WriteError(w, r, l.log, ErrTooMany)
			return
		}
		next.ServeHTTP(w, r)
	})
}
