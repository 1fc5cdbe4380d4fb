package store_test

import (
	"context"
	"slices"
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
	if len(audits) != 6 {
		t.Fatalf("%d sample events, want 6", len(audits))
	}
	for _, a := range audits {
		if a.Total == 120 {
			continue // the hall, below
		}
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
	// The hall: 120 seats in two categories, each category's stock its
	// seats, best available of the balcony side by side.
	hall := audits[len(audits)-1]
	if len(hall.Problems) > 0 || hall.Total != 120 || hall.Available != 120 {
		t.Fatalf("the hall: %+v", hall)
	}
	seats, err := s.Seats(ctx, hall.ID, "")
	if err != nil || len(seats) != 120 || seats[0].ID != "Stalls-A-1" || seats[119].ID != "Balcony-K-12" {
		t.Fatalf("the hall's seats: %d, err %v", len(seats), err)
	}
	ev, err := s.Event(ctx, hall.ID)
	if err != nil || len(ev.Categories) != 2 {
		t.Fatalf("the hall's categories: %+v %v", ev.Categories, err)
	}
	balcony := ev.Categories[1]
	if balcony.Name != "Balcony" || balcony.TotalTickets != 48 || ev.Categories[0].TotalTickets != 72 {
		t.Fatalf("the hall's categories: %+v", ev.Categories)
	}
	outs := holdSeats(t, s, hall.ID, bestRequest(hall.ID, "a@example.com", balcony.ID, 3))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"Balcony-G-1", "Balcony-G-2", "Balcony-G-3"}) {
		t.Fatalf("three on the balcony: %v %v", o.Hold.Seats, o.Err)
	}
	audit(t, s, hall.ID)
	// The status page shows each event's categories.
	page, err := s.StatusEvents(ctx, 20, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page {
		if want := max(map[int]int{2800: 3, 120: 2}[e.Total], 1); len(e.Categories) != want {
			t.Errorf("status of event %d: categories %+v, want %d", e.ID, e.Categories, want)
		}
	}
}
