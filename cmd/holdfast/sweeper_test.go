package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// An event whose give-back the database refuses is logged and counted, and
// the sweeper goes on to the events after it.
func TestSweeperLogsCountsAndSkipsAnEventThatFails(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.SweepEvery = time.Second })
	broken, healthy := ts.newEvent(10, true), ts.newEvent(10, true)
	for _, ev := range []int64{broken, healthy} {
		ts.lapse(ts.mustHold(ev, 3).ID)
	}
	// Someone put the stock back by hand under the live hold.
	ts.corrupt(`UPDATE events SET available_tickets = total_tickets WHERE id = $1`, broken)
	if err := ts.app.sweeper.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer ts.app.sweeper.Stop(context.Background())

	deadline := time.Now().Add(30 * time.Second)
	for ts.available(healthy) != 10 || ts.scrape()["holdfast_sweeper_errors_total"] < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: healthy stock %d (want 10), sweeper errors %v (want at least 1)",
				ts.available(healthy), ts.scrape()["holdfast_sweeper_errors_total"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if logs := ts.log.String(); !strings.Contains(logs, "sweep of an event failed") || !strings.Contains(logs, "event_id="+itoa(broken)) {
		t.Fatalf("the failed event was not logged with its id:\n%s", logs)
	}
}
