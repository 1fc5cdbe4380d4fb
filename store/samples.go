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
// for the same reason. Then a festival of three categories under one
// capacity, for holds of several items. Last, claimed on its own so a dev
// database loaded before it existed gets it too, a small seated hall.
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

	qClaimHall = `INSERT INTO holdfast_meta (key, value) VALUES ('dev_hall', 'loading')
		ON CONFLICT (key) DO NOTHING`

	// The hall: 120 seats, its default category the stalls (6 rows, A to
	// F, of 12 seats), a second category the balcony (4 rows, G to K but
	// I, of 12), each category's stock its seats; seat ids as the admin
	// API makes them ("Stalls-A-1").
	qHall = `
WITH e AS (
    INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price)
    VALUES ('Holdfast Hall Recital', 'A seated hall: 72 in the stalls, 48 on the balcony', '2027-09-01 19:30:00+00', 120, 120, 45.00)
    RETURNING id
)
UPDATE holdfast_meta SET value = (SELECT id::text FROM e) WHERE key = 'dev_hall'`
	qHallCategories = `
WITH h AS (SELECT value::int AS id FROM holdfast_meta WHERE key = 'dev_hall'),
stalls AS (
    UPDATE categories SET name = 'Stalls', total_tickets = 72, available_tickets = 72
    WHERE event_id = (SELECT id FROM h)
)
INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
SELECT h.id, 'Balcony', 30.00, 48, 48 FROM h`
	qHallSeats = `
WITH h AS (SELECT value::int AS id FROM holdfast_meta WHERE key = 'dev_hall'),
c AS (SELECT c.id, c.name FROM categories c, h WHERE c.event_id = h.id),
r AS (SELECT * FROM (VALUES (0, 'Stalls', 'A', 0), (0, 'Stalls', 'B', 1), (0, 'Stalls', 'C', 2),
                            (0, 'Stalls', 'D', 3), (0, 'Stalls', 'E', 4), (0, 'Stalls', 'F', 5),
                            (1, 'Balcony', 'G', 0), (1, 'Balcony', 'H', 1), (1, 'Balcony', 'J', 2),
                            (1, 'Balcony', 'K', 3)) AS r(spos, section, row_name, rpos))
INSERT INTO seats (event_id, id, section, row_name, number, category_id, section_pos, row_pos, seat_pos)
SELECT h.id, r.section || '-' || r.row_name || '-' || n, r.section, r.row_name, n, c.id, r.spos, r.rpos, n - 1
FROM h, r JOIN c ON c.name = r.section, generate_series(1, 12) AS n`
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
		if n, _ := res.RowsAffected(); n > 0 {
			if err := execAll(ctx, tx, qSampleEvents, qPresale, qPresaleItems, qFestival, qFestivalCategories); err != nil {
				return err
			}
			loaded = true
		}
		if res, err = tx.ExecContext(ctx, qClaimHall); err != nil {
			return mapErr(ctx, err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			if err := execAll(ctx, tx, qHall, qHallCategories, qHallSeats); err != nil {
				return err
			}
			loaded = true
		}
		return nil
	})
	return loaded, err
}

// execAll runs each statement of qs in tx, in order.
func execAll(ctx context.Context, tx *sqlx.Tx, qs ...string) error {
	for _, q := range qs {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return mapErr(ctx, err)
		}
	}
	return nil
}
