package sale

import (
	"context"
	"log/slog"
	"time"
)

// PlaceMarker marks a waiting room place done: its buyer bought with its
// pass.
type PlaceMarker interface {
	Done(ctx context.Context, placeID string) error
}

// placeMarkWait bounds the marking of a place after a purchase, so a slow
// Redis cannot slow the purchase's answer by more.
const placeMarkWait = 250 * time.Millisecond

// MarkDone tells m (nil: nobody) that the buyer of place bought, so the
// place reads done at once. It is best effort, and not the rule: the
// database's pass_used check is what refuses a second purchase with the
// pass. A failure is logged on log (nil: not at all).
func MarkDone(ctx context.Context, m PlaceMarker, place string, log *slog.Logger) {
	if m == nil || place == "" {
		return
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), placeMarkWait)
	defer cancel()
	if err := m.Done(mctx, place); err != nil && log != nil {
		log.WarnContext(ctx, "could not mark the waiting room place done", "place", place, "err", err)
	}
}
