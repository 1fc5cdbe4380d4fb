package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/booking"
)

// The two caps on one event's tickets, both counted inside the transaction
// (or the hold_batch call) that holds the event row, so they are exact
// across instances:
//
//   - per buyer (--max-tickets-per-user): the tickets one buyer, known by
//     booking.BuyerKey of the email, holds or has confirmed;
//   - per client address (--max-tickets-per-client): the tickets one
//     address holds at once, pending holds only. A confirmed booking no
//     longer counts: the cap is on what one address can keep off sale
//     without buying it.
//
// A pending hold counts against both even once it has lapsed, until it is
// failed: a confirm already in flight may still take it. A request over
// either cap expires the event's lapsed holds first, as a request short of
// stock does.

const (
	// qBuyersTickets sums each buyer's tickets of an event, confirmed or
	// pending, by the buyer key holdfast stored beside every booking.
	qBuyersTickets = `SELECT u.key, coalesce((SELECT sum(b.quantity) FROM bookings b
	          WHERE b.event_id = $1::bigint AND b.buyer_key = u.key
	            AND b.booking_status IN ('pending', 'confirmed')), 0) AS tickets
	FROM unnest($2::text[]) AS u(key)`

	// qClientsTickets sums each client address's pending tickets of an
	// event.
	qClientsTickets = `SELECT host(u.addr) AS addr, coalesce((SELECT sum(b.quantity) FROM bookings b
	          WHERE b.event_id = $1::bigint AND b.client_addr = u.addr
	            AND b.booking_status = 'pending'), 0) AS tickets
	FROM unnest($2::inet[]) AS u(addr)`
)

// SetClientCap sets the most tickets of one event one client address may
// hold at once (pending holds; see above); 0 lifts the cap.
func (s *Store) SetClientCap(n int) { s.clientCap = n }

// clientAddr is o's client address as the bookings table keeps it:
// unmapped, without a zone, the zero Addr when unknown.
func clientAddr(o booking.Order) netip.Addr { return o.Client.Unmap().WithZone("") }

// inetArg is a as a client_addr parameter: NULL when unknown.
func inetArg(a netip.Addr) sql.NullString {
	if !a.IsValid() {
		return sql.NullString{}
	}
	return sql.NullString{String: a.String(), Valid: true}
}

// caps is what each buyer and each client address of a batch already has of
// one event, and what the batch adds as it grants. A nil *caps is no cap.
type caps struct {
	buyerCap, clientCap int
	owned               map[string]int     // buyer key -> pending and confirmed tickets
	held                map[netip.Addr]int // client address -> pending tickets
}

// readCaps reads, inside tx (which holds the event row), what the buyers and
// client addresses of orders have of the event; nil when there is no cap.
func (s *Store) readCaps(ctx context.Context, tx *sqlx.Tx, eventID int64, orders []booking.Order) (*caps, error) {
	if s.ticketCap <= 0 && s.clientCap <= 0 {
		return nil, nil
	}
	c := &caps{buyerCap: s.ticketCap, clientCap: s.clientCap, owned: map[string]int{}, held: map[netip.Addr]int{}}
	if c.buyerCap > 0 {
		var keys []string
		for _, o := range orders {
			if k := booking.BuyerKey(o.Email); !has(c.owned, k) {
				c.owned[k] = 0
				keys = append(keys, k)
			}
		}
		var rows []struct {
			Key     string `db:"key"`
			Tickets int    `db:"tickets"`
		}
		if err := tx.SelectContext(ctx, &rows, qBuyersTickets, eventID, pq.Array(keys)); err != nil {
			return nil, mapErr(ctx, err)
		}
		for _, r := range rows {
			c.owned[r.Key] = r.Tickets
		}
	}
	if c.clientCap > 0 {
		var addrs []string
		for _, o := range orders {
			if a := clientAddr(o); a.IsValid() && !has(c.held, a) {
				c.held[a] = 0
				addrs = append(addrs, a.String())
			}
		}
		if len(addrs) > 0 {
			var rows []struct {
				Addr    string `db:"addr"`
				Tickets int    `db:"tickets"`
			}
			if err := tx.SelectContext(ctx, &rows, qClientsTickets, eventID, pq.Array(addrs)); err != nil {
				return nil, mapErr(ctx, err)
			}
			for _, r := range rows {
				a, err := netip.ParseAddr(r.Addr)
				if err != nil {
					return nil, fmt.Errorf("store: client address %q: %w", r.Addr, err)
				}
				c.held[a] = r.Tickets
			}
		}
	}
	return c, nil
}

func has[K comparable](m map[K]int, k K) bool {
	_, ok := m[k]
	return ok
}

// refusal is the cap o would break, booking.ErrLimitExceeded for its
// buyer's or booking.ErrClientLimitExceeded for its client address's; nil
// when it breaks none.
func (c *caps) refusal(o booking.Order) error {
	if c == nil {
		return nil
	}
	if c.buyerCap > 0 && c.owned[booking.BuyerKey(o.Email)]+o.Quantity > c.buyerCap {
		return booking.ErrLimitExceeded
	}
	if a := clientAddr(o); c.clientCap > 0 && a.IsValid() && c.held[a]+o.Quantity > c.clientCap {
		return booking.ErrClientLimitExceeded
	}
	return nil
}

// take counts o, granted, against its buyer and client address.
func (c *caps) take(o booking.Order) {
	if c == nil {
		return
	}
	if c.buyerCap > 0 {
		c.owned[booking.BuyerKey(o.Email)] += o.Quantity
	}
	if a := clientAddr(o); c.clientCap > 0 && a.IsValid() {
		c.held[a] += o.Quantity
	}
}

// forget takes holds expired on the way off the counts of their buyers and
// addresses, those of the batch.
func (c *caps) forget(gone expiredHolds) {
	if c == nil {
		return
	}
	for k, n := range gone.buyers {
		if has(c.owned, k) {
			c.owned[k] -= n
		}
	}
	for a, n := range gone.clients {
		if has(c.held, a) {
			c.held[a] -= n
		}
	}
}
