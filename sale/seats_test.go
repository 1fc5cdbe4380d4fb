package sale

import "testing"

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
