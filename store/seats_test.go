package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// seatRow is a row named name of seats numbered 1..n, all of category cat.
func seatRow(name string, n int, cat int64) sale.Row {
	row := sale.Row{Name: name}
	for k := 1; k <= n; k++ {
		row.Seats = append(row.Seats, sale.MapSeat{Number: k, CategoryID: cat})
	}
	return row
}

// seatMap is a map of one section "A" of rows "1".."rows" of perRow seats
// numbered from 1, all of category cat.
func seatMap(rows, perRow int, cat int64) sale.SeatMap {
	sec := sale.Section{Name: "A"}
	for r := 1; r <= rows; r++ {
		sec.Rows = append(sec.Rows, seatRow(fmt.Sprint(r), perRow, cat))
	}
	return sale.SeatMap{Sections: []sale.Section{sec}}
}

// mapEvent is an event of total tickets whose one category's seats are the
// map build makes of it.
func mapEvent(t *testing.T, s *store.Store, total int, build func(cat int64) sale.SeatMap) (ev, cat int64) {
	t.Helper()
	ev = newEvent(t, s, total)
	cat = defaultCategory(t, s, ev)
	if err := s.PutSeats(context.Background(), ev, build(cat)); err != nil {
		t.Fatal(err)
	}
	return ev, cat
}

// seatedEvent is an event of one category whose seats are rows x perRow.
func seatedEvent(t *testing.T, s *store.Store, rows, perRow int) (ev, cat int64) {
	t.Helper()
	return mapEvent(t, s, rows*perRow, func(cat int64) sale.SeatMap { return seatMap(rows, perRow, cat) })
}

func bestRequest(ev int64, email string, cat int64, qty int) hold.Request {
	return hold.Request{Order: sale.Order{EventID: ev, Email: email, Quantity: qty,
		Best: &sale.BestAvailable{CategoryID: cat, Quantity: qty}}}
}

func seatsRequest(ev int64, email string, seats ...string) hold.Request {
	return hold.Request{Order: sale.Order{EventID: ev, Email: email, Quantity: len(seats), Seats: seats}}
}

// seatStatuses is ev's seats as "id:status", in the map's order.
func seatStatuses(t *testing.T, s *store.Store, ev int64) map[string]sale.SeatStatus {
	t.Helper()
	seats, err := s.Seats(context.Background(), ev, "")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]sale.SeatStatus{}
	for _, st := range seats {
		m[st.ID] = st.Status
	}
	return m
}

func holdSeats(t *testing.T, s *store.Store, ev int64, reqs ...hold.Request) []hold.Outcome {
	t.Helper()
	outs, err := s.CreateHolds(context.Background(), ev, reqs, time.Minute, noRender)
	if err != nil {
		t.Fatal(err)
	}
	return outs
}

func TestSeatsBestAvailableSideBySide(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := seatedEvent(t, s, 2, 6)
	outs := holdSeats(t, s, ev,
		bestRequest(ev, "a@example.com", cat, 2),
		bestRequest(ev, "b@example.com", cat, 2),
		// Row 1 has two seats left: the four go to row 2.
		bestRequest(ev, "c@example.com", cat, 4),
		bestRequest(ev, "d@example.com", cat, 2),
		// Two seats are left, not three.
		bestRequest(ev, "e@example.com", cat, 3),
	)
	want := [][]string{{"A-1-1", "A-1-2"}, {"A-1-3", "A-1-4"}, {"A-2-1", "A-2-2", "A-2-3", "A-2-4"}, {"A-1-5", "A-1-6"}}
	for i, w := range want {
		o := outs[i]
		if o.Err != nil || !slices.Equal(o.Hold.Seats, w) {
			t.Fatalf("request %d: got %v %v, want %v", i, o.Hold.Seats, o.Err, w)
		}
		if o.Hold.Quantity != len(w) || len(o.Hold.Items) != 1 || o.Hold.Items[0].CategoryID != cat {
			t.Fatalf("request %d: hold %+v", i, o.Hold)
		}
	}
	if err := outs[4].Err; !errors.Is(err, problem.SoldOut) || !strings.Contains(err.Error(), fmt.Sprint(cat)) {
		t.Fatalf("three of two: %v", err)
	}
	got, err := s.Hold(context.Background(), outs[2].Hold.ID)
	if err != nil || !slices.Equal(got.Seats, want[2]) {
		t.Fatalf("read back: %v %v", got.Seats, err)
	}
	checkCategories(t, s, ev)

	// Singles left between taken seats: a pair takes two of them rather
	// than fail.
	ev, cat = seatedEvent(t, s, 2, 3)
	holdSeats(t, s, ev, seatsRequest(ev, "a@example.com", "A-1-2"), seatsRequest(ev, "b@example.com", "A-2-2"))
	outs = holdSeats(t, s, ev, bestRequest(ev, "c@example.com", cat, 2))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-1-1", "A-1-3"}) {
		t.Fatalf("pair of singles: %v %v", o.Hold.Seats, o.Err)
	}
}

func TestSeatsBestAvailableStrandsNoSingle(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	// Rows of 5: three seats in row 1 would leave a pair; four would leave
	// a single, so the four go to row 2 and row 1 keeps its five.
	ev, cat := seatedEvent(t, s, 2, 5)
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 4))
	if o := outs[0]; o.Err != nil || o.Hold.Seats[0] != "A-1-1" {
		// Both rows leave one: the first row is as good as any.
		t.Fatalf("first four: %v %v", o.Hold.Seats, o.Err)
	}
	ev, cat = seatedEvent(t, s, 2, 6)
	holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 1))
	outs = holdSeats(t, s, ev, bestRequest(ev, "b@example.com", cat, 4))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-2-1", "A-2-2", "A-2-3", "A-2-4"}) {
		t.Fatalf("four beside a run of five: %v %v", o.Hold.Seats, o.Err)
	}
}

func TestSeatsNamed(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev, _ := seatedEvent(t, s, 1, 4)
	outs := holdSeats(t, s, ev,
		seatsRequest(ev, "a@example.com", "A-1-2", "A-1-3"),
		seatsRequest(ev, "b@example.com", "A-1-3", "A-1-4"),
		seatsRequest(ev, "c@example.com", "A-1-9"),
	)
	if outs[0].Err != nil || !slices.Equal(outs[0].Hold.Seats, []string{"A-1-2", "A-1-3"}) {
		t.Fatalf("first: %v %v", outs[0].Hold.Seats, outs[0].Err)
	}
	if err := outs[1].Err; !errors.Is(err, problem.SeatTaken) || !strings.Contains(err.Error(), "A-1-3") || strings.Contains(err.Error(), "A-1-4") {
		t.Fatalf("second: %v", err)
	}
	if err := outs[2].Err; !errors.Is(err, problem.Invalid) || !strings.Contains(err.Error(), "A-1-9") {
		t.Fatalf("third: %v", err)
	}
	st := seatStatuses(t, s, ev)
	if st["A-1-2"] != sale.SeatHeld || st["A-1-4"] != sale.SeatAvailable {
		t.Fatalf("statuses %v", st)
	}
	// Released: its seats come back, and the hold still names them.
	h, err := s.Release(ctx, outs[0].Hold.ID)
	if err != nil || !slices.Equal(h.Seats, []string{"A-1-2", "A-1-3"}) {
		t.Fatalf("release: %v %v", h.Seats, err)
	}
	if st := seatStatuses(t, s, ev); st["A-1-2"] != sale.SeatAvailable {
		t.Fatalf("after release %v", st)
	}
	outs = holdSeats(t, s, ev, seatsRequest(ev, "b@example.com", "A-1-3", "A-1-4"))
	if outs[0].Err != nil {
		t.Fatal(outs[0].Err)
	}
	if _, err := s.Confirm(ctx, outs[0].Hold.ID, nil, noRender); err != nil {
		t.Fatal(err)
	}
	if st := seatStatuses(t, s, ev); st["A-1-4"] != sale.SeatSold {
		t.Fatalf("after confirm %v", st)
	}
	// A lapsed hold's seats go to the next buyer who asks for them.
	outs = holdSeats(t, s, ev, seatsRequest(ev, "c@example.com", "A-1-1"))
	lapse(t, s, outs[0].Hold.ID)
	outs = holdSeats(t, s, ev, seatsRequest(ev, "d@example.com", "A-1-1"))
	if outs[0].Err != nil {
		t.Fatalf("seat of a lapsed hold: %v", outs[0].Err)
	}
	checkCategories(t, s, ev)
	audit(t, s, ev)
}

func TestSeatsRefusals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev, cat := seatedEvent(t, s, 1, 4)
	// The seed's body on a seated event: told to name seats, alone or in a
	// batch with seat requests.
	outs := holdSeats(t, s, ev, request(ev, "a@example.com", 1))
	if !errors.Is(outs[0].Err, sale.ErrSeatsRequired) {
		t.Fatalf("quantity alone: %v", outs[0].Err)
	}
	outs = holdSeats(t, s, ev, request(ev, "a@example.com", 1), bestRequest(ev, "b@example.com", cat, 1))
	if !errors.Is(outs[0].Err, sale.ErrSeatsRequired) || outs[1].Err != nil {
		t.Fatalf("mixed batch: %v %v", outs[0].Err, outs[1].Err)
	}
	// The map is fixed while anything is held.
	if err := s.PutSeats(ctx, ev, seatMap(1, 2, cat)); !errors.Is(err, sale.ErrSeatMapInUse) {
		t.Fatalf("put while held: %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, `DELETE FROM seats WHERE event_id = $1`, ev); err == nil {
		t.Fatal("the database let a held event's map be deleted")
	}
	// The database refuses a second live booking of one seat.
	_, err := s.DB().ExecContext(ctx, `INSERT INTO booking_seats (booking_id, event_id, seat_id, category_id)
		SELECT b.id, b.event_id, 'A-1-1', $2 FROM bookings b WHERE b.event_id = $1 AND b.booking_status = 'pending'`, ev, cat)
	if err == nil {
		t.Fatal("the database let a seat have two live bookings")
	}
	// A seated category's total is its seats.
	total := 9
	if _, err := s.UpdateCategory(ctx, ev, cat, sale.CategoryPatch{Total: &total}); !errors.Is(err, sale.ErrSeatedTotal) {
		t.Fatalf("a seated category's total changed: %v", err)
	}
	// A best available of a category without seats.
	other := addCategory(t, s, ev, "Standing", "5.00", 10)
	outs = holdSeats(t, s, ev, bestRequest(ev, "c@example.com", other, 1))
	if !errors.Is(outs[0].Err, problem.Invalid) {
		t.Fatalf("best of an unseated category: %v", outs[0].Err)
	}
	// Its items still sell beside the seats.
	outs = holdSeats(t, s, ev, itemsRequest(ev, "c@example.com", sale.Item{CategoryID: other, Quantity: 2}))
	if outs[0].Err != nil {
		t.Fatalf("standing beside seats: %v", outs[0].Err)
	}
}

// TestSeatsHammer has many buyers race for a small venue, best available
// and named seats at once, through the batcher's path and alone: every
// seat is held at most once, every hold has exactly its seats, the venue
// sells out, and releases and expiries give seats back once.
func TestSeatsHammer(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const rows, perRow = 10, 12
	ev, cat := seatedEvent(t, s, rows, perRow)
	var mu sync.Mutex
	var holds []hold.Hold
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				email := fmt.Sprintf("b%d-%d@example.com", g, i)
				var reqs []hold.Request
				for k := 0; k < 1+i%3; k++ {
					if (g+k)%4 == 0 {
						reqs = append(reqs, seatsRequest(ev, email, fmt.Sprintf("A-%d-%d", 1+(i+k)%rows, 1+g%perRow)))
					} else {
						reqs = append(reqs, bestRequest(ev, email, cat, 2+(g+i+k)%3))
					}
				}
				outs, err := s.CreateHolds(ctx, ev, reqs, time.Minute, noRender)
				if err != nil {
					t.Error(err)
					return
				}
				for _, o := range outs {
					if o.Err == nil {
						mu.Lock()
						holds = append(holds, o.Hold)
						mu.Unlock()
						if i%7 == 0 {
							if _, err := s.Release(ctx, o.Hold.ID); err != nil {
								t.Error(err)
							}
						}
					} else if !errors.Is(o.Err, problem.SoldOut) && !errors.Is(o.Err, problem.SeatTaken) {
						t.Error(o.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	checkSeats(t, s, ev)
	checkCategories(t, s, ev)
	audit(t, s, ev)
	st := seatStatuses(t, s, ev)
	free := 0
	for _, v := range st {
		if v == sale.SeatAvailable {
			free++
		}
	}
	if free > 1 {
		// Demand far exceeds the venue: all but a single seat (no buyer
		// asks for one) goes.
		t.Errorf("%d seats still available after the rush", free)
	}
}

// checkSeats fails t unless every live seat booking is of a live booking,
// no seat has two, and every live booking of ev has as many seats as
// tickets.
func checkSeats(t *testing.T, s *store.Store, ev int64) {
	t.Helper()
	ctx := context.Background()
	var bad int
	err := s.DB().GetContext(ctx, &bad, `SELECT
		(SELECT count(*) FROM (SELECT seat_id FROM booking_seats WHERE event_id = $1 AND live GROUP BY seat_id HAVING count(*) > 1) d)
		+ (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
		   WHERE bs.event_id = $1 AND bs.live <> (b.booking_status IN ('pending', 'confirmed')))
		+ (SELECT count(*) FROM bookings b WHERE b.event_id = $1 AND b.booking_status IN ('pending', 'confirmed')
		   AND b.quantity <> (SELECT count(*) FROM booking_seats bs WHERE bs.booking_id = b.id AND bs.live))`, ev)
	if err != nil || bad != 0 {
		t.Fatalf("%d seat violations (err %v)", bad, err)
	}
}

// auditSays fails t unless the audit of ev says want.
func auditSays(t *testing.T, s *store.Store, ev int64, want string) {
	t.Helper()
	a, err := s.Audit(context.Background(), []int64{ev}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := a[0].Summary(); !strings.Contains(got, want) {
		t.Errorf("audit says %q, want it to say %q", got, want)
	}
}

// TestSeatsAudit breaks a seated booking behind the triggers' back and
// sees the audit report it.
func TestSeatsAudit(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := seatedEvent(t, s, 1, 4)
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 2))
	audit(t, s, ev)
	says := func(want string) { t.Helper(); auditSays(t, s, ev, want) }
	// A seat given back while its hold is pending.
	corrupt(t, s, `UPDATE booking_seats SET live = false WHERE seat_id = 'A-1-1' AND event_id = $1`, ev)
	says("1 live bookings whose seats do not match their seated tickets")
	says("1 seats whose free or taken mark (seat_blocks) disagrees with their bookings")
	// A seat the map does not have, taken live.
	corrupt(t, s, `INSERT INTO booking_seats (booking_id, event_id, seat_id, category_id)
		SELECT b.id, b.event_id, 'A-9-9', $2 FROM bookings b WHERE b.hold_id = $1`, outs[0].Hold.ID, cat)
	says("1 seats taken that the map does not have, or not in the category booked")
	// A released hold whose seats stay taken.
	corrupt(t, s, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE hold_id = $1`, outs[0].Hold.ID)
	says("seats still taken by bookings that failed")
}

// A ticket of one seated category on a seat of another: the audit counted
// a booking's seats against all its seated tickets together, and matched
// a seat by its id alone, so a Stalls ticket on a Balcony seat (the
// Balcony's stock then one above its free seats) passed.
func TestTheAuditSeesATicketOnASeatOfAnotherCategory(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 100)
	stalls := defaultCategory(t, s, ev)
	balcony := addCategory(t, s, ev, "Balcony", "30.00", 2)
	m := seatMap(1, 2, stalls)
	m.Sections[0].Rows = append(m.Sections[0].Rows, sale.Row{Name: "2", Seats: []sale.MapSeat{{Number: 1, CategoryID: balcony}, {Number: 2, CategoryID: balcony}}})
	if err := s.PutSeats(ctx, ev, m); err != nil {
		t.Fatal(err)
	}
	holdSeats(t, s, ev, seatsRequest(ev, "a@example.com", "A-1-1"))
	audit(t, s, ev)
	says := func(want string) { t.Helper(); auditSays(t, s, ev, want) }
	// The seat moved to a Balcony seat, booked as Balcony, the marks
	// made to agree: the Stalls ticket has no Stalls seat.
	corrupt(t, s, `UPDATE booking_seats SET seat_id = 'A-2-1', category_id = $2 WHERE event_id = $1 AND seat_id = 'A-1-1' AND live`, ev, balcony)
	corrupt(t, s, `SELECT seat_blocks_set(ARRAY[$1::int], ARRAY['A-1-1'], '1'), seat_blocks_set(ARRAY[$1::int], ARRAY['A-2-1'], '0')`, ev)
	says("1 live bookings whose seats do not match their seated tickets")
	// Booked as Stalls, on the Balcony seat.
	corrupt(t, s, `UPDATE booking_seats SET category_id = $2 WHERE event_id = $1 AND seat_id = 'A-2-1' AND live`, ev, stalls)
	says("1 seats taken that the map does not have, or not in the category booked")
}

// TestSeatsBackOnceOnCancel cancels a confirmed seated booking: its seats
// are back on sale once, and the booking still names them.
func TestSeatsBackOnceOnCancel(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev, cat := seatedEvent(t, s, 1, 3)
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 3))
	if _, err := s.Confirm(ctx, outs[0].Hold.ID, nil, noRender); err != nil {
		t.Fatal(err)
	}
	h, err := s.Cancel(ctx, outs[0].Hold.ID)
	if err != nil || h.Status != hold.StatusCancelled || len(h.Seats) != 3 {
		t.Fatalf("cancel: %+v %v", h, err)
	}
	if _, err := s.Cancel(ctx, outs[0].Hold.ID); err != nil {
		t.Fatalf("cancel again: %v", err)
	}
	for id, st := range seatStatuses(t, s, ev) {
		if st != sale.SeatAvailable {
			t.Errorf("seat %s is %s after the cancel", id, st)
		}
	}
	outs = holdSeats(t, s, ev, bestRequest(ev, "b@example.com", cat, 3))
	if outs[0].Err != nil {
		t.Fatalf("the cancelled seats do not sell again: %v", outs[0].Err)
	}
	checkSeats(t, s, ev)
	checkCategories(t, s, ev)
	audit(t, s, ev)
}

// TestSeatsHammerWithSweeper takes short seated holds while the sweeper
// expires them: seats come back once, none is held twice, and the blocks
// best available reads agree with the bookings.
func TestSeatsHammerWithSweeper(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ev, cat := seatedEvent(t, s, 6, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, err := s.SweepExpired(ctx, 50); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				reqs := []hold.Request{
					bestRequest(ev, fmt.Sprintf("s%d-%d@example.com", g, i), cat, 2+i%3),
					seatsRequest(ev, fmt.Sprintf("n%d-%d@example.com", g, i), fmt.Sprintf("A-%d-%d", 1+i%6, 1+g)),
				}
				outs, err := s.CreateHolds(context.Background(), ev, reqs, time.Duration(20+i%3*10)*time.Millisecond, noRender)
				if err != nil {
					t.Error(err)
					return
				}
				for _, o := range outs {
					if o.Err != nil && !errors.Is(o.Err, problem.SoldOut) && !errors.Is(o.Err, problem.SeatTaken) {
						t.Error(o.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-done
	time.Sleep(50 * time.Millisecond)
	if _, err := s.SweepExpired(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	checkSeats(t, s, ev)
	checkCategories(t, s, ev)
	audit(t, s, ev)
	for id, st := range seatStatuses(t, s, ev) {
		if st != sale.SeatAvailable {
			t.Errorf("seat %s is %s after every hold expired", id, st)
		}
	}
}

// TestSeatsMarksRepaired marks a booked seat free behind the triggers'
// back: the next best-available pick meets the unique index, the store
// rebuilds the event's blocks and the pick goes to a free seat.
func TestSeatsMarksRepaired(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := seatedEvent(t, s, 1, 4)
	holdSeats(t, s, ev, seatsRequest(ev, "a@example.com", "A-1-1", "A-1-2"))
	corrupt(t, s, `UPDATE seat_blocks SET free = '1111' WHERE event_id = $1`, ev)
	outs := holdSeats(t, s, ev, bestRequest(ev, "b@example.com", cat, 2))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-1-3", "A-1-4"}) {
		t.Fatalf("after the repair: %v %v", o.Hold.Seats, o.Err)
	}
	checkSeats(t, s, ev)
	audit(t, s, ev)
}

// TestSeatsBeyondTheWindow picks where hold_seats reads only the front of
// a lane (schema/016: the open blocks before a few times the batch's seats
// are free): a pair whose first fitting run is past the front, a named
// seat past it, and picks made before the rest is read keep their marks.
func TestSeatsBeyondTheWindow(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev, cat := seatedEvent(t, s, 40, 10)
	// Rows 1 to 30 keep only single seats between taken ones: 150 free.
	var reqs []hold.Request
	for r := 1; r <= 30; r++ {
		var ids []string
		for n := 2; n <= 10; n += 2 {
			ids = append(ids, fmt.Sprintf("A-%d-%d", r, n))
		}
		reqs = append(reqs, seatsRequest(ev, fmt.Sprintf("r%d@example.com", r), ids...))
	}
	for i, o := range holdSeats(t, s, ev, reqs...) {
		if o.Err != nil {
			t.Fatalf("row %d: %v", i+1, o.Err)
		}
	}
	outs := holdSeats(t, s, ev, bestRequest(ev, "a@example.com", cat, 2))
	if o := outs[0]; o.Err != nil || !slices.Equal(o.Hold.Seats, []string{"A-31-1", "A-31-2"}) {
		t.Fatalf("a pair past 30 rows of singles: %v %v, want A-31-1 A-31-2", o.Hold.Seats, o.Err)
	}
	// A pick made in the front, then a seat named past it, then a pick.
	outs = holdSeats(t, s, ev,
		bestRequest(ev, "b@example.com", cat, 2),
		seatsRequest(ev, "c@example.com", "A-40-5"),
		bestRequest(ev, "d@example.com", cat, 2))
	want := [][]string{{"A-31-3", "A-31-4"}, {"A-40-5"}, {"A-31-5", "A-31-6"}}
	for i, w := range want {
		if o := outs[i]; o.Err != nil || !slices.Equal(o.Hold.Seats, w) {
			t.Fatalf("request %d: %v %v, want %v", i, o.Hold.Seats, o.Err, w)
		}
	}
	outs = holdSeats(t, s, ev, seatsRequest(ev, "e@example.com", "A-31-3", "A-40-5"))
	if err := outs[0].Err; !errors.Is(err, problem.SeatTaken) {
		t.Fatalf("seats taken in the front and past it: %v", err)
	}
	audit(t, s, ev)
	checkCategories(t, s, ev)
}
