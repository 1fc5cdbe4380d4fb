package sale

import "context"

// Locker hands out the per-event lock that keeps buyers of one event from
// piling onto its row. Lock returns ErrBusy when the lock was not had within
// its wait; when the lock service itself is down it returns a no-op unlock
// and no error, since the row lock alone keeps sales correct.
type Locker interface {
	Lock(ctx context.Context, eventID int64) (unlock func(), err error)
}
