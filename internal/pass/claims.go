// Package pass signs and verifies the waiting room's passes: the signed
// token an admitted place gets, which POST /holds and POST /book/safe
// require on a queued event. A pass is verified by every instance with no
// Redis and no database round trip, from public keys every instance shares.
package pass

import "time"

// Claims is what a pass says: who was admitted to which event, and until
// when.
type Claims struct {
	// EventID is the event the pass admits to (the JWT audience).
	EventID int64
	// PlaceID is the waiting room place that was admitted (the JWT subject).
	PlaceID string
	// Email is the buyer the place belongs to; a hold with the pass must
	// carry it.
	Email string
	// Cap is the most tickets the pass's buyer may hold or own of the event
	// (the per-buyer cap when the pass was made; 0: no cap).
	Cap int
	// ExpiresAt is when the pass stops taking holds.
	ExpiresAt time.Time
}
