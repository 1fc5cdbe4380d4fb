package sale

import (
	"strconv"
	"time"

	"github.com/holdfast/holdfast/internal/money"
)

// Event is a thing with a limited stock of tickets.
type Event struct {
	ID               int64       `json:"id"`
	Name             string      `json:"name"`
	Description      string      `json:"description"`
	EventDate        time.Time   `json:"event_date"`
	TotalTickets     int         `json:"total_tickets"`
	AvailableTickets int         `json:"available_tickets"`
	TicketPrice      money.Cents `json:"ticket_price"`
	// OnSaleAt and OffSaleAt bound the sale window; nil: on sale now,
	// never closes.
	OnSaleAt  *time.Time `json:"on_sale_at"`
	OffSaleAt *time.Time `json:"off_sale_at"`
	// Queue is the event's waiting room; nil: none.
	Queue *QueueSettings `json:"queue"`
	// Categories are the event's kinds of ticket, in id order: at least
	// one (an event made by plain SQL gets a default one). Each has a
	// stock of its own under the event's capacity.
	Categories []Category `json:"categories"`
}

// Category is a kind of ticket of an event, with its own price and stock.
// A hold must fit both its categories' stock and the event's.
type Category struct {
	ID               int64       `json:"id"`
	Name             string      `json:"name"`
	Price            money.Cents `json:"price"`
	TotalTickets     int         `json:"total_tickets"`
	AvailableTickets int         `json:"available_tickets"`
}

// CategoryPatch is a new category or a change to one; nil fields stay as
// they are. Total moves the available count with it.
type CategoryPatch struct {
	Name  *string
	Price *money.Cents
	Total *int
}

// QueueSettings configure an event's waiting room.
type QueueSettings struct {
	// AdmitPerSecond is how many places the queue admits a second, on
	// average, across all instances.
	AdmitPerSecond int `json:"admit_per_second"`
	// PassTTL is how long an admitted place's pass takes holds.
	PassTTL Seconds `json:"pass_ttl"`
}

// Seconds is a whole number of seconds that reads and writes JSON as a
// duration string such as "10m", "90s" or "1h".
type Seconds int

// Duration is s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(s) * time.Second }

// MarshalJSON writes the shortest of "Nh", "Nm" or "Ns".
func (s Seconds) MarshalJSON() ([]byte, error) {
	var text string
	switch {
	case s != 0 && s%3600 == 0:
		text = strconv.Itoa(int(s/3600)) + "h"
	case s != 0 && s%60 == 0:
		text = strconv.Itoa(int(s/60)) + "m"
	default:
		text = strconv.Itoa(int(s)) + "s"
	}
	return []byte(`"` + text + `"`), nil
}

// Limits of an event an operator may create.
const (
	MaxNameLength   = 255
	MaxTotalTickets = 10_000_000
)

// EventPatch is a change to an event; nil fields stay as they are. Total
// moves the available count with it.
type EventPatch struct {
	Name        *string
	Description *string
	EventDate   *time.Time
	Total       *int
	Price       *money.Cents
	// OnSaleAt, OffSaleAt and Queue change only when Set; Set with a nil
	// value clears them.
	OnSaleAt  Optional[time.Time]
	OffSaleAt Optional[time.Time]
	Queue     Optional[QueueSettings]
}

// Optional is a patch field that may be absent, null (Set, V nil) or a
// value.
type Optional[T any] struct {
	Set bool
	V   *T
}

// Limits of an event's waiting room.
const (
	DefaultAdmitPerSecond = 50
	MaxAdmitPerSecond     = 100_000
	DefaultPassTTL        = Seconds(600)
	MinPassTTL            = Seconds(10)
	MaxPassTTL            = Seconds(86400)
)
