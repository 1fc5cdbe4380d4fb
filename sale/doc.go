// Package sale is the centre of holdfast: what every way of selling
// tickets shares, whichever endpoint sells them. It holds the event on sale
// (Event, its sale window and waiting room settings, EventPatch, an
// organiser's change of it), the buyer's order (Order, validated from the
// one request body that /book/* and POST /holds take, the email rules and
// BuyerKey, by which the caps compare buyers), the Locker that keeps one
// event's buyers from piling onto its row, and the domain's shared errors
// (sold out, no such event, the caps, the sale window, busy, unavailable).
// Ticket categories, when they come, belong here too: an event's stock
// split by kind of ticket is part of what is on sale.
//
// It is named for the sale rather than the event because an order, its
// refusals and the lock are no part of an event: they are what selling one
// involves. booking (the seed's sell-at-once) and hold (hold, then confirm)
// both import it and neither imports the other; store and queue read and
// write its types. It holds no rule that grants tickets: those are written
// once, in the database's hold_batch (see package store).
//
// Its errors are *problem.Error values, a kind and a message with no
// status: internal/httpapi says how each endpoint answers them. The one
// HTTP thing here is Request, the JSON body as sent, with fields loose on
// purpose (httpapi.Int) so that every mistake gets a precise message from
// its Order method.
package sale
