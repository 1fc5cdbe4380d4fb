package schema_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/schema"
)

// 007 gives every booking a buyer key: those made before it by migration,
// those inserted later with plain SQL by its trigger, so both count against
// their buyer's cap.
func TestBookingsWithoutABuyerKeyGetOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("postgres", testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.ApplyThrough(ctx, db, "006_hold_batch"); err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, `
		INSERT INTO events (id, name, event_date, total_tickets, available_tickets, ticket_price) VALUES (1, 'e', now(), 100, 100, 1);
		INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status) VALUES
			(1, 'Ann@Example.COM', 1, 1, 'confirmed'),
			(1, 'ﬁ@example.com', 1, 1, 'confirmed')`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
		VALUES (1, 'BOB@example.com', 1, 1, 'confirmed')`); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT user_email, buyer_key FROM bookings ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	// The NFKC form of the ligature ﬁ is "fi".
	want := map[string]string{"Ann@Example.COM": "ann@example.com", "ﬁ@example.com": "fi@example.com", "BOB@example.com": "bob@example.com"}
	n := 0
	for rows.Next() {
		var email, key string
		if err := rows.Scan(&email, &key); err != nil {
			t.Fatal(err)
		}
		if key != want[email] {
			t.Errorf("%q has buyer key %q, want %q", email, key, want[email])
		}
		n++
	}
	if err := rows.Err(); err != nil || n != 3 {
		t.Fatalf("%d bookings, %v", n, err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE bookings SET buyer_key = NULL`); err == nil {
		t.Fatal("a booking's buyer key was set to NULL")
	}
}
