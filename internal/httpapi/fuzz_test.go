package httpapi

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/problem"
)

// FuzzParseID checks path ids: a 400 for anything but a positive integer,
// the number itself when it fits int64, and MaxInt64 (names nothing) when
// it does not.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "007", "-1", "1.5", "abc", "", "99999999999999999999", "2147483648", " 1", "+1", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseID(s, "id")
		digits := s != "" && strings.Trim(s, "0123456789") == "" && strings.Trim(s, "0") != ""
		if !digits {
			if err == nil {
				t.Fatalf("ParseID(%q) = %d, want an error", s, n)
			}
			if e, ok := err.(*problem.Error); !ok || e.Kind != problem.Invalid {
				t.Fatalf("ParseID(%q) error %v is not invalid_request", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseID(%q): %v", s, err)
		}
		if want, perr := strconv.ParseInt(s, 10, 64); perr == nil && n != want || perr != nil && n != math.MaxInt64 {
			t.Fatalf("ParseID(%q) = %d", s, n)
		}
		if n <= 0 {
			t.Fatalf("ParseID(%q) = %d, not positive", s, n)
		}
	})
}
