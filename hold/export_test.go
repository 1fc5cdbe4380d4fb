package hold

import "time"

// SetOnJoin installs a hook called with each request as it joins its
// event's queue, under the queue's lock, so tests can read the order of
// arrival. It exists only in tests.
func (b *Batcher) SetOnJoin(f func(eventID int64, req Request)) { b.onJoin = f }

// SetLease sets how long a worker keeps its event's lock across batches.
func (b *Batcher) SetLease(d time.Duration) { b.lease = d }

// SetNoFew makes a few requests (FewMax) take the event's Redis lock, as
// a larger batch does: for tests of the lock's hand-over between
// instances, whose single requests would otherwise go straight to the row.
func (b *Batcher) SetNoFew() { b.noFew = true }
