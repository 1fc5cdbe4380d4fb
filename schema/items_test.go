package schema_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/lib/pq"
)

// bookedWith starts a statement that makes a pending booking of one ticket
// of event $1 (its id in b) for the rest of the statement to add items to.
const bookedWith = `WITH b AS (INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
	VALUES ($1, 'a@example.com', 1, 10, 'pending', now() + interval '1 hour') RETURNING id) `

// orphans counts booking items whose booking or category is missing and
// bookings whose event is.
func orphans(t *testing.T, q interface {
	QueryRow(string, ...any) *sql.Row
}) int {
	t.Helper()
	var n int
	if err := q.QueryRow(`SELECT
		(SELECT count(*) FROM booking_items i
		 WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = i.booking_id)
		    OR NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = i.category_id))
		+ (SELECT count(*) FROM bookings b WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = b.event_id))`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Since 020 neither booking_items nor bookings has a foreign key: the
// statement triggers that take their stock, and the triggers beside them,
// do what the keys did. Each case is refused, and goes through (leaving an
// item of no booking or no category, or a booking of no event) once the
// trigger that refuses it is disabled, so it is that trigger, and no key,
// that keeps the rule.
func TestItemsKeepTheirBookingAndCategoryWithoutForeignKeys(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	live, err := bookWithItem(t, db, ev, 2, "pending", cat, 2)
	if err != nil {
		t.Fatal(err)
	}
	// A failed booking with its item: the one a delete or a TRUNCATE may
	// take.
	gone, err := bookWithItem(t, db, ev, 1, "pending", cat, 1)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, gone)
	// An event with a booking of no items.
	other := event(t, db, 10, true)
	if _, err := booking(t, db, other, 1, "confirmed"); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		table   string // the table and trigger that refuse it
		trigger string
		sql     string
		args    []any
	}{
		// Items of a booking made in the same statement, as an item must be
		// (029): so the refusal is for the missing booking or category.
		{"an item of no booking, beside a good one", "booking_items", "booking_items_take_stock",
			bookedWith + `INSERT INTO booking_items (booking_id, category_id, quantity, price)
				SELECT id, $2::int, 1, 10 FROM b UNION ALL SELECT 2147483647, $2::int, 1, 10`,
			[]any{ev, cat}},
		{"an item of no category", "booking_items", "booking_items_take_stock",
			bookedWith + `INSERT INTO booking_items (booking_id, category_id, quantity, price) SELECT id, 2147483647, 1, 10 FROM b`,
			[]any{ev}},
		{"a category with items deleted", "categories", "categories_keep_items",
			`DELETE FROM categories WHERE id = $1`, []any{cat}},
		{"a booking's id changed", "bookings", "bookings_fixed_id",
			`UPDATE bookings SET id = id + 1000000 WHERE id = $1`, []any{live}},
		{"a category's id changed", "categories", "categories_fixed_id",
			`UPDATE categories SET id = id + 1000000 WHERE id = $1`, []any{cat}},
		{"a booking of no event", "bookings", "booking_status_change_insert",
			`INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status) VALUES (2147483647, 'a@example.com', 1, 10, 'confirmed')`,
			nil},
		{"an event with bookings deleted", "events", "events_keep_bookings",
			`DELETE FROM events WHERE id = $1`, []any{other}},
	}
	for _, c := range cases {
		if _, err := db.Exec(c.sql, c.args...); code(err) != "HF001" {
			t.Errorf("%s: err %v, want HF001", c.name, err)
		}
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) error { _, err := tx.Exec(q, args...); return err }
		if err := exec(`ALTER TABLE ` + c.table + ` DISABLE TRIGGER ` + c.trigger); err != nil {
			t.Fatal(err)
		}
		if err := exec(c.sql, c.args...); err != nil {
			t.Errorf("%s, with %s disabled: err %v, want it through (nothing else refuses it)", c.name, c.trigger, err)
		} else if n := orphans(t, tx); n == 0 {
			t.Errorf("%s, with %s disabled: no item of a missing booking or category", c.name, c.trigger)
		}
		_ = tx.Rollback()
	}
	if n := orphans(t, db); n != 0 {
		t.Fatalf("%d orphan items or bookings after refused writes", n)
	}
	// An event's id: categories' key refuses the change too.
	if _, err := db.Exec(`UPDATE events SET id = id + 1000000 WHERE id = $1`, other); code(err) != "HF001" {
		t.Errorf("an event's id changed: err %v, want HF001", err)
	}

	// A failed booking deleted takes its items (the key's ON DELETE
	// CASCADE); with the trigger off they would stay.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`ALTER TABLE bookings DISABLE TRIGGER bookings_delete_items`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`DELETE FROM bookings WHERE id = $1`, gone); err != nil {
		t.Fatal(err)
	}
	if n := orphans(t, tx); n != 1 {
		t.Errorf("delete with bookings_delete_items disabled left %d orphan items, want 1", n)
	}
	_ = tx.Rollback()
	exec(t, db, `DELETE FROM bookings WHERE id = $1`, gone)
	if n := orphans(t, db); n != 0 {
		t.Fatalf("deleting a failed booking left %d orphan items, want its items gone with it", n)
	}

	// TRUNCATE (this test's database is its own): bookings, categories or
	// events without what refers to them would leave it behind; with it,
	// it passes.
	exec(t, db, `UPDATE bookings SET booking_status = 'failed',
		failure_reason = CASE WHEN booking_status = 'confirmed' THEN 'cancelled' ELSE 'released' END
		WHERE booking_status <> 'failed'`)
	truncates := []struct{ sql, table, trigger string }{
		{`TRUNCATE bookings`, "bookings", "bookings_truncate_keeps_items"},
		{`TRUNCATE categories CASCADE`, "categories", "categories_truncate_keeps_items"},
		{`TRUNCATE events, booking_items CASCADE`, "events", "events_truncate_keeps_bookings"},
	}
	for _, c := range truncates {
		if _, err := db.Exec(c.sql); code(err) != "HF001" {
			t.Errorf("%s: err %v, want HF001", c.sql, err)
		}
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`ALTER TABLE ` + c.table + ` DISABLE TRIGGER ` + c.trigger); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(c.sql); err != nil {
			t.Errorf("%s with %s disabled: %v, want it through", c.sql, c.trigger, err)
		} else if n := orphans(t, tx); n == 0 {
			t.Errorf("%s with %s disabled left nothing orphaned", c.sql, c.trigger)
		}
		_ = tx.Rollback()
	}
	exec(t, db, `TRUNCATE events, bookings, booking_items CASCADE`)
}

// An item is made by the transaction that makes its booking, never added
// after (029): added to a live booking of an earlier transaction, it took
// its category's tickets and not the event's, which the booking's quantity
// took, so the categories could sell past the event's capacity. Made with
// its booking, in one statement or two, it goes through; added after, in
// a statement of its own or beside a good one, it is refused, and with
// the trigger disabled it goes through, so it is the trigger that keeps
// the rule.
func TestAnItemIsMadeWithItsBookingOnly(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	if _, err := bookWithItem(t, db, ev, 2, "pending", cat, 2); err != nil {
		t.Fatalf("an item made with its booking: %v", err)
	}
	var one int64
	if err := db.QueryRow(`WITH b AS (INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
			VALUES ($1, 'a@example.com', 1, 10, 'confirmed') RETURNING id)
		INSERT INTO booking_items (booking_id, category_id, quantity, price) SELECT id, $2, 1, 10 FROM b RETURNING booking_id`,
		ev, cat).Scan(&one); err != nil {
		t.Fatalf("an item made in its booking's statement: %v", err)
	}
	old, err := booking(t, db, ev, 2, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if err := item(db, old, cat, 2); code(err) != "HF001" {
		t.Fatalf("an item added to a booking of an earlier transaction: err %v, want HF001", err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	fresh, err := booking(t, tx, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, $2, 1, 10), ($3, $2, 1, 10)`,
		fresh, cat, old); code(err) != "HF001" {
		t.Fatalf("an item added to an old booking beside one of a new booking: err %v, want HF001", err)
	}
	_ = tx.Rollback()
	if _, _, available := onlyCategory(t, db, ev); available != 7 {
		t.Fatalf("category stock %d, want 7 (10 less the two bookings made with their items)", available)
	}
	// The check is the booking row's writer against the transaction's own
	// id: a booking made under a savepoint (a subtransaction, with an id
	// of its own) cannot be given items, which nothing in holdfast does.
	tx, err = db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}
	sub, err := booking(t, tx, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`RELEASE SAVEPOINT s`); err != nil {
		t.Fatal(err)
	}
	if err := item(tx, sub, cat, 1); code(err) != "HF001" {
		t.Fatalf("an item of a booking made under a savepoint: err %v, want HF001", err)
	}
	_ = tx.Rollback()
	tx, err = db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`ALTER TABLE booking_items DISABLE TRIGGER booking_items_take_stock`); err != nil {
		t.Fatal(err)
	}
	if err := item(tx, old, cat, 2); err != nil {
		t.Fatalf("an item added to an old booking with the trigger disabled: %v, want it through", err)
	}
}

// The items' stock trigger reads each category once a statement, in the
// UPDATE that takes its stock (025, 026), not once an item: a hot category's
// row carries a chain of versions its updates left, which a lookup by key
// walks, so a read per item was most of the trigger's cost. The count is
// the transaction's own index scans on categories (pg_stat_xact_user_tables,
// which needs no statistics flush).
func TestItemsOfOneCategoryReadItOnceAStatement(t *testing.T) {
	t.Parallel()
	db := open(t)
	const n = 20
	ev := event(t, db, 100, true)
	cat, _, _ := onlyCategory(t, db, ev)
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	ids := make([]int64, n)
	for i := range ids {
		id, err := booking(t, tx, ev, 1, "pending")
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	scans := func() int64 {
		t.Helper()
		var s int64
		if err := tx.QueryRow(`SELECT coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relname = 'categories'`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := scans()
	if _, err := tx.Exec(`INSERT INTO booking_items (booking_id, category_id, quantity, price)
		SELECT b, $2, 1, 10 FROM unnest($1::bigint[]) AS b`, pq.Array(ids), cat); err != nil {
		t.Fatal(err)
	}
	if got := scans() - before; got != 1 {
		t.Errorf("%d items of one category: %d index scans of categories, want 1", n, got)
	}
	var left int
	if err := tx.QueryRow(`SELECT available_tickets FROM categories WHERE id = $1`, cat).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 100-n {
		t.Errorf("category stock %d after %d items, want %d", left, n, 100-n)
	}
}

// An item added to a booking another transaction has locked waits for that
// booking before it touches its category, the order the give-back takes
// them in (the booking's row, then its items' categories). 025 took the
// category first: a transaction failing two bookings, one with an item of
// the category, then waited on the adder's category lock while the adder
// waited on the booking, a deadlock. Since 029 such an item (added to a
// booking of an earlier transaction) is refused whatever it finds; what
// this still shows is that the refusal comes after the wait, and the
// give-back goes through.
func TestAnItemWaitsForItsBookingBeforeItsCategory(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	sold, err := bookWithItem(t, db, ev, 1, "pending", cat, 1)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := booking(t, db, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	failer, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer failer.Rollback()
	if _, err := failer.Exec(`SELECT 1 FROM bookings WHERE id IN ($1, $2) ORDER BY id FOR UPDATE`, sold, bare); err != nil {
		t.Fatal(err)
	}
	added := make(chan error, 1)
	go func() {
		_, err := db.Exec(`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, $2, 1, 10)`, bare, cat)
		added <- err
	}()
	// The insert must be waiting on a lock before the bookings are failed,
	// or the test shows nothing.
	for waiting := false; !waiting; {
		select {
		case err := <-added:
			t.Fatalf("an item was added to a locked booking without waiting (err %v)", err)
		case <-time.After(20 * time.Millisecond):
		}
		if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO booking_items%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := failer.Exec(`UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id IN ($1, $2)`, sold, bare); err != nil {
		t.Fatalf("failing the bookings while an item waits on one: %v (%s), want it to go through", err, code(err))
	}
	if err := failer.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-added; code(err) != "HF001" {
		t.Fatalf("the item of a booking failed meanwhile: err %v (%s), want HF001", err, code(err))
	}
	if _, total, available := onlyCategory(t, db, ev); available != total {
		t.Errorf("category stock %d of %d after both bookings failed, want all of it back", available, total)
	}
}

// The trigger reads each item's booking by its key, whatever the number of
// the event's other live bookings. Its plan is made on the session's first
// statement and kept while the table grows, so the test makes it while
// bookings is nearly empty: with a filter on the status beside the
// booking's lock (026's first draft) that plan read other live bookings
// through their partial index, on every statement, a cost that grew with
// the sale.
func TestAnItemReadsItsBookingAlone(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	ev := event(t, db, 1000, true)
	cat, _, _ := onlyCategory(t, db, ev)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	live := func(n int) []int64 {
		t.Helper()
		var ids []int64
		for i := 0; i < n; i++ {
			id, err := booking(t, conn, ev, 1, "pending")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	items := func(ids []int64) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, `INSERT INTO booking_items (booking_id, category_id, quantity, price)
			SELECT b, $2, 1, 10 FROM unnest($1::bigint[]) AS b`, pq.Array(ids), cat); err != nil {
			t.Fatal(err)
		}
	}
	// Items are made in their bookings' transaction (029).
	begin := func() {
		t.Helper()
		if _, err := conn.ExecContext(ctx, `BEGIN`); err != nil {
			t.Fatal(err)
		}
	}
	begin()
	items(live(1)) // plans the trigger on a table of one booking
	if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	live(200)
	fetched := func() int64 {
		t.Helper()
		var n int64
		if err := conn.QueryRowContext(ctx, `SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)
			FROM pg_stat_xact_user_tables WHERE relname = 'bookings'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	begin()
	defer conn.ExecContext(ctx, `ROLLBACK`)
	// The newest two: a read of the partial index meets the older ones first.
	ids := live(2)
	before := fetched()
	items(ids)
	if got := fetched() - before; got > 2 {
		t.Errorf("2 items among 203 live bookings: %d bookings read, want 2", got)
	}
}
