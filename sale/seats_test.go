package sale

import (
	"encoding/json"
	"testing"
)

// A section's or row's name is part of every seat id of it: nothing in it
// may look like a space or a break, be invisible, or stand for bytes that
// were not UTF-8.
func TestSeatNames(t *testing.T) {
	for _, bad := range []string{"", "a b", "a\u00a0b", "a\u2028", "a\u2029b", "\u3000", "\ufffd", "a-b", "a,b", "a\tb", "a\u200bb", "a\u202eb"} {
		if seatName("name", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"A", "Orchestra", "1", "\u00c9lite", "\u6771", "Row_12"} {
		if err := seatName("name", good); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
}

// A section's rows and a row's seats are required, as the OpenAPI
// document says: an empty list is a choice, a missing one a mistake.
func TestASeatMapNamesItsRowsAndSeats(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"sections":[{"name":"A"}]}`:                                  false,
		`{"sections":[{"name":"A","rows":null}]}`:                      false,
		`{"sections":[{"name":"A","rows":[{"name":"1"}]}]}`:            false,
		`{"sections":[{"name":"A","rows":[]}]}`:                        true,
		`{"sections":[{"name":"A","rows":[{"name":"1","seats":[]}]}]}`: true,
	} {
		var r SeatMapRequest
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Map(); (err == nil) != ok {
			t.Errorf("%s: %v, want ok %v", body, err, ok)
		}
	}
}
