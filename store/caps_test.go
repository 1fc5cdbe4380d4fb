package store_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// taker takes tickets for orders, all of one event, on one path, and returns
// each order's own error.
type taker func(t *testing.T, orders ...sale.Order) []error

// forEveryPath runs test on the three ways the store takes tickets under the
// event row: a batch in one call of hold_batch, a batch in a transaction
// (the path of batches with idempotency keys), and /book/safe's BookLocked,
// one order after another.
func forEveryPath(t *testing.T, test func(t *testing.T, s *store.Store, take taker)) {
	t.Parallel()
	batch := func(s *store.Store) taker {
		return func(t *testing.T, orders ...sale.Order) []error {
			t.Helper()
			reqs := make([]hold.Request, len(orders))
			for i, o := range orders {
				reqs[i] = hold.Request{Order: o}
			}
			outs, err := s.CreateHolds(context.Background(), orders[0].EventID, reqs, time.Minute, noRender)
			if err != nil {
				t.Fatalf("the batch failed as a whole: %v", err)
			}
			errs := make([]error, len(outs))
			for i, o := range outs {
				errs[i] = o.Err
			}
			return errs
		}
	}
	book := func(s *store.Store) taker {
		return func(t *testing.T, orders ...sale.Order) []error {
			t.Helper()
			errs := make([]error, len(orders))
			for i, o := range orders {
				out, err := s.BookLocked(context.Background(), o, 0, nil, nil)
				if err != nil {
					t.Fatalf("BookLocked: %v", err)
				}
				errs[i] = out.Err
			}
			return errs
		}
	}
	for _, p := range []struct {
		name string
		take func(*store.Store) taker
		inTx bool
	}{{"one call", batch, false}, {"transaction", batch, true}, {"book safe", book, false}} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			if p.inTx {
				s.UseTxForAllBatches()
			}
			test(t, s, p.take(s))
		})
	}
}

// granted counts the orders that got their tickets, failing on any error
// but want.
func granted(t *testing.T, errs []error, want error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		switch {
		case err == nil:
			n++
		case !errors.Is(err, want):
			t.Fatalf("got %v, want %v or success", err, want)
		}
	}
	return n
}

// The NFC and NFD spellings of é@example.com got 10 tickets each under a cap
// of 10: the database compared lower(user_email), which knows nothing of
// normalisation.
func TestEverySpellingOfOneBuyerSharesOneCap(t *testing.T) {
	forEveryPath(t, func(t *testing.T, s *store.Store, take taker) {
		s.SetTicketCap(10)
		ev := newEvent(t, s, 100)
		spellings := []string{"\u00e9@example.com", "e\u0301@example.com", "\u00c9@example.com", "E\u0301@EXAMPLE.COM"}
		var orders []sale.Order
		for i := 0; i < 20; i++ {
			orders = append(orders, sale.Order{EventID: ev, Email: spellings[i%len(spellings)], Quantity: 1})
		}
		if got := granted(t, take(t, orders...), sale.ErrLimitExceeded); got != 10 {
			t.Fatalf("one buyer under %d spellings got %d tickets with a cap of 10", len(spellings), got)
		}
		audit(t, s, ev)
	})
}

// A booking inserted with plain SQL, without a buyer key (the seed's
// INSERT), still counts against its buyer.
func TestABookingInsertedByPlainSQLCountsAgainstItsBuyer(t *testing.T) {
	forEveryPath(t, func(t *testing.T, s *store.Store, take taker) {
		s.SetTicketCap(3)
		ev := newEvent(t, s, 100)
		_, err := s.DB().ExecContext(context.Background(), `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
			VALUES ($1, 'Ann@Example.com', 2, 24.68, 'confirmed')`, ev)
		if err != nil {
			t.Fatal(err)
		}
		errs := take(t, sale.Order{EventID: ev, Email: "ann@example.com", Quantity: 2})
		if !errors.Is(errs[0], sale.ErrLimitExceeded) {
			t.Fatalf("2 more for a buyer with 2 of a cap of 3: %v, want limit_exceeded", errs[0])
		}
	})
}

var (
	clientA = netip.MustParseAddr("192.0.2.1")
	clientB = netip.MustParseAddr("2001:db8::1")
)

// One address with many emails took a whole event. The per-client cap
// counts the address's pending tickets, whatever the emails; another
// address has its own count; a request whose address is unknown is not
// capped by it.
func TestTheClientCapCountsOneAddressAcrossEmails(t *testing.T) {
	forBothBatchPaths(t, func(t *testing.T, s *store.Store) {
		take := func(t *testing.T, orders ...sale.Order) []error {
			t.Helper()
			reqs := make([]hold.Request, len(orders))
			for i, o := range orders {
				reqs[i] = hold.Request{Order: o}
			}
			outs, err := s.CreateHolds(context.Background(), orders[0].EventID, reqs, time.Minute, noRender)
			if err != nil {
				t.Fatalf("the batch failed as a whole: %v", err)
			}
			errs := make([]error, len(outs))
			for i, o := range outs {
				errs[i] = o.Err
			}
			return errs
		}
		s.SetClientCap(5)
		ev := newEvent(t, s, 100)
		var orders []sale.Order
		for i := 0; i < 8; i++ {
			email := string(rune('a'+i)) + "@example.com"
			orders = append(orders, sale.Order{EventID: ev, Email: email, Quantity: 1, Client: clientA})
		}
		if got := granted(t, take(t, orders...), sale.ErrClientLimitExceeded); got != 5 {
			t.Fatalf("one address with 8 emails got %d tickets with a cap of 5", got)
		}
		mapped := netip.AddrFrom16(clientA.As16()) // ::ffff:192.0.2.1 is the same address
		errs := take(t, sale.Order{EventID: ev, Email: "z@example.com", Quantity: 1, Client: mapped},
			sale.Order{EventID: ev, Email: "z@example.com", Quantity: 5, Client: clientB},
			sale.Order{EventID: ev, Email: "y@example.com", Quantity: 6})
		if !errors.Is(errs[0], sale.ErrClientLimitExceeded) || errs[1] != nil || errs[2] != nil {
			t.Fatalf("got %v; want the same address refused, another and an unknown one served", errs)
		}
		audit(t, s, ev)
	})
}

// The client cap is on what an address holds at once: a confirmed booking
// no longer counts, and a lapsed hold is expired before a request is
// refused for it.
func TestTheClientCapCountsPendingHoldsOnly(t *testing.T) {
	t.Parallel()
	for _, inTx := range []bool{false, true} {
		s := newStore(t)
		if inTx {
			s.UseTxForAllBatches()
		}
		s.SetClientCap(4)
		ctx := context.Background()
		ev := newEvent(t, s, 100)
		take := func(email string, qty int) hold.Outcome {
			t.Helper()
			outs, err := s.CreateHolds(ctx, ev, []hold.Request{{Order: sale.Order{EventID: ev, Email: email, Quantity: qty, Client: clientA}}}, time.Minute, noRender)
			if err != nil {
				t.Fatal(err)
			}
			return outs[0]
		}
		first := take("a@example.com", 4)
		if first.Err != nil {
			t.Fatal(first.Err)
		}
		if out := take("b@example.com", 1); !errors.Is(out.Err, sale.ErrClientLimitExceeded) {
			t.Fatalf("inTx %v: over the cap: %v", inTx, out.Err)
		}
		if out, err := s.Confirm(ctx, first.Hold.ID, nil, nil); err != nil || out.Err != nil {
			t.Fatalf("confirm: %v %v", err, out.Err)
		}
		second := take("b@example.com", 4)
		if second.Err != nil {
			t.Fatalf("inTx %v: after a confirm: %v", inTx, second.Err)
		}
		lapse(t, s, second.Hold.ID)
		if out := take("c@example.com", 4); out.Err != nil {
			t.Fatalf("inTx %v: with the address's holds lapsed: %v", inTx, out.Err)
		}
		audit(t, s, ev)
	}
}

// /book/safe makes confirmed bookings, which the client cap does not count,
// but what the address holds pending does count against a booking: it is a
// hold confirmed at once. Its lapsed holds are expired first.
func TestBookSafeCountsTheAddressesHolds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	s.SetClientCap(5)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	outs, err := s.CreateHolds(ctx, ev, []hold.Request{{Order: sale.Order{EventID: ev, Email: "a@example.com", Quantity: 4, Client: clientA}}}, time.Minute, noRender)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("hold: %v %v", err, outs)
	}
	book := func(qty int) error {
		t.Helper()
		out, err := s.BookLocked(ctx, sale.Order{EventID: ev, Email: "b@example.com", Quantity: qty, Client: clientA}, 0, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out.Err
	}
	if err := book(2); !errors.Is(err, sale.ErrClientLimitExceeded) {
		t.Fatalf("4 held and 2 booked under a cap of 5: %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := book(1); err != nil {
			t.Fatalf("4 held and 1 booked under a cap of 5, booking %d: %v", i, err)
		}
	}
	lapse(t, s, outs[0].Hold.ID)
	if err := book(5); err != nil {
		t.Fatalf("with the address's hold lapsed: %v", err)
	}
	audit(t, s, ev)
}

// /book/safe never expired lapsed holds: a lapsed hold kept its stock, and
// counted against its buyer's cap, until the sweeper came.
func TestBookSafeExpiresLapsedHoldsFirst(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	counted := &tally{}
	s.SetCounters(counted)
	s.SetTicketCap(2)
	ctx := context.Background()

	ev := newEvent(t, s, 2)
	lapse(t, s, takeHold(t, s, ev, 2, time.Minute).ID)
	out, err := s.BookLocked(ctx, sale.Order{EventID: ev, Email: "b@example.com", Quantity: 2}, 0, nil, nil)
	if err != nil || out.Err != nil {
		t.Fatalf("the whole stock in a lapsed hold: %v, %v; want booked", err, out.Err)
	}
	audit(t, s, ev)

	ev = newEvent(t, s, 100)
	lapse(t, s, takeHold(t, s, ev, 2, time.Minute).ID)
	out, err = s.BookLocked(ctx, sale.Order{EventID: ev, Email: "A@example.com", Quantity: 2}, 0, nil, nil)
	if err != nil || out.Err != nil {
		t.Fatalf("the buyer's cap in a lapsed hold: %v, %v; want booked", err, out.Err)
	}
	if counted.expired != 2 {
		t.Fatalf("counted %d holds expired, want 2", counted.expired)
	}
	audit(t, s, ev)
}
