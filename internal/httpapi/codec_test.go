package httpapi

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/problem"
)

type inner struct {
	CategoryID Int `json:"category_id"`
	Quantity   Int `json:"quantity"`
}

type body struct {
	EventID   Int     `json:"event_id"`
	UserEmail *string `json:"user_email"`
	Items     []inner `json:"items"`
	One       *inner  `json:"one"`
	Skipped   string  `json:"-"`
}

// Keys must be the fields' own, spelt exactly, once each, at every depth: a
// gateway that reads the body by another JSON library must see the request
// holdfast serves.
func TestDecodeBytesRefusesKeysThatAreNotExactlyAFieldOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, want string
	}{
		{"case of a key", `{"event_id":1,"Event_ID":2}`, "unknown field \"Event_ID\""},
		{"upper case", `{"event_id":1,"USER_EMAIL":"a@example.com"}`, "unknown field \"USER_EMAIL\""},
		{"repeated key", `{"event_id":1,"event_id":2}`, "event_id is given twice"},
		{"repeated through an escape", `{"event_id":1,"\u0065vent_id":2}`, "event_id is given twice"},
		{"case in an array of objects", `{"event_id":1,"items":[{"category_id":1},{"Quantity":2}]}`, "unknown field \"Quantity\""},
		{"repeat in an array of objects", `{"items":[{"quantity":1,"quantity":2}]}`, "quantity is given twice"},
		{"case in a nested object", `{"one":{"Category_id":1}}`, "unknown field \"Category_id\""},
		{"a field json ignores", `{"Skipped":"x"}`, "unknown field \"Skipped\""},
		{"a dash field", `{"-":"x"}`, "unknown field \"-\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v body
			err := DecodeBytes([]byte(tc.body), &v)
			var e *problem.Error
			if !errors.As(err, &e) || e.Kind != problem.Invalid || !strings.Contains(e.Msg, tc.want) {
				t.Fatalf("DecodeBytes(%s) = %v, want invalid_request containing %q", tc.body, err, tc.want)
			}
		})
	}
	var v body
	ok := `{"event_id":1,"user_email":"a@example.com","items":[{"category_id":1,"quantity":2},{"category_id":2,"quantity":1}],"one":null}`
	if err := DecodeBytes([]byte(ok), &v); err != nil || v.EventID.N != 1 || len(v.Items) != 2 || v.Items[1].CategoryID.N != 2 {
		t.Fatalf("DecodeBytes(%s) = %v, %+v", ok, err, v)
	}
}

// The precise messages of the decoder stay what they were.
func TestDecodeBytesKeepsItsMessages(t *testing.T) {
	t.Parallel()
	cases := []struct{ body, want string }{
		{`{"event_id":"1"}`, "event_id must be an integer"},
		{`{"event_id":1,"coupon":"x"}`, `unknown field "coupon"`},
		{`{"event_id":1`, "truncated JSON"},
		{`{"event_id":1,}`, "malformed JSON at byte"},
		{`[1]`, "request body must be a JSON object"},
		{`{"event_id":1} {}`, "data after the JSON value"},
		{`{"items":[{"quantity":"2"}]}`, "items.quantity must be an integer"},
	}
	for _, tc := range cases {
		var v body
		err := DecodeBytes([]byte(tc.body), &v)
		var e *problem.Error
		if !errors.As(err, &e) || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("DecodeBytes(%s) = %v, want a message containing %q", tc.body, err, tc.want)
		}
	}
}

// A body whose only fault is its size is refused: padded with whitespace it
// is still a valid request, so only the size cap can refuse it.
func TestDecodeRefusesABodyOverTheCapWhateverItHolds(t *testing.T) {
	t.Parallel()
	valid := `{"event_id":1,"user_email":"a@example.com"}`
	for name, raw := range map[string]string{
		"padded":     valid + strings.Repeat(" ", MaxBody),
		"long value": `{"event_id":1,"user_email":"` + strings.Repeat("a", MaxBody) + `@example.com"}`,
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/holds", strings.NewReader(raw))
		var v body
		err := Decode(rec, req, &v)
		var e *problem.Error
		if !errors.As(err, &e) || e.Kind != problem.Invalid || !strings.Contains(e.Msg, "KiB") {
			t.Errorf("%s: Decode of %d bytes = %v, want invalid_request over the size cap", name, len(raw), err)
		}
	}
	// Just under the cap passes.
	raw := valid + strings.Repeat(" ", MaxBody-len(valid))
	var v body
	if err := Decode(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/holds", strings.NewReader(raw)), &v); err != nil {
		t.Fatalf("Decode of %d bytes: %v", len(raw), err)
	}
}

func TestAppendStringWritesWhatJSONMarshalWrites(t *testing.T) {
	cases := []string{"", "waiting", "7-0123456789abcdef0123456789abcdef", "eyJhbGciOiJFZERTQSJ9.eyJhdWQiOiI3In0.c2ln",
		`a"b`, `back\slash`, "<script>&", "tab\there", "line\nfeed", "\x00\x1f\x7f", "café", "\u2028\u2029", "\xff\xfe bad utf-8", "日本"}
	// And random bytes, most of them outside the fast path's range.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("AppendString(%q) = %s, want x%s", s, got, want)
		}
	}
}

func TestAppendTimeWritesWhatJSONMarshalWrites(t *testing.T) {
	zone := time.FixedZone("east", 5*3600+30*60)
	for _, tm := range []time.Time{{}, time.UnixMilli(1764658800123).UTC(), time.Unix(1764658800, 0).UTC(),
		time.Date(2026, 12, 2, 19, 0, 0, 120000000, zone), time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)} {
		want, err := json.Marshal(tm)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendTime(nil, tm); string(got) != string(want) {
			t.Fatalf("AppendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

type appended struct{}

func (appended) AppendJSON(b []byte) []byte { return append(b, `{"own":true}`...) }

func TestEncodeWritesAnAppendersOwnJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	Encode(rec, http.StatusCreated, appended{})
	if rec.Code != http.StatusCreated || rec.Body.String() != "{\"own\":true}\n" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("Encode wrote %d %q (%s)", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"))
	}
}
