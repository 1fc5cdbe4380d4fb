package schema_test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/schema"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApplyRunsEachMigrationOnceEvenWhenInstancesStartTogether(t *testing.T) {
	t.Parallel()
	db := open(t) // already migrated by testenv
	var wg sync.WaitGroup
	errs := make([]error, 8)
	applied := make([][]string, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = schema.Apply(context.Background(), db)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || len(applied[i]) != 0 {
			t.Fatalf("apply %d: applied %v, err %v; want nothing to do", i, applied[i], err)
		}
	}
	all, _ := schema.Migrations()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("schema_migrations has %d rows (err %v), want %d", n, err, len(all))
	}
}

func TestConcurrentFirstApply(t *testing.T) {
	t.Parallel()
	// A bare database, not yet migrated: several migrators race on it.
	url := testenv.DatabaseURL(t)
	db, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied, err := schema.Apply(context.Background(), db)
			if err != nil {
				t.Errorf("apply: %v", err)
			}
			mu.Lock()
			total += len(applied)
			mu.Unlock()
		}()
	}
	wg.Wait()
	all, _ := schema.Migrations()
	if total != len(all) {
		t.Fatalf("migrations applied %d times in all, want %d (each once)", total, len(all))
	}
}

// event inserts an event and returns its id.
func event(t *testing.T, db *sql.DB, total int, guard bool) int64 {
	t.Helper()
	var id int64
	err := db.QueryRow(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price, oversell_guard)
		VALUES ('e', now(), $1, $1, 10, $2) RETURNING id`, total, guard).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func stock(t *testing.T, db *sql.DB, id int64) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT available_tickets FROM events WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func booking(t *testing.T, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, ev int64, qty int, status string) (int64, error) {
	t.Helper()
	var id int64
	// A pending booking is a hold and needs an expiry (008).
	err := db.QueryRowContext(context.Background(), `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
		VALUES ($1, 'a@example.com', $2, 10 * $2, $3::text, CASE WHEN $3::text = 'pending' THEN now() + interval '1 hour' END)
		RETURNING id`, ev, qty, status).Scan(&id)
	return id, err
}

func code(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return string(pqErr.Code)
	}
	return ""
}

func TestStockTriggerTakesOnInsertAndGivesBackOnce(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	pending, err := booking(t, db, ev, 3, "pending")
	if err != nil {
		t.Fatal(err)
	}
	confirmed, err := booking(t, db, ev, 2, "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	if got := stock(t, db, ev); got != 5 {
		t.Fatalf("stock after inserts = %d, want 5", got)
	}
	steps := []struct {
		id     int64
		status string
		want   int
	}{
		{pending, "failed", 8},    // restored once
		{pending, "failed", 8},    // failed -> failed restores nothing
		{confirmed, "failed", 10}, // a cancelled confirmed booking gives back too
		{confirmed, "failed", 10},
	}
	for _, s := range steps {
		// A confirmed booking fails only as a cancellation (008).
		if _, err := db.Exec(`UPDATE bookings SET booking_status = $2,
			failure_reason = CASE WHEN booking_status = 'confirmed' THEN 'cancelled' ELSE failure_reason END
			WHERE id = $1`, s.id, s.status); err != nil {
			t.Fatalf("update %d to %s: %v", s.id, s.status, err)
		}
		if got := stock(t, db, ev); got != s.want {
			t.Fatalf("after %d -> %s: stock %d, want %d", s.id, s.status, got, s.want)
		}
	}
}

func TestSchemaRefusesIllegalBookings(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)

	if _, err := booking(t, db, ev, 1, "failed"); code(err) != "HF001" {
		t.Fatalf("insert as failed: err %v, want HF001", err)
	}
	if _, err := booking(t, db, ev, 1, "shipped"); code(err) != "23514" && code(err) != "HF001" {
		t.Fatalf("insert as shipped: err %v, want refused", err)
	}
	failed, err := booking(t, db, ev, 2, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE bookings SET booking_status = 'failed' WHERE id = $1`, failed); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"pending", "confirmed"} {
		_, err := db.Exec(`UPDATE bookings SET booking_status = $2 WHERE id = $1`, failed, to)
		if code(err) != "HF001" {
			t.Fatalf("failed -> %s: err %v, want HF001", to, err)
		}
	}
	for _, change := range []string{"user_email = 'x@example.com'", "total_amount = 0", "updated_at = now() + interval '1 day'"} {
		if _, err := db.Exec(`UPDATE bookings SET `+change+` WHERE id = $1`, failed); code(err) != "HF001" {
			t.Fatalf("failed booking, %s: err %v, want HF001", change, err)
		}
	}
	confirmed, err := booking(t, db, ev, 1, "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE bookings SET booking_status = 'pending' WHERE id = $1`, confirmed); code(err) != "HF001" {
		t.Fatalf("confirmed -> pending: err %v, want HF001", err)
	}
	if _, err := db.Exec(`UPDATE bookings SET quantity = 5 WHERE id = $1`, confirmed); code(err) != "HF001" {
		t.Fatalf("quantity change: err %v, want HF001", err)
	}
	if got := stock(t, db, ev); got != 9 {
		t.Fatalf("stock = %d, want 9 (only the confirmed ticket taken)", got)
	}
}

func TestOversellGuard(t *testing.T) {
	t.Parallel()
	db := open(t)
	guarded := event(t, db, 3, true)
	if _, err := booking(t, db, guarded, 4, "confirmed"); code(err) != "23514" {
		t.Fatalf("overselling a guarded event: err %v, want check_violation", err)
	}
	// A direct change of the stock is refused before these checks run
	// (TestSchemaRefusesStockChangesOutsideBookings); an insert reaches them.
	for _, avail := range []int{-1, 4} {
		_, err := db.Exec(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
			VALUES ('e', now(), 3, $1, 10)`, avail)
		if code(err) != "23514" {
			t.Fatalf("guarded event inserted with %d of 3 available: err %v, want check_violation", avail, err)
		}
	}
	open := event(t, db, 3, false)
	if _, err := booking(t, db, open, 4, "confirmed"); err != nil {
		t.Fatalf("an unguarded event must let the demo oversell: %v", err)
	}
	if got := stock(t, db, open); got != -1 {
		t.Fatalf("unguarded stock = %d, want -1", got)
	}
}

// A second instance starting while the first migrates must wait for it,
// even though its pool carries a lock_timeout meant for requests. It used to
// fail with "canceling statement due to lock timeout".
func TestApplyWaitsForAnotherMigratorDespiteTheLockTimeout(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	first, err := sql.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	conn, err := first.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `SELECT pg_advisory_lock(7020315001)`); err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(500*time.Millisecond, func() {
		_, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(7020315001)`)
	})
	defer release.Stop()

	second, err := sql.Open("postgres", url+"&lock_timeout=50&statement_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := schema.Apply(context.Background(), second); err != nil {
		t.Fatalf("the second migrator gave up instead of waiting: %v", err)
	}
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// The seed's plain INSERT INTO bookings makes a pending booking without an
// expiry: it could never be confirmed nor swept. Accepted before 008.
func TestSchemaRefusesAPendingBookingWithoutExpiry(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	_, err := db.Exec(`INSERT INTO bookings (event_id, user_email, quantity, total_amount) VALUES ($1, 'a@example.com', 1, 10)`, ev)
	if code(err) != "23514" {
		t.Fatalf("pending booking without expires_at: err %v, want check_violation", err)
	}
	id, err := booking(t, db, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE bookings SET expires_at = NULL WHERE id = $1`, id); code(err) != "23514" {
		t.Fatalf("expiry removed from a pending booking: err %v, want check_violation", err)
	}
	if _, err := booking(t, db, ev, 1, "confirmed"); err != nil {
		t.Fatalf("a confirmed booking needs no expiry: %v", err)
	}
	if got := stock(t, db, ev); got != 8 {
		t.Fatalf("stock = %d, want 8", got)
	}
}

// Each of these plain-SQL writes loses or invents stock, and each was
// accepted before 008.
func TestSchemaRefusesLosingStock(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	pending, err := booking(t, db, ev, 2, "pending")
	if err != nil {
		t.Fatal(err)
	}
	confirmed, err := booking(t, db, ev, 3, "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{pending, confirmed} {
		if _, err := db.Exec(`DELETE FROM bookings WHERE id = $1`, id); code(err) != "HF001" {
			t.Fatalf("delete of live booking %d: err %v, want HF001", id, err)
		}
	}
	// From 011 to 019 booking_items' foreign key refused a bare TRUNCATE
	// before the trigger (0A000); since 020 the trigger refuses it.
	if _, err := db.Exec(`TRUNCATE bookings`); code(err) != "HF001" && code(err) != "0A000" {
		t.Fatalf("truncate under live bookings: err %v, want HF001 or 0A000", err)
	}
	if _, err := db.Exec(`TRUNCATE bookings CASCADE`); code(err) != "HF001" {
		t.Fatalf("truncate cascade under live bookings: err %v, want HF001", err)
	}
	for _, reason := range []string{"NULL", "'released'", "'expired'"} {
		_, err := db.Exec(`UPDATE bookings SET booking_status = 'failed', failure_reason = `+reason+` WHERE id = $1`, confirmed)
		if code(err) != "HF001" {
			t.Fatalf("confirmed -> failed with reason %s: err %v, want HF001", reason, err)
		}
	}
	if got := stock(t, db, ev); got != 5 {
		t.Fatalf("stock = %d after refused writes, want 5", got)
	}
	// The allowed paths: a cancellation, a release, then the failed rows
	// may go.
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'cancelled' WHERE id = $1`, confirmed)
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, pending)
	exec(t, db, `DELETE FROM bookings WHERE event_id = $1`, ev)
	if got := stock(t, db, ev); got != 10 {
		t.Fatalf("stock = %d after the cancellation and release, want 10", got)
	}
}

func TestSchemaRefusesStockChangesOutsideBookings(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	if _, err := booking(t, db, ev, 4, "confirmed"); err != nil {
		t.Fatal(err)
	}
	for _, change := range []string{
		"available_tickets = total_tickets", // 4 tickets sold twice
		"available_tickets = available_tickets - 1",
		"total_tickets = total_tickets + 5", // stock unmoved
		"total_tickets = total_tickets + 5, available_tickets = available_tickets + 4",
	} {
		if _, err := db.Exec(`UPDATE events SET `+change+` WHERE id = $1`, ev); code(err) != "HF001" {
			t.Fatalf("%s: err %v, want HF001", change, err)
		}
	}
	// Also from inside a function: the depth that tells the stock trigger
	// apart is that of triggers, not of calls.
	_, err := db.Exec(`DO $$ BEGIN UPDATE events SET available_tickets = total_tickets WHERE id = ` +
		strconv.FormatInt(ev, 10) + `; END $$`)
	if code(err) != "HF001" {
		t.Fatalf("stock set from a DO block: err %v, want HF001", err)
	}
	if got := stock(t, db, ev); got != 6 {
		t.Fatalf("stock = %d, want 6", got)
	}
	// Allowed: a change of total moving the stock by the same amount, a
	// change of anything else, and the stock trigger's own moves.
	exec(t, db, `UPDATE events SET total_tickets = total_tickets + 5, available_tickets = available_tickets + 5 WHERE id = $1`, ev)
	exec(t, db, `UPDATE events SET total_tickets = total_tickets - 2, available_tickets = available_tickets - 2 WHERE id = $1`, ev)
	exec(t, db, `UPDATE events SET name = 'renamed' WHERE id = $1`, ev)
	if _, err := booking(t, db, ev, 1, "pending"); err != nil {
		t.Fatal(err)
	}
	if got := stock(t, db, ev); got != 8 {
		t.Fatalf("stock = %d, want 8 (13 total, 5 booked)", got)
	}
}

// A lapsed hold is over: moving its expiry later would bring it back after
// a buyer or the sweeper was told it expired. Accepted before 012.
func TestSchemaRefusesExtendingALapsedHold(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	id, err := booking(t, db, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	// A live hold's expiry may move either way.
	exec(t, db, `UPDATE bookings SET expires_at = now() + interval '2 hours' WHERE id = $1`, id)
	exec(t, db, `UPDATE bookings SET expires_at = now() - interval '1 second' WHERE id = $1`, id)
	// Lapsed: later is refused, earlier is still allowed.
	if _, err := db.Exec(`UPDATE bookings SET expires_at = now() + interval '1 hour' WHERE id = $1`, id); code(err) != "HF002" {
		t.Fatalf("lapsed hold extended: err %v, want HF002", err)
	}
	exec(t, db, `UPDATE bookings SET expires_at = now() - interval '1 minute' WHERE id = $1`, id)
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'expired' WHERE id = $1`, id)
	if got := stock(t, db, ev); got != 10 {
		t.Fatalf("stock = %d, want 10", got)
	}
}

// hold_batch_events runs with its settings (015, 022): enable_seqscan off
// (its reads must keep to the indexes as a sale's tables grow) and
// plan_cache_mode force_generic_plan (its statements planned once a
// session, not on every call). A CREATE OR REPLACE without them drops
// them silently.
func TestTheHoldFunctionKeepsItsSettings(t *testing.T) {
	t.Parallel()
	db := open(t)
	var config []string
	err := db.QueryRowContext(context.Background(),
		`SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE proname = 'hold_batch_events'`).Scan(pq.Array(&config))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"enable_seqscan=off", "plan_cache_mode=force_generic_plan"} {
		if !slices.Contains(config, want) {
			t.Errorf("hold_batch_events runs with %q, want %s among its settings", config, want)
		}
	}
}
