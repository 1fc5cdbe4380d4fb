package schema_test

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// orphanItems counts booking items whose booking or category is missing.
func orphanItems(t *testing.T, q interface {
	QueryRow(string, ...any) *sql.Row
}) int {
	t.Helper()
	var n int
	if err := q.QueryRow(`SELECT count(*) FROM booking_items i
		WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.id = i.booking_id)
		   OR NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = i.category_id)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Since 020 booking_items has no foreign keys: its statement trigger and
// the triggers beside it do what the keys did. Each case is refused, and
// goes through (leaving an item of no booking or no category, or losing
// one) once the trigger that refuses it is disabled, so it is that trigger,
// and no key, that keeps the rule.
func TestItemsKeepTheirBookingAndCategoryWithoutForeignKeys(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	live, err := booking(t, db, ev, 2, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if err := item(db, live, cat, 2); err != nil {
		t.Fatal(err)
	}
	// A failed booking with its item: the one a delete or a TRUNCATE may
	// take.
	gone, err := booking(t, db, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if err := item(db, gone, cat, 1); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, gone)
	fresh, err := booking(t, db, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		table   string // the table and trigger that refuse it
		trigger string
		sql     string
		args    []any
	}{
		{"an item of no booking, beside a good one", "booking_items", "booking_items_take_stock",
			`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, $2, 1, 10), (2147483647, $2, 1, 10)`,
			[]any{fresh, cat}},
		{"an item of no category", "booking_items", "booking_items_take_stock",
			`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, 2147483647, 1, 10)`,
			[]any{fresh}},
		{"a category with items deleted", "categories", "categories_keep_items",
			`DELETE FROM categories WHERE id = $1`, []any{cat}},
		{"a booking's id changed", "bookings", "bookings_fixed_id",
			`UPDATE bookings SET id = id + 1000000 WHERE id = $1`, []any{live}},
		{"a category's id changed", "categories", "categories_fixed_id",
			`UPDATE categories SET id = id + 1000000 WHERE id = $1`, []any{cat}},
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
		} else if n := orphanItems(t, tx); n == 0 {
			t.Errorf("%s, with %s disabled: no item of a missing booking or category", c.name, c.trigger)
		}
		_ = tx.Rollback()
	}
	if n := orphanItems(t, db); n != 0 {
		t.Fatalf("%d orphan items after refused writes", n)
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
	if n := orphanItems(t, tx); n != 1 {
		t.Errorf("delete with bookings_delete_items disabled left %d orphan items, want 1", n)
	}
	_ = tx.Rollback()
	exec(t, db, `DELETE FROM bookings WHERE id = $1`, gone)
	if n := orphanItems(t, db); n != 0 {
		t.Fatalf("deleting a failed booking left %d orphan items, want its items gone with it", n)
	}

	// TRUNCATE (this test's database is its own): bookings or categories
	// alone would leave their items behind; with booking_items it passes.
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE booking_status = 'pending'`)
	for _, q := range []string{`TRUNCATE bookings`, `TRUNCATE categories CASCADE`} {
		if _, err := db.Exec(q); code(err) != "HF001" {
			t.Errorf("%s under items: err %v, want HF001", q, err)
		}
	}
	tx, err = db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`ALTER TABLE bookings DISABLE TRIGGER bookings_truncate_keeps_items`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`TRUNCATE bookings`); err != nil {
		t.Errorf("TRUNCATE bookings with its trigger disabled: %v, want it through", err)
	} else if n := orphanItems(t, tx); n == 0 {
		t.Errorf("TRUNCATE bookings with its trigger disabled left no orphan items")
	}
	_ = tx.Rollback()
	exec(t, db, `TRUNCATE bookings, booking_items`)
}

// An item inserted for an existing booking keeps that booking live until
// the insert commits: another transaction failing the booking meanwhile
// waits, and then gives the item's tickets back with it. A foreign key's
// FOR KEY SHARE let the booking fail under the uncommitted item, whose
// category kept those tickets for good (and without any lock the delete
// after it left the item with no booking).
func TestAnItemKeepsItsBookingLiveUntilItCommits(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	b, err := booking(t, db, ev, 2, "pending")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, $2, 2, 10)`, b, cat); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		other, err := db.BeginTx(ctx, nil)
		if err != nil {
			done <- err
			return
		}
		defer other.Rollback()
		if _, err := other.Exec(`UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, b); err != nil {
			done <- err
			return
		}
		if _, err := other.Exec(`DELETE FROM bookings WHERE id = $1`, b); err != nil {
			done <- err
			return
		}
		done <- other.Commit()
	}()
	select {
	case err := <-done:
		t.Fatalf("the booking was failed and deleted under an uncommitted item (err %v), want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := orphanItems(t, db); n != 0 {
		t.Errorf("%d orphan items, want the item gone with its booking", n)
	}
	if _, total, available := onlyCategory(t, db, ev); available != total {
		t.Errorf("category stock %d of %d after its only booking failed, want all of it back", available, total)
	}
	if got := stock(t, db, ev); got != 10 {
		t.Errorf("event stock %d, want 10", got)
	}
}
