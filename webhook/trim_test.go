package webhook

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// An attempt's error is kept cut to a length; cut inside a multi-byte
// character it was not UTF-8, which PostgreSQL refuses, failing the record
// of its whole batch of attempts.
func TestTrimKeepsUTF8(t *testing.T) {
	s := strings.Repeat("a", 299) + "é and more"
	got := trim(s, 300)
	if !utf8.ValidString(got) || len(got) > 300 || !strings.HasPrefix(s, got) {
		t.Fatalf("trim = %q (%d bytes, valid %v)", got, len(got), utf8.ValidString(got))
	}
}
