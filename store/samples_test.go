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
	if len(audits) != 4 {
		t.Fatalf("%d sample events, want 4", len(audits))
	}
	for _, a := range audits {
		if len(a.Problems) > 0 || (a.Total != 100000 && a.Available != 10) {
			t.Errorf("sample event %d: %+v", a.ID, a)
		}
	}
}
