package ratelimit

import "time"

// WithWait sets how long a request waits for the shared count before it
// counts in-process, and returns l. A request that gives up on Redis may
// still have been counted there, so each give-up can let one request more
// through in its second: a trade of exactness for latency.
func (l *Limiter) WithWait(d time.Duration) *Limiter {
	l.wait = d
	return l
}
