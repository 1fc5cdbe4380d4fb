package httpapi

import (
	"encoding/json"
	"math"
	"reflect"
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

type keysMap struct {
	Tags map[string]inner `json:"tags"`
	Any  any              `json:"any"`
	Many [2]*inner        `json:"many"`
	Inner
}

// Inner is embedded in keysMap without a tag, so its fields are promoted.
type Inner struct {
	Note string `json:"note"`
}

// FuzzCheckKeys holds the byte scan of checkKeys to the token walk it
// replaced: on every valid JSON text, for types with structs, slices,
// arrays, pointers, maps and their own decoders, the same answer.
func FuzzCheckKeys(f *testing.F) {
	for _, s := range []string{
		`{"event_id":1,"user_email":"a@example.com","items":[{"category_id":1,"quantity":2}],"one":null}`,
		`{"event_id":1,"Event_ID":2}`, `{"event_id":1,"\u0065vent_id":2}`, `{"items":[{"quantity":1,"quantity":2}]}`,
		`{"one":{"Category_id":1}}`, `{"-":"x"}`, `{"a\xffb":1,"a\xfeb":2}`, `[{"a":1},{"a":1,"a":2}]`,
		`{"tags":{"x":{"quantity":1},"x":{}}}`, `{"tags":{"x":{"Quantity":1}}}`, `{"any":{"k":[{"k":1,"k":2}]}}`,
		`{"many":[{"quantity":1},{"quantity":1,"quantity":2}]}`, `{"note":"n","note":"m"}`, ` { "a" : [ 1 , -2.5e3 , true , null , "s\"" ] } `,
		`{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k3":1}`,
		`"just a string"`, `12`, `[]`, `{}`,
	} {
		f.Add(s)
	}
	types := []reflect.Type{reflect.TypeFor[body](), reflect.TypeFor[*body](), reflect.TypeFor[keysMap](), reflect.TypeFor[[]inner](), reflect.TypeFor[any](), reflect.TypeFor[map[string]any]()}
	f.Fuzz(func(t *testing.T, s string) {
		raw := []byte(s)
		if !json.Valid(raw) {
			return
		}
		for _, typ := range types {
			got, want := checkKeys(raw, typ), checkKeysByTokens(raw, typ)
			if (got == nil) != (want == nil) || got != nil && got.Msg != want.Msg {
				t.Fatalf("checkKeys(%q, %v) = %v, the token walk says %v", s, typ, got, want)
			}
		}
	})
}
