package sale

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// Seat is one seat of an event's map as anyone may read it: where it is,
// its category and whether it can be had. Who holds it is never said.
type Seat struct {
	// ID is "section-row-number".
	ID         string     `json:"id"`
	Section    string     `json:"section"`
	Row        string     `json:"row"`
	Number     int        `json:"number"`
	CategoryID int64      `json:"category_id"`
	Status     SeatStatus `json:"status"`
}

// SeatStatus is whether a seat can be had.
type SeatStatus string

// A seat is available, held by a pending hold that has not lapsed, or
// sold (its booking confirmed). A lapsed hold's seat reads available: the
// next request that needs it expires the hold first.
const (
	SeatAvailable SeatStatus = "available"
	SeatHeld      SeatStatus = "held"
	SeatSold      SeatStatus = "sold"
)

// SeatID is the id of the seat number of row in section.
func SeatID(section, row string, number int) string {
	return fmt.Sprintf("%s-%s-%d", section, row, number)
}

// SeatMap is an event's seat map: sections of rows of seats, each list in
// the order the venue has them (front rows first, seats of a row left to
// right), which is what side by side means.
type SeatMap struct {
	Sections []Section `json:"sections"`
}

// Section is a part of a venue, of rows.
type Section struct {
	Name string `json:"name"`
	Rows []Row  `json:"rows"`
}

// Row is a row of a section: its seats, in order.
type Row struct {
	Name  string    `json:"name"`
	Seats []MapSeat `json:"seats"`
}

// MapSeat is a seat as a map defines it.
type MapSeat struct {
	Number     int   `json:"number"`
	CategoryID int64 `json:"category_id"`
}

// Limits of a seat map.
const (
	MaxSeatNameLength = 32
	MaxSeats          = 100_000
)

// SeatMapRequest is the body of PUT /admin/events/{id}/seats, as sent.
type SeatMapRequest struct {
	Sections []struct {
		Name *string `json:"name"`
		Rows []struct {
			Name  *string `json:"name"`
			Seats []struct {
				Number     httpapi.Int `json:"number"`
				CategoryID httpapi.Int `json:"category_id"`
			} `json:"seats"`
		} `json:"rows"`
	} `json:"sections"`
}

// seatName validates the name of a section or row: it is part of a seat's
// id, so no "-", "," or space.
func seatName(what, s string) error {
	// A seat's id is its names joined by '-', read by people and split
	// by ids lists: no character that looks like a space or a break
	// (Unicode's Z categories, a no-break space among them), that no one
	// can see (Cc, Cf), or that stands for bytes that were not UTF-8
	// (U+FFFD, what a JSON decoder makes of them).
	if s == "" || utf8.RuneCountInString(s) > MaxSeatNameLength || strings.ContainsAny(s, "-,\uFFFD") ||
		strings.ContainsFunc(s, func(r rune) bool { return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Z) }) {
		return problem.Invalidf("%s must be 1 to %d characters with no '-', ',', space, separator or control character", what, MaxSeatNameLength)
	}
	return nil
}

// Map validates r: names given and unique where they must be, seat numbers
// positive and unique in their row, at most MaxSeats seats.
func (r SeatMapRequest) Map() (SeatMap, error) {
	if r.Sections == nil {
		return SeatMap{}, problem.Invalidf("sections is required (an empty list removes the map)")
	}
	m := SeatMap{Sections: make([]Section, 0, len(r.Sections))}
	seen := map[string]bool{}
	count := 0
	for i, sec := range r.Sections {
		if sec.Name == nil {
			return SeatMap{}, problem.Invalidf("sections[%d].name is required", i)
		}
		if err := seatName(fmt.Sprintf("sections[%d].name", i), *sec.Name); err != nil {
			return SeatMap{}, err
		}
		if seen[*sec.Name] {
			return SeatMap{}, problem.Invalidf("section %q is named twice", *sec.Name)
		}
		seen[*sec.Name] = true
		// Required, as the OpenAPI document has it (an empty list is a
		// section without seats): a section sent without its rows is a
		// mistake, not a wish.
		if sec.Rows == nil {
			return SeatMap{}, problem.Invalidf("sections[%d].rows is required", i)
		}
		s := Section{Name: *sec.Name, Rows: make([]Row, 0, len(sec.Rows))}
		rows := map[string]bool{}
		for j, row := range sec.Rows {
			where := fmt.Sprintf("sections[%d].rows[%d]", i, j)
			if row.Name == nil {
				return SeatMap{}, problem.Invalidf("%s.name is required", where)
			}
			if err := seatName(where+".name", *row.Name); err != nil {
				return SeatMap{}, err
			}
			if rows[*row.Name] {
				return SeatMap{}, problem.Invalidf("row %q of section %q is named twice", *row.Name, s.Name)
			}
			rows[*row.Name] = true
			if row.Seats == nil {
				return SeatMap{}, problem.Invalidf("%s.seats is required", where)
			}
			rw := Row{Name: *row.Name, Seats: make([]MapSeat, 0, len(row.Seats))}
			numbers := map[int64]bool{}
			for k, st := range row.Seats {
				w := fmt.Sprintf("%s.seats[%d]", where, k)
				switch {
				case !st.Number.Set || st.Number.N < 1 || st.Number.N > 1_000_000:
					return SeatMap{}, problem.Invalidf("%s.number must be an integer from 1 to 1000000", w)
				case numbers[st.Number.N]:
					return SeatMap{}, problem.Invalidf("seat %s is listed twice", SeatID(s.Name, rw.Name, int(st.Number.N)))
				case !st.CategoryID.Set || st.CategoryID.N <= 0:
					return SeatMap{}, problem.Invalidf("%s.category_id must be a positive integer", w)
				}
				numbers[st.Number.N] = true
				rw.Seats = append(rw.Seats, MapSeat{Number: int(st.Number.N), CategoryID: st.CategoryID.N})
			}
			count += len(rw.Seats)
			if count > MaxSeats {
				return SeatMap{}, problem.Invalidf("a map has at most %d seats", MaxSeats)
			}
			s.Rows = append(s.Rows, rw)
		}
		m.Sections = append(m.Sections, s)
	}
	return m, nil
}

// BestAvailable asks for the best seats of a category, optionally in one
// section: side by side in one row when any row has them, never leaving a
// single free seat stranded when another choice avoids it.
type BestAvailable struct {
	CategoryID int64  `json:"category_id"`
	Quantity   int    `json:"quantity"`
	Section    string `json:"section,omitempty"`
}

// BestRequest is the best_available of a Request, as sent.
type BestRequest struct {
	CategoryID httpapi.Int `json:"category_id"`
	Quantity   httpapi.Int `json:"quantity"`
	Section    *string     `json:"section"`
}

// Errors of seated holds.
var (
	// ErrSeatMapInUse: a map changes only while nothing of its event is
	// held or sold.
	ErrSeatMapInUse = problem.New(problem.SeatMapInUse, "the event's seat map cannot change while any of its tickets are held or sold")
	// ErrSeatedTotal: a seated category's total is its number of seats.
	ErrSeatedTotal = problem.New(problem.Invalid, "a seated category's total_tickets is its number of seats: change the seat map instead")
	// ErrSeatsRequired: a seated category is held by its seats.
	ErrSeatsRequired = problem.New(problem.Invalid, "the event's tickets are seats: ask for seats or best_available (POST /holds)")
)

// SeatsTaken is the refusal of a hold of named seats some of which are
// held or sold: it names them.
func SeatsTaken(ids []string) error {
	return problem.Errorf(problem.SeatTaken, "seats already held or sold: %s", strings.Join(ids, ", "))
}

// SeatsNotFound is the refusal of a hold naming seats the event does not
// have.
func SeatsNotFound(ids []string) error {
	return problem.Invalidf("the event has no seat %s", strings.Join(ids, ", "))
}

// seatedOrder is Order for a request of seats or of the best available.
func (r Request) seatedOrder(maxQuantity int) (Order, error) {
	if r.Items != nil {
		return Order{}, problem.Invalidf("send seats or best_available, not items beside them")
	}
	var o Order
	switch {
	case r.Seats != nil && r.BestAvailable != nil:
		return Order{}, problem.Invalidf("send seats or best_available, not both")
	case r.Seats != nil:
		if len(r.Seats) == 0 || len(r.Seats) > maxQuantity {
			return Order{}, problem.Invalidf("seats must name 1 to %d seats", maxQuantity)
		}
		seen := make(map[string]bool, len(r.Seats))
		for i, id := range r.Seats {
			if id == "" || len(id) > 3*MaxSeatNameLength+10 || !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
				return Order{}, problem.Invalidf("seats[%d] must be a seat id such as A-1-5", i)
			}
			if seen[id] {
				return Order{}, problem.Invalidf("seat %s is named twice", id)
			}
			seen[id] = true
		}
		o.Seats = append([]string(nil), r.Seats...)
		o.Quantity = len(r.Seats)
	default:
		b := r.BestAvailable
		switch {
		case !b.CategoryID.Set:
			return Order{}, problem.Invalidf("best_available.category_id is required")
		case b.CategoryID.N <= 0:
			return Order{}, problem.Invalidf("best_available.category_id must be a positive integer")
		case !b.Quantity.Set:
			return Order{}, problem.Invalidf("best_available.quantity is required")
		case b.Quantity.N < 1 || b.Quantity.N > int64(maxQuantity):
			return Order{}, problem.Invalidf("best_available.quantity must be between 1 and %d", maxQuantity)
		}
		o.Best = &BestAvailable{CategoryID: b.CategoryID.N, Quantity: int(b.Quantity.N)}
		if b.Section != nil {
			if err := seatName("best_available.section", *b.Section); err != nil {
				return Order{}, err
			}
			o.Best.Section = *b.Section
		}
		o.Quantity = o.Best.Quantity
	}
	if r.Quantity.Set && r.Quantity.N != int64(o.Quantity) {
		return Order{}, problem.Invalidf("quantity is %d but %d seats are asked for; send the seats alone", r.Quantity.N, o.Quantity)
	}
	email, err := NormalizeEmail(*r.UserEmail)
	if err != nil {
		return Order{}, err
	}
	o.EventID, o.Email = r.EventID.N, email
	return o, nil
}

// Seated reports whether o asks for seats.
func (o Order) Seated() bool { return o.Seats != nil || o.Best != nil }
