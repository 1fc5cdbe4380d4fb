package sale

import (
	"encoding/json"
	"net/mail"
	"reflect"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// FuzzRequestDecoding feeds arbitrary bodies through the decoding and
// validation every write endpoint uses: it must never panic, and whatever it
// accepts must be a valid order that survives a round trip.
func FuzzRequestDecoding(f *testing.F) {
	for _, seed := range []string{
		`{"event_id":1,"user_email":"a@example.com","quantity":2}`,
		`{"event_id":"1","user_email":"a@example.com","quantity":2}`,
		`{"event_id":1e3,"user_email":"a@example.com","quantity":2}`,
		`{"event_id":99999999999999999999,"user_email":"a@example.com","quantity":2}`,
		`{"event_id":1,"user_email":"Bob <bob@example.com>","quantity":2}`,
		`{"event_id":1,"user_email":"a@example.com","quantity":2} {}`,
		`{"event_id":1,"user_email":"a@example.com","quantity":2,"x":1}`,
		`{"event_id":1,"user_email":"a@example.com"`,
		`{"event_id":1,"Event_ID":2,"user_email":"a@example.com","quantity":2}`,
		`{"event_id":1,"event_id":2,"user_email":"a@example.com","quantity":2}`,
		`{"EVENT_ID":1,"USER_EMAIL":"a@example.com","QUANTITY":2}`,
		`{"event_id":1,"user_email":"a@example.com","items":[{"category_id":1,"quantity":2},{"category_id":2,"quantity":1}]}`,
		`{"event_id":1,"user_email":"a@example.com","items":[{"category_id":1,"quantity":2},{"category_id":1,"quantity":1}]}`,
		`{"event_id":1,"user_email":"a@example.com","items":[{"Category_ID":1,"quantity":2}]}`,
		`{"event_id":1,"user_email":"a@example.com","items":[]}`,
		`[]`, `null`, ``, `{"quantity":-0}`, `{"event_id":1,"user_email":"\u0000@x","quantity":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req Request
		if err := httpapi.DecodeBytes(body, &req); err != nil {
			if _, ok := err.(*problem.Error); !ok {
				t.Fatalf("decode error %v is not a client error", err)
			}
			return
		}
		o, err := req.Order(10)
		if err != nil {
			if e, ok := err.(*problem.Error); !ok || e.Kind != problem.Invalid {
				t.Fatalf("validation error %v is not invalid_request", err)
			}
			return
		}
		if o.EventID <= 0 || o.Quantity < 1 || o.Quantity > 10 || utf8.RuneCountInString(o.Email) > MaxEmailLength || !norm.NFC.IsNormalString(o.Email) {
			t.Fatalf("accepted a bad order %+v from %q", o, body)
		}
		if a, err := mail.ParseAddress(o.Email); err != nil || a.Name != "" || a.Address != o.Email {
			t.Fatalf("accepted email %q that is not a bare address", o.Email)
		}
		again, _ := json.Marshal(o)
		var back Request
		if err := httpapi.DecodeBytes(again, &back); err != nil {
			t.Fatalf("re-encoded order %s does not decode: %v", again, err)
		}
		if o2, err := back.Order(10); err != nil || !reflect.DeepEqual(o2, o) {
			t.Fatalf("round trip %+v -> %+v (%v)", o, o2, err)
		}
	})
}

// FuzzFoldASCII holds fold's short cut for ASCII to the full fold: the
// fuzzer's bytes, masked to ASCII, fold the same either way.
func FuzzFoldASCII(f *testing.F) {
	for _, seed := range []string{"Ann@Example.COM", "a@xn--MNCHEN-3ya.de", "\x00\x1f\x7f@A", "Z[`a{"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := range b {
			b[i] &= 0x7f
		}
		s := string(b)
		if got, want := fold(s), foldUnicode(s); got != want {
			t.Fatalf("fold(%q) = %q, the full fold %q", s, got, want)
		}
	})
}
