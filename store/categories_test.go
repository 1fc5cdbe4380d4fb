package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// addCategory adds a category of total tickets at price to ev.
func addCategory(t *testing.T, s *store.Store, ev int64, name, price string, total int) int64 {
	t.Helper()
	p, err := money.Parse(price)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateCategory(context.Background(), ev, sale.CategoryPatch{Name: &name, Price: &p, Total: &total})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// defaultCategory is the category an event made by plain SQL got.
func defaultCategory(t *testing.T, s *store.Store, ev int64) int64 {
	t.Helper()
	e, err := s.Event(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Categories) == 0 {
		t.Fatalf("event %d has no category", ev)
	}
	return e.Categories[0].ID
}

func itemsRequest(ev int64, email string, items ...sale.Item) hold.Request {
	o := sale.Order{EventID: ev, Email: email, Items: items}
	for _, it := range items {
		o.Quantity += it.Quantity
	}
	return hold.Request{Order: o}
}

// checkCategories fails t unless, for ev and each of its categories,
// available + held + confirmed = total and 0 <= available, and every live
// booking's items add up to its quantity.
func checkCategories(t *testing.T, s *store.Store, ev int64) (eventAvailable int, categoryAvailable map[int64]int) {
	t.Helper()
	ctx := context.Background()
	var bad int
	err := s.DB().GetContext(ctx, &bad, `SELECT count(*) FROM bookings b
		WHERE b.event_id = $1 AND b.booking_status IN ('pending', 'confirmed')
		  AND b.quantity IS DISTINCT FROM (SELECT sum(i.quantity) FROM booking_items i WHERE i.booking_id = b.id)`, ev)
	if err != nil || bad != 0 {
		t.Fatalf("%d live bookings whose items do not add up to them (err %v)", bad, err)
	}
	rows, err := s.DB().QueryContext(ctx, `SELECT c.id, c.total_tickets, c.available_tickets,
		coalesce((SELECT sum(i.quantity) FROM booking_items i JOIN bookings b ON b.id = i.booking_id
			WHERE i.category_id = c.id AND b.booking_status IN ('pending', 'confirmed')), 0)
		FROM categories c WHERE c.event_id = $1 ORDER BY c.id`, ev)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	categoryAvailable = map[int64]int{}
	for rows.Next() {
		var id int64
		var total, available, live int
		if err := rows.Scan(&id, &total, &available, &live); err != nil {
			t.Fatal(err)
		}
		if available < 0 || available+live != total {
			t.Errorf("category %d: %d available + %d live of %d", id, available, live, total)
		}
		categoryAvailable[id] = available
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sl := readSale(t, s, ev, 0)
	if sl.available < 0 || sl.available+sl.live != sl.total {
		t.Errorf("event %d: %d available + %d live of %d", ev, sl.available, sl.live, sl.total)
	}
	return sl.available, categoryAvailable
}

// A crowd on two instances hammers three categories of one event whose
// categories add up to more than its capacity, with holds of one and two
// items, on both batch paths: no category and not the event is ever
// oversold, every hold is whole, and the crowd sells out what it asked for.
func TestACrowdOnSeveralCategoriesNeverOversells(t *testing.T) {
	forRedisUpAndDown(t, 0, func(t *testing.T, ins [2]instance) {
		for _, path := range batchPaths {
			t.Run(path.name, func(t *testing.T) {
				s := ins[0].store
				ev := newEvent(t, s, 60) // the default category follows: 60
				vip := addCategory(t, s, ev, "VIP", "100.00", 15)
				balcony := addCategory(t, s, ev, "Balcony", "30.00", 25)
				def := defaultCategory(t, s, ev)
				cats := []int64{def, vip, balcony}
				hammer(t, ins, 6, 6, func(in instance, g, round int) {
					reqs := make([]hold.Request, 4)
					for i := range reqs {
						n := g*100 + round*10 + i
						first := sale.Item{CategoryID: cats[n%3], Quantity: 1 + n%2}
						email := fmt.Sprintf("b%d@example.com", n)
						if n%4 == 0 {
							reqs[i] = itemsRequest(ev, email, first)
						} else {
							reqs[i] = itemsRequest(ev, email, first, sale.Item{CategoryID: cats[(n+1)%3], Quantity: 1})
						}
						if path.keys {
							reqs[i].Key = holdRequest(ev, email, 1, true, fmt.Sprintf("c-%s-%d", path.name, n)).Key
						}
					}
					defer in.lock(t, ev)()
					outs, err := in.store.CreateHolds(context.Background(), ev, reqs, time.Minute, renderHold)
					if err != nil {
						t.Errorf("batch: %v", err)
						return
					}
					for i, o := range outs {
						switch {
						case o.Err == nil:
							if len(o.Hold.Items) != len(reqs[i].Order.Items) {
								t.Errorf("request %d: %d items held of %d", i, len(o.Hold.Items), len(reqs[i].Order.Items))
							}
						case !errors.Is(o.Err, problem.SoldOut):
							t.Errorf("request %d: %v", i, o.Err)
						}
					}
				})
				available, byCat := checkCategories(t, s, ev)
				// 288 requests for far more than the stock: whatever is
				// left cannot serve the smallest request of any category.
				if available > 0 && byCat[def] > 0 && byCat[vip] > 0 && byCat[balcony] > 0 {
					t.Errorf("the crowd left %d of the event and %v of its categories", available, byCat)
				}
			})
		}
	})
}

// A hold of several items is all or nothing and names the short category;
// a request for a sold-out category does not stop the next in its batch.
func TestAHoldOfSeveralItemsIsAllOrNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	def := defaultCategory(t, s, ev)
	vip := addCategory(t, s, ev, "VIP", "50.00", 2)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{
		itemsRequest(ev, "a@example.com", sale.Item{CategoryID: def, Quantity: 3}, sale.Item{CategoryID: vip, Quantity: 3}),
		itemsRequest(ev, "b@example.com", sale.Item{CategoryID: vip, Quantity: 2}, sale.Item{CategoryID: def, Quantity: 1}),
		itemsRequest(ev, "c@example.com", sale.Item{CategoryID: vip, Quantity: 1}),
		itemsRequest(ev, "d@example.com", sale.Item{CategoryID: def, Quantity: 1}),
	}, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	if err := outs[0].Err; !errors.Is(err, problem.SoldOut) || !strings.Contains(err.Error(), fmt.Sprint(vip)) {
		t.Fatalf("3 VIP of 2: %v, want sold_out naming category %d", err, vip)
	}
	h := outs[1].Hold
	if outs[1].Err != nil || h.Quantity != 3 || len(h.Items) != 2 || h.TotalAmount.String() != "112.34" {
		t.Fatalf("2 VIP and 1 default: %+v, %v; want 3 tickets for 112.34 in 2 items", h, outs[1].Err)
	}
	if h.Items[1].CategoryID != vip || h.Items[1].Amount.String() != "100.00" || h.Items[0].Price.String() != "12.34" {
		t.Fatalf("items %+v, want in category order", h.Items)
	}
	if !errors.Is(outs[2].Err, problem.SoldOut) || outs[3].Err != nil {
		t.Fatalf("VIP sold out then default: %v, %v; want sold_out, a hold", outs[2].Err, outs[3].Err)
	}
	// Read back, the hold has its items.
	got, err := s.Hold(ctx, h.ID)
	if err != nil || len(got.Items) != 2 || got.Items[0] != h.Items[0] || got.Items[1] != h.Items[1] {
		t.Fatalf("read back: %+v, %v; want the items %+v", got.Items, err, h.Items)
	}
	// Released, every item comes back.
	if _, err := s.Release(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	available, byCat := checkCategories(t, s, ev)
	if available != 99 || byCat[vip] != 2 || byCat[def] != 99 {
		t.Fatalf("after the release: event %d, categories %v; want 99, VIP 2, default 99", available, byCat)
	}
}

// The per-buyer cap counts every item of a hold.
func TestTheCapCountsEveryItem(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	s.SetTicketCap(4)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	def := defaultCategory(t, s, ev)
	vip := addCategory(t, s, ev, "VIP", "50.00", 10)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{
		itemsRequest(ev, "a@example.com", sale.Item{CategoryID: def, Quantity: 3}, sale.Item{CategoryID: vip, Quantity: 2}),
		itemsRequest(ev, "b@example.com", sale.Item{CategoryID: def, Quantity: 2}, sale.Item{CategoryID: vip, Quantity: 2}),
		itemsRequest(ev, "B@example.com", sale.Item{CategoryID: vip, Quantity: 1}),
	}, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(outs[0].Err, sale.ErrLimitExceeded) || outs[1].Err != nil || !errors.Is(outs[2].Err, sale.ErrLimitExceeded) {
		t.Fatalf("5 over a cap of 4, 4, then 1 more: %v, %v, %v", outs[0].Err, outs[1].Err, outs[2].Err)
	}
}

// An event made by plain SQL takes the seed's body (its one category);
// with a second category the seed's body must name one.
func TestASeedMadeEventTakesTheSeedsBody(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	def := defaultCategory(t, s, ev)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{holdRequest(ev, "a@example.com", 2, false, "")}, time.Minute, noRender)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("seed's body: %v, %v", err, outs[0].Err)
	}
	if it := outs[0].Hold.Items; len(it) != 1 || it[0].CategoryID != def || it[0].Quantity != 2 {
		t.Fatalf("items %+v, want 2 of category %d", it, def)
	}
	// The seed's body on a sold-out event answers as it always did.
	outs, err = s.CreateHolds(ctx, ev, []hold.Request{holdRequest(ev, "b@example.com", 9, false, "")}, time.Minute, noRender)
	if err != nil || outs[0].Err != sale.ErrSoldOut {
		t.Fatalf("seed's body beyond the stock: %v, %v; want sale.ErrSoldOut itself", err, outs[0].Err)
	}
	addCategory(t, s, ev, "VIP", "50.00", 5)
	outs, err = s.CreateHolds(ctx, ev, []hold.Request{holdRequest(ev, "a@example.com", 1, false, "")}, time.Minute, noRender)
	if err != nil || !errors.Is(outs[0].Err, problem.CategoryRequired) {
		t.Fatalf("seed's body with two categories: %v, %v; want category_required", err, outs[0].Err)
	}
	// Another event's category is not this event's.
	other := newEvent(t, s, 10)
	outs, err = s.CreateHolds(ctx, ev, []hold.Request{itemsRequest(ev, "a@example.com", sale.Item{CategoryID: defaultCategory(t, s, other), Quantity: 1})}, time.Minute, noRender)
	if err != nil || !errors.Is(outs[0].Err, problem.NotFound) {
		t.Fatalf("another event's category: %v, %v; want not_found", err, outs[0].Err)
	}
	checkCategories(t, s, ev)
}

// A category's total never goes below what it has held and sold.
func TestACategoryTotalStaysAboveWhatIsHeld(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	vip := addCategory(t, s, ev, "VIP", "50.00", 5)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{itemsRequest(ev, "a@example.com", sale.Item{CategoryID: vip, Quantity: 3})}, time.Minute, noRender)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("%v, %v", err, outs[0].Err)
	}
	two, four := 2, 4
	if _, err := s.UpdateCategory(ctx, ev, vip, sale.CategoryPatch{Total: &two}); !errors.Is(err, sale.ErrTotalBelowHeld) {
		t.Fatalf("total 2 under 3 held: %v, want total_below_held", err)
	}
	c, err := s.UpdateCategory(ctx, ev, vip, sale.CategoryPatch{Total: &four})
	if err != nil || c.TotalTickets != 4 || c.AvailableTickets != 1 {
		t.Fatalf("total 4: %+v, %v; want 1 of 4 available", c, err)
	}
	if _, err := s.UpdateCategory(ctx, ev+1000000, vip, sale.CategoryPatch{Total: &four}); !errors.Is(err, sale.ErrEventNotFound) {
		t.Fatalf("another event: %v", err)
	}
	other := newEvent(t, s, 10)
	if _, err := s.UpdateCategory(ctx, other, vip, sale.CategoryPatch{Total: &four}); !errors.Is(err, sale.ErrCategoryMissing) {
		t.Fatalf("a category of another event: %v", err)
	}
	checkCategories(t, s, ev)
}

// A category id past int4 names no category. Sent as it was, it failed the
// call of the whole batch with an out-of-range error (a 500 for every
// request batched with it); it is answered as any unknown category, and
// the others of its batch are served. The same for best available seats.
func TestACategoryIDBeyondTheColumnIsUnknownAndHarmsNoOther(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	cat := defaultCategory(t, s, ev)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{
		itemsRequest(ev, "good@example.com", sale.Item{CategoryID: cat, Quantity: 1}),
		itemsRequest(ev, "huge@example.com", sale.Item{CategoryID: 1 << 31, Quantity: 1}),
	}, time.Minute, noRender)
	if err != nil {
		t.Fatalf("a batch with a category id past int4: %v", err)
	}
	if outs[0].Err != nil || !errors.Is(outs[1].Err, sale.ErrCategoryNotFound) {
		t.Fatalf("outcomes %v, %v; want held, %v", outs[0].Err, outs[1].Err, sale.ErrCategoryNotFound)
	}
	sev, _ := seatedEvent(t, s, 1, 4)
	outs, err = s.CreateHolds(ctx, sev, []hold.Request{bestRequest(sev, "huge@example.com", 1<<31, 1)}, time.Minute, noRender)
	if err != nil || !errors.Is(outs[0].Err, problem.NotFound) {
		t.Fatalf("best available of a category id past int4: %v, %v; want not_found", outs, err)
	}
}
