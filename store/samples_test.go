package store_test

import (
	"context"
	"testing"
	"time"
)

// The dev sample data loads under the schema's rules (the presale bookings
// are confirmed, not pending without an expiry), once, and balances.
func TestLoadSamplesBalancesUnderTheSchemaRules(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for i, want := range []bool{true, false} {
		loaded, err := s.LoadSamples(ctx)
		if err != nil || loaded != want {
			t.Fatalf("load %d: loaded %v, err %v; want %v", i, loaded, err, want)
		}
	}
	audits, err := s.Audit(ctx, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(audits) != 5 {
		t.Fatalf("%d sample events, want 5", len(audits))
	}
	for _, a := range audits {
		if len(a.Problems) > 0 || (a.Total != 100000 && a.Total != 2800 && a.Available != 10) {
			t.Errorf("sample event %d: %+v", a.ID, a)
		}
		ev, err := s.Event(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if a.Total == 2800 && len(ev.Categories) != 3 {
			t.Errorf("the festival has categories %+v, want 3", ev.Categories)
		}
		if a.Total != 2800 && (len(ev.Categories) != 1 || ev.Categories[0].AvailableTickets != a.Available) {
			t.Errorf("sample event %d: categories %+v, want one as the event", a.ID, ev.Categories)
		}
	}
	// The status page shows each event's categories.
	page, err := s.StatusEvents(ctx, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page {
		if want := map[bool]int{true: 3, false: 1}[e.Total == 2800]; len(e.Categories) != want {
			t.Errorf("status of event %d: categories %+v, want %d", e.ID, e.Categories, want)
		}
	}
}
