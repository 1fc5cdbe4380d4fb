package store

import (
	"database/sql"
	"net/netip"

	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/sale"
)

// The two caps on one event's tickets, both counted by hold_batch (schema/011,
// the one writing of the rules that grant tickets) under the event row it
// locks, so they are exact across instances:
//
//   - per buyer (--max-tickets-per-user): the tickets one buyer, known by
//     sale.BuyerKey of the email, holds or has confirmed;
//   - per client address (--max-tickets-per-client): the tickets one
//     address holds at once, pending holds only. A confirmed booking no
//     longer counts: the cap is on what one address can keep off sale
//     without buying it.
//
// A pending hold counts against both even once it has lapsed, until it is
// failed: a confirm already in flight may still take it. A request over
// either cap expires the event's lapsed holds first, as a request short of
// stock does.

// SetClientCap sets the most tickets of one event one client address may
// hold at once (pending holds; see above); 0 lifts the cap.
func (s *Store) SetClientCap(n int) { s.clientCap = n }

// clientAddr is o's client address as the bookings table keeps it and the
// per-client cap counts it (clientaddr.Counted: an IPv6 client by its
// /64), the zero Addr when unknown. The handlers pass it so counted
// already; counting again changes nothing, and keeps any other caller to
// the one rule.
func clientAddr(o sale.Order) netip.Addr { return clientaddr.Counted(o.Client) }

// inetArg is a as a client_addr parameter: NULL when unknown.
func inetArg(a netip.Addr) sql.NullString {
	if !a.IsValid() {
		return sql.NullString{}
	}
	return sql.NullString{String: a.String(), Valid: true}
}
