package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func TestQueueStockReadsWhatTheAdmissionStepNeeds(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 20)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.DB().ExecContext(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	insert := func(place string, qty int, expires string, created string) {
		t.Helper()
		exec(`INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at, queue_place, created_at)
			VALUES ($1, 'a@example.com', $2, 1, 'pending', now() + $3::interval, nullif($4, ''), now() + $5::interval)`, ev, qty, expires, place, created)
	}
	insert("p-live", 2, "10 minutes", "0 s")         // a live hold of a place
	insert("p-lapsed", 3, "-1 second", "0 s")        // lapsed, not swept: its 3 count back
	insert("", 1, "10 minutes", "0 s")               // a live hold without a queue
	insert("p-old", 1, "10 minutes", "-30 seconds")  // booked before the window: a step saw it then
	insert("p-early", 1, "10 minutes", "-5 seconds") // in the window
	insert("p-sold", 4, "10 minutes", "0 s")         // then confirmed
	exec(`UPDATE bookings SET booking_status = 'confirmed', confirmed_at = now() WHERE queue_place = 'p-sold'`)
	st, avg, err := s.QueueStock(context.Background(), ev, 10*time.Minute, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	// 20 - 2 - 3 - 1 - 1 - 1 - 4 = 8 left, and the lapsed 3 back: 11.
	if st.Available != 11 || st.Pending != 1 {
		t.Fatalf("available %d, pending %d; want 11 and 1 (there is a live pending hold)", st.Available, st.Pending)
	}
	slices.Sort(st.Took)
	if want := []string{"p-early", "p-lapsed", "p-live", "p-sold"}; !slices.Equal(st.Took, want) {
		t.Fatalf("took %v, want %v", st.Took, want)
	}
	if avg != 2 {
		t.Fatalf("average quantity %v, want 2", avg)
	}
	// The next reading, after a step applied this one, lists only what was
	// booked since a moment before it: not p-early again, but a new one.
	insert("p-new", 1, "10 minutes", "0 s")
	next, _, err := s.QueueStock(context.Background(), ev, 10*time.Minute, st.Horizon, false)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(next.Took, "p-early") || !slices.Contains(next.Took, "p-new") {
		t.Fatalf("took after a reading %v, want p-new and not p-early", next.Took)
	}
	if st.SoldOut() {
		t.Fatal("sold out with holds pending")
	}
	if _, _, err := s.QueueStock(context.Background(), ev+1000000, time.Minute, 0, false); !errors.Is(err, sale.ErrEventNotFound) {
		t.Fatalf("no such event: %v, want %v", err, sale.ErrEventNotFound)
	}
}

// A reading's horizon is no later than the start of any transaction then
// in progress, and no earlier than its window: a transaction left open
// holds it back that far and no further.
func TestQueueStockHorizon(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 20)
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var began int64
	if err := tx.GetContext(ctx, &began, `SELECT (extract(epoch FROM now()) * 1000000)::bigint`); err != nil {
		t.Fatal(err)
	}
	// The store's first reading asks the horizon, with the transaction
	// open.
	st, _, err := s.QueueStock(ctx, ev, time.Minute, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Horizon > began || st.Horizon > st.ReadAt {
		t.Fatalf("horizon %d, read at %d, with a transaction open since %d: want the horizon no later than either", st.Horizon, st.ReadAt, began)
	}
	// With a window of a second, 1.2 s later: the horizon stops at it.
	time.Sleep(1200 * time.Millisecond)
	st, _, err = s.QueueStock(ctx, ev, time.Second, st.Horizon, false)
	if err != nil {
		t.Fatal(err)
	}
	if floor := st.ReadAt - time.Second.Microseconds(); st.Horizon < floor || st.Horizon <= began {
		t.Fatalf("horizon %d, read at %d, transaction since %d: want the window's floor %d", st.Horizon, st.ReadAt, began, floor)
	}
}

// The admission step reads the stock every 150 ms on every instance, so
// its reading must cost what the holds since the last step cost, not what
// the sale has sold: on an event with 3,000 live holds made with passes a
// few seconds ago and ten just now, a reading after one at "now" reads a
// few index entries, not the 3,000 (it read them all twice: counting the
// live pending holds, and finding the recent places through an index
// without the time).
func TestQueueStockReadsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 1_000_000)
	for _, q := range []string{
		`INSERT INTO bookings (event_id, user_email, quantity, total_amount, expires_at, queue_place, created_at)
			SELECT $1, 'a' || g || '@example.com', 1, 1, now() + interval '10 minutes', 'old-' || g, now() - interval '5 seconds'
			FROM generate_series(1, 3000) g`,
		`INSERT INTO bookings (event_id, user_email, quantity, total_amount, expires_at, queue_place)
			SELECT $1, 'b' || g || '@example.com', 1, 1, now() + interval '10 minutes', 'new-' || g FROM generate_series(1, 10) g`,
		`ANALYZE bookings`,
	} {
		args := []any{ev}
		if strings.HasPrefix(q, "ANALYZE") {
			args = nil
		}
		if _, err := s.DB().ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	var now int64
	if err := s.DB().GetContext(ctx, &now, `SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint`); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := s.DB().GetContext(ctx, &raw, `EXPLAIN (ANALYZE, FORMAT JSON) `+store.QueueStockQuery, ev, 10.0, now, 1.0); err != nil {
		t.Fatal(err)
	}
	var plan []struct{ Plan planNode }
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	read := plan[0].Plan.bookingRows()
	if read > 100 {
		t.Fatalf("the reading read %.0f rows of bookings for 10 new ones; plan:\n%s", read, raw)
	}
	t.Logf("%.0f rows of bookings read", read)
}

// planNode is a node of EXPLAIN (ANALYZE, FORMAT JSON).
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// bookingRows is the rows the scans of bookings under n returned or
// filtered out.
func (n planNode) bookingRows() float64 {
	var sum float64
	if n.Relation == "bookings" {
		sum += (n.Rows + n.Removed) * max(1, n.Loops)
	}
	for _, c := range n.Plans {
		sum += c.bookingRows()
	}
	return sum
}
