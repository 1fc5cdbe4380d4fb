package hold

import (
	"testing"

	"github.com/google/uuid"
)

// FuzzParseHoldID checks hold ids in paths: only a UUID in its usual
// 36-character form is accepted, and it parses to itself.
func FuzzParseHoldID(f *testing.F) {
	for _, s := range []string{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
		"urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8", "6ba7b8109dad11d180b400c04fd430c8", "12", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if len(s) != 36 || id == uuid.Nil && s != uuid.Nil.String() {
			t.Fatalf("ParseID(%q) accepted %v", s, id)
		}
		if back, err := uuid.Parse(id.String()); err != nil || back != id {
			t.Fatalf("ParseID(%q) = %v does not round-trip", s, id)
		}
	})
}
