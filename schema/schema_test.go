package schema_test

import (
	"context"
	"database/sql"
	"errors"
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

func booking(t *testing.T, db *sql.DB, ev int64, qty int, status string) (int64, error) {
	t.Helper()
	var id int64
	err := db.QueryRow(`INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
		VALUES ($1, 'a@example.com', $2, 10 * $2, $3) RETURNING id`, ev, qty, status).Scan(&id)
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
		if _, err := db.Exec(`UPDATE bookings SET booking_status = $2 WHERE id = $1`, s.id, s.status); err != nil {
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
	if _, err := db.Exec(`UPDATE events SET available_tickets = -1 WHERE id = $1`, guarded); code(err) != "23514" {
		t.Fatalf("negative stock on a guarded event: err %v, want check_violation", err)
	}
	if _, err := db.Exec(`UPDATE events SET available_tickets = 4 WHERE id = $1`, guarded); code(err) != "23514" {
		t.Fatalf("stock above total: err %v, want check_violation", err)
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
