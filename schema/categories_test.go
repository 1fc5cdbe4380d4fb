package schema_test

import (
	"context"
	"database/sql"
	"testing"
)

// category returns the one category of ev (an event made by plain SQL has
// exactly one) and its stock.
func onlyCategory(t *testing.T, db *sql.DB, ev int64) (id int64, total, available int) {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM categories WHERE event_id = $1`, ev).Scan(&n); err != nil || n != 1 {
		t.Fatalf("event %d has %d categories (err %v), want 1", ev, n, err)
	}
	err := db.QueryRow(`SELECT id, total_tickets, available_tickets FROM categories WHERE event_id = $1`, ev).
		Scan(&id, &total, &available)
	if err != nil {
		t.Fatal(err)
	}
	return id, total, available
}

// item adds an item of qty tickets of category to a booking made before
// (029 refuses it: an item is made by its booking's transaction).
func item(db interface {
	Exec(string, ...any) (sql.Result, error)
}, booking, category int64, qty int) error {
	_, err := db.Exec(`INSERT INTO booking_items (booking_id, category_id, quantity, price) VALUES ($1, $2, $3, 10)`,
		booking, category, qty)
	return err
}

// bookWithItem makes, in one transaction as holdfast does, a booking of
// qty tickets of ev with status and an item of itemQty tickets of
// category, and answers the booking's id.
func bookWithItem(t *testing.T, db *sql.DB, ev int64, qty int, status string, category int64, itemQty int) (int64, error) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	id, err := booking(t, tx, ev, qty, status)
	if err != nil {
		return 0, err
	}
	if err := item(tx, id, category, itemQty); err != nil {
		return 0, err
	}
	return id, tx.Commit()
}

func TestEventMadeByPlainSQLGetsItsDefaultCategory(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	cat, total, available := onlyCategory(t, db, ev)
	if total != 10 || available != 10 {
		t.Fatalf("default category %d/%d, want 10/10", available, total)
	}
	// A change of the event's tickets or price moves its only category.
	exec(t, db, `UPDATE events SET total_tickets = total_tickets + 5, available_tickets = available_tickets + 5, ticket_price = 12 WHERE id = $1`, ev)
	var price string
	if err := db.QueryRow(`SELECT total_tickets, available_tickets, price FROM categories WHERE id = $1`, cat).
		Scan(&total, &available, &price); err != nil || total != 15 || available != 15 || price != "12.00" {
		t.Fatalf("category after the event's change: %d/%d at %s (err %v), want 15/15 at 12.00", available, total, price, err)
	}
}

// An event whose only category is seated keeps its total, whatever path
// changes it: moving the category with it would leave seats the stock no
// longer counts. Its price still follows, and an event of two categories,
// one seated, changes its total freely.
func TestAnEventsTotalNeverMovesAnOnlySeatedCategory(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 4, true)
	cat, _, _ := onlyCategory(t, db, ev)
	exec(t, db, `INSERT INTO seats (event_id, id, section, row_name, number, category_id, section_pos, row_pos, seat_pos)
		SELECT $1, 'A-1-' || n, 'A', '1', n, $2, 0, 0, n - 1 FROM generate_series(1, 4) AS n`, ev, cat)
	if _, err := db.Exec(`UPDATE events SET total_tickets = 2, available_tickets = 2 WHERE id = $1`, ev); code(err) != "HF006" {
		t.Fatalf("the total of an event whose only category is seated: err %v, want HF006", err)
	}
	exec(t, db, `UPDATE events SET ticket_price = 12 WHERE id = $1`, ev)
	exec(t, db, `INSERT INTO categories (event_id, name, price, total_tickets, available_tickets) VALUES ($1, 'Standing', 5, 10, 10)`, ev)
	exec(t, db, `UPDATE events SET total_tickets = 20, available_tickets = 20 WHERE id = $1`, ev)
}

func TestCategoryStockMovesOnlyWithItems(t *testing.T) {
	t.Parallel()
	db := open(t)
	ev := event(t, db, 10, true)
	cat, _, _ := onlyCategory(t, db, ev)
	b, err := bookWithItem(t, db, ev, 4, "pending", cat, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, got := onlyCategory(t, db, ev); got != 6 {
		t.Fatalf("category stock %d after an item of 4, want 6", got)
	}
	for _, change := range []string{
		"available_tickets = total_tickets",
		"available_tickets = available_tickets - 1",
		"total_tickets = total_tickets + 5",
		"event_id = event_id + 1",
	} {
		if _, err := db.Exec(`UPDATE categories SET `+change+` WHERE id = $1`, cat); code(err) != "HF001" {
			t.Fatalf("%s: err %v, want HF001", change, err)
		}
	}
	// Below what is held: the check refuses it.
	if _, err := db.Exec(`UPDATE categories SET total_tickets = 3, available_tickets = available_tickets - 7 WHERE id = $1`, cat); code(err) != "23514" {
		t.Fatalf("total below held: err %v, want 23514", err)
	}
	if _, err := db.Exec(`UPDATE booking_items SET quantity = 1 WHERE booking_id = $1`, b); code(err) != "HF001" {
		t.Fatalf("item changed: err %v, want HF001", err)
	}
	if _, err := db.Exec(`DELETE FROM booking_items WHERE booking_id = $1`, b); code(err) != "HF001" {
		t.Fatalf("item of a live booking deleted: err %v, want HF001", err)
	}
	if _, err := db.Exec(`INSERT INTO categories (event_id, name, price, total_tickets, available_tickets) VALUES ($1, 'x', 1, 5, 4)`, ev); code(err) != "HF001" {
		t.Fatalf("category inserted part-sold: err %v, want HF001", err)
	}
	// Failing the booking gives its items back once.
	exec(t, db, `UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, b)
	exec(t, db, `UPDATE bookings SET booking_status = 'failed' WHERE id = $1`, b) // a second fail, changing nothing
	if _, _, got := onlyCategory(t, db, ev); got != 10 {
		t.Fatalf("category stock %d after the booking failed, want 10", got)
	}
	// An item of another event's category is refused.
	other := event(t, db, 10, true)
	otherCat, _, _ := onlyCategory(t, db, other)
	if _, err := bookWithItem(t, db, ev, 1, "confirmed", otherCat, 1); code(err) != "HF001" {
		t.Fatalf("item of another event's category: err %v, want HF001", err)
	}
	// Never below zero, whatever the event's guard.
	if _, err := bookWithItem(t, db, ev, 9, "confirmed", cat, 11); code(err) != "23514" {
		t.Fatalf("item beyond the category's stock: err %v, want 23514", err)
	}
	// An item added to a live booking made by an earlier transaction: it
	// would take its category's tickets and not the event's (029).
	b4, err := booking(t, db, ev, 2, "confirmed")
	if err != nil {
		t.Fatal(err)
	}
	if err := item(db, b4, cat, 2); code(err) != "HF001" {
		t.Fatalf("item added to a booking of an earlier transaction: err %v, want HF001", err)
	}
	if _, _, got := onlyCategory(t, db, ev); got != 10 {
		t.Fatalf("category stock %d after refused items, want 10", got)
	}
	// An item of a failed booking is refused.
	var vip int64
	if err := db.QueryRow(`INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
		VALUES ($1, 'VIP', 50, 5, 5) RETURNING id`, ev).Scan(&vip); err != nil {
		t.Fatal(err)
	}
	// Made, failed and given an item in one transaction, so that the
	// refusal is for its status (029 refuses one of an earlier one).
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	failed, err := booking(t, tx, ev, 1, "pending")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE bookings SET booking_status = 'failed', failure_reason = 'released' WHERE id = $1`, failed); err != nil {
		t.Fatal(err)
	}
	if err := item(tx, failed, vip, 1); code(err) != "HF001" {
		t.Fatalf("item of a failed booking: err %v, want HF001", err)
	}
	_ = tx.Rollback()
	// A failed booking may be deleted, its items with it.
	exec(t, db, `DELETE FROM bookings WHERE id = $1`, b)
}
