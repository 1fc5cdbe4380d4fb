package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// saleWindows are sale windows relative to the database's clock, as SQL
// expressions, and what a hold or booking must come to in each.
var saleWindows = []struct {
	name    string
	on, off string
	want    error
}{
	{"not yet on sale", "now() + interval '1 hour'", "NULL", sale.ErrNotOnSale},
	{"closed", "now() - interval '2 hours'", "now() - interval '1 hour'", sale.ErrSaleClosed},
	{"closed, never opened", "NULL", "now() - interval '1 second'", sale.ErrSaleClosed},
	{"open", "now() - interval '1 hour'", "now() + interval '1 hour'", nil},
	{"no window", "NULL", "NULL", nil},
}

func windowedEvent(t *testing.T, s *store.Store, tickets int, on, off string) int64 {
	t.Helper()
	ev := newEvent(t, s, tickets)
	q := fmt.Sprintf(`UPDATE events SET on_sale_at = %s, off_sale_at = %s WHERE id = $1`, on, off)
	if _, err := s.DB().ExecContext(context.Background(), q, ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestHoldsKeepToTheSaleWindow(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		for _, c := range saleWindows {
			ev := windowedEvent(t, s, 10, c.on, c.off)
			reqs := []hold.Request{request(ev, "a@example.com", 1), request(ev, "b@example.com", 2)}
			outs, err := s.CreateHolds(context.Background(), ev, reqs, time.Minute, noRender)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			for i, o := range outs {
				if !errors.Is(o.Err, c.want) || (c.want == nil && o.Err != nil) {
					t.Errorf("%s: request %d got %v, want %v", c.name, i, o.Err, c.want)
				}
			}
			wantStock := 10
			if c.want == nil {
				wantStock = 7
			}
			if got := stock(t, s, ev); got != wantStock {
				t.Errorf("%s: stock %d, want %d", c.name, got, wantStock)
			}
		}
	})
}

// A 403 refuses the request for when it came, not for what it asked: it is
// not kept for its key, so the same key takes the hold once the sale opens.
func TestHoldsWithKeysKeepToTheSaleWindowAndDoNotKeepTheRefusal(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := windowedEvent(t, s, 10, "now() + interval '1 hour'", "NULL")
	key := &idempotency.Key{Scope: hold.ScopeCreate, Key: "k-1", Hash: []byte("x")}
	req := request(ev, "a@example.com", 1)
	req.Key = key
	outs, err := s.CreateHolds(context.Background(), ev, []hold.Request{req}, time.Minute, func(h hold.Hold, err error) idempotency.Response {
		return idempotency.Failure(err, nil)
	})
	if err != nil || !errors.Is(outs[0].Err, sale.ErrNotOnSale) {
		t.Fatalf("got %v %v, want not_on_sale", outs, err)
	}
	replay, err := s.Replay(context.Background(), key)
	if err != nil || replay != nil {
		t.Fatalf("replay %+v %v, want none: a 403 is not kept", replay, err)
	}
}

func TestBookLockedKeepsToTheSaleWindow(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for _, c := range saleWindows {
		ev := windowedEvent(t, s, 10, c.on, c.off)
		o := sale.Order{EventID: ev, Email: "a@example.com", Quantity: 2}
		out, err := s.BookLocked(context.Background(), o, 0, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !errors.Is(out.Err, c.want) || (c.want == nil && out.Err != nil) {
			t.Errorf("%s: got %v, want %v", c.name, out.Err, c.want)
		}
	}
}

func TestTheSaleWindowMustEndAfterItStarts(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := windowedEvent(t, s, 10, "now() + interval '1 hour'", "NULL")
	past := time.Now().Add(-time.Hour)
	_, err := s.UpdateEvent(context.Background(), ev, sale.EventPatch{OffSaleAt: sale.Optional[time.Time]{Set: true, V: &past}})
	if !errors.Is(err, sale.ErrSaleWindow) {
		t.Fatalf("got %v, want %v", err, sale.ErrSaleWindow)
	}
	// Cleared, the window opens.
	got, err := s.UpdateEvent(context.Background(), ev, sale.EventPatch{OnSaleAt: sale.Optional[time.Time]{Set: true}})
	if err != nil || got.OnSaleAt != nil {
		t.Fatalf("clear on_sale_at: %+v %v", got, err)
	}
}
