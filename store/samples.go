package store

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// The sample data `holdfast dev` loads: the seed's three concerts with the
// oversell guard off (so /book/unsafe can show the race) and the seed's
// starting point of 10 tickets left, plus one large guarded event for the
// hold scripts. The seed had sold all but 10 of each concert before any
// booking existed; here that is one confirmed "presale" booking per concert,
// inserted after the event so the stock trigger takes its tickets and
// `holdfast check` balances, its items in the concert's default category
// for the same reason. Last, a festival of three categories under one
// capacity, for holds of several items.
const (
	qClaimSamples = `INSERT INTO holdfast_meta (key, value) VALUES ('dev_samples', 'loaded')
		ON CONFLICT (key) DO NOTHING`

	qSampleEvents = `
INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price, oversell_guard)
VALUES
    ('Taylor Swift Concert', 'The Eras Tour - Live in Concert', '2024-12-01 19:00:00+00', 1000, 1000, 299.99, false),
    ('Ed Sheeran World Tour', 'Mathematics Tour - Live in Concert', '2024-11-15 20:00:00+00', 800, 800, 199.99, false),
    ('Coldplay Concert', 'Music of the Spheres World Tour', '2024-10-30 19:30:00+00', 1200, 1200, 249.99, false),
    ('Holdfast Arena Open Day', 'A large event for the hold scripts', '2027-06-01 18:00:00+00', 100000, 100000, 49.50, true)`

	qPresale = `
INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status)
SELECT id, 'presale@holdfast.example', total_tickets - 10, ticket_price * (total_tickets - 10), 'confirmed'
FROM events WHERE oversell_guard = false AND available_tickets = total_tickets`

	qPresaleItems = `
INSERT INTO booking_items (booking_id, category_id, quantity, price)
SELECT b.id, c.id, b.quantity, e.ticket_price
FROM bookings b JOIN events e ON e.id = b.event_id JOIN categories c ON c.event_id = e.id
WHERE b.user_email = 'presale@holdfast.example'`

	// The festival's default category becomes its standing area, then two
	// more categories: 2,500 standing, 400 seated and 100 VIP may be sold,
	// never more than the 2,800 the venue holds.
	qFestival = `
WITH e AS (
    INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price)
    VALUES ('Holdfast Festival', 'Three categories under one capacity', '2027-08-01 16:00:00+00', 2800, 2800, 60.00)
    RETURNING id
)
INSERT INTO holdfast_meta (key, value) SELECT 'dev_festival', id::text FROM e`
	qFestivalCategories = `
WITH f AS (SELECT value::int AS id FROM holdfast_meta WHERE key = 'dev_festival'),
standing AS (
    UPDATE categories SET name = 'Standing', total_tickets = total_tickets - 300, available_tickets = available_tickets - 300
    WHERE event_id = (SELECT id FROM f)
)
INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
SELECT f.id, c.name, c.price, c.total, c.total FROM f,
    (VALUES ('Seated', 90.00, 400), ('VIP', 250.00, 100)) AS c(name, price, total)`
)

// LoadSamples loads the sample events once per database, and reports
// whether it did.
func (s *Store) LoadSamples(ctx context.Context) (bool, error) {
	loaded := false
	err := inTx(ctx, s.db, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, qClaimSamples)
		if err != nil {
			return mapErr(ctx, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		for _, q := range []string{qSampleEvents, qPresale, qPresaleItems, qFestival, qFestivalCategories} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return mapErr(ctx, err)
			}
		}
		loaded = true
		return nil
	})
	return loaded, err
}
