package hold_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
)

// A hold that lapses before the sweeper's next run is swept the moment it
// lapses, not up to a whole interval later: the sweeper wakes for the next
// expiry. The interval here is a minute; the hold lapses after one second
// and must be back on sale long before the first run on the interval.
func TestTheSweeperWakesWhenTheNextHoldLapses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Minute)
	ev := f.event(t, 5)
	outs, err := f.store.CreateHolds(context.Background(), ev, []hold.Request{request(ev, 1)}, time.Second, nil)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("hold: %v %v", err, outs)
	}
	sw := hold.NewSweeper(f.store, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := sw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sw.Stop(context.Background()) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending int
		if err := f.store.DB().QueryRowContext(context.Background(),
			`SELECT count(*) FROM bookings WHERE event_id = $1 AND booking_status = 'pending'`, ev).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lapsed hold is still pending 20 s on, with the next run on the interval a minute away")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var avail int
	if err := f.store.DB().QueryRowContext(context.Background(), `SELECT available_tickets FROM events WHERE id = $1`, ev).Scan(&avail); err != nil {
		t.Fatal(err)
	}
	if avail != 5 {
		t.Fatalf("available %d after the sweep, want 5", avail)
	}
}
