package sale

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// orderOf decodes body as a request and validates it, as every write
// endpoint does.
func orderOf(t *testing.T, body string) (Order, error) {
	t.Helper()
	var req Request
	if err := httpapi.DecodeBytes([]byte(body), &req); err != nil {
		return Order{}, err
	}
	return req.Order(10)
}

// Emails that used to be accepted as they came: characters that make one
// address look like another or like nothing, invalid UTF-8 (stored as
// U+FFFD), and a length counted in bytes.
func TestEmailsAreRefusedOrNormalised(t *testing.T) {
	t.Parallel()
	body := func(email string) string {
		return `{"event_id":1,"user_email":"` + email + `","quantity":1}`
	}
	refused := []struct{ name, email string }{
		{"zero-width space", "a\u200b@example.com"},
		{"zero-width joiner", "a\u200d@example.com"},
		{"soft hyphen", "a\u00adb@example.com"},
		{"byte order mark", "\ufeffa@example.com"},
		{"bidi override", "a\u202e@example.com"},
		{"bidi isolate", "a\u2066b@example.com"},
		{"next line U+0085", "a\u0085@example.com"},
		{"NUL", "a\u0000@example.com"},
		{"invalid UTF-8", "a\xff@example.com"},
		{"replacement character", "a\ufffd@example.com"},
		{"255 characters", strings.Repeat("é", 255-len("@example.com")) + "@example.com"},
	}
	for _, c := range refused {
		if o, err := orderOf(t, body(c.email)); err == nil {
			t.Errorf("%s: accepted as %q", c.name, o.Email)
		} else if e, ok := err.(*problem.Error); !ok || e.Kind != problem.Invalid {
			t.Errorf("%s: %v, want invalid_request", c.name, err)
		}
	}
	// 254 characters of two bytes each: over 254 bytes, within the limit.
	long := strings.Repeat("é", 254-len("@example.com")) + "@example.com"
	if _, err := orderOf(t, body(long)); err != nil {
		t.Errorf("254 characters (%d bytes): %v", len(long), err)
	}
	// NFD in, NFC out: é as e and a combining acute is stored as one é.
	o, err := orderOf(t, body("e\u0301@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Email != "\u00e9@example.com" {
		t.Errorf("NFD email stored as %q, want the NFC %q", o.Email, "\u00e9@example.com")
	}
	// 254 characters in NFD that NFC shortens are within the limit too.
	nfd := strings.Repeat("e\u0301", 254-len("@example.com")) + "@example.com"
	if _, err := orderOf(t, body(nfd)); err != nil {
		t.Errorf("254 characters after NFC: %v", err)
	}
}

// Every spelling of one address has one buyer key; other addresses have
// others.
func TestBuyerKeyFoldsEverySpellingOfOneAddress(t *testing.T) {
	t.Parallel()
	same := [][]string{
		{"\u00e9@example.com", "e\u0301@example.com", "\u00c9@EXAMPLE.com", "E\u0301@example.COM"},
		{"strasse@example.com", "straße@example.com", "STRASSE@example.com"},
		{"ann@example.com", "ＡＮＮ@example.com", "Ann@Example.Com"},
		{"fi@example.com", "\ufb01@example.com"}, // the ligature, as the database fallback folds it too
		// A domain as its A-label (punycode) or its U-label is one domain.
		{"a@m\u00fcnchen.de", "a@xn--mnchen-3ya.de", "A@XN--MNCHEN-3YA.DE", "a@M\u00dcNCHEN.de", "a@\uff58\uff4e--mnchen-3ya.de"},
		// A label that does not decode keeps its spelling, the others not.
		{"a@m\u00fcnchen.xn--zz", "a@xn--mnchen-3ya.xn--zz"},
		// Characters no one sees that are not Cc or Cf (which the email
		// rules refuse): Unicode's default ignorables, which case folding
		// for identifiers (NFKC_Casefold) removes.
		{"a@example.com", "a\u034f@example.com", "a\ufe0f@example.com", "a\u3164@example.com", "a@exam\u115fple.com"},
	}
	for _, spellings := range same {
		want := BuyerKey(spellings[0])
		for _, s := range spellings[1:] {
			if got := BuyerKey(s); got != want {
				t.Errorf("BuyerKey(%q) = %q, BuyerKey(%q) = %q: one buyer", s, got, spellings[0], want)
			}
		}
		for _, s := range spellings {
			if key := BuyerKey(s); BuyerKey(key) != key {
				t.Errorf("BuyerKey is not stable: %q -> %q -> %q", s, key, BuyerKey(key))
			}
		}
	}
	if BuyerKey("ann@example.com") == BuyerKey("anne@example.com") {
		t.Error("two addresses share a key")
	}
}

// Every ASCII character folds by the short cut as by the full fold, alone
// and between letters (FuzzFoldASCII tries longer strings).
func TestFoldOfASCIIIsTheFullFold(t *testing.T) {
	t.Parallel()
	for c := 0; c < utf8.RuneSelf; c++ {
		for _, s := range []string{string(rune(c)), "A" + string(rune(c)) + "z"} {
			if got, want := fold(s), foldUnicode(s); got != want {
				t.Errorf("fold(%q) = %q, the full fold %q", s, got, want)
			}
		}
	}
}
