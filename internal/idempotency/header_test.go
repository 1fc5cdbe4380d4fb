package idempotency

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/problem"
)

func TestFromRequestReadsOneKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		values []string
		ok     bool
	}{
		{"none", nil, true},
		{"one", []string{"order-42"}, true},
		{"longest", []string{strings.Repeat("k", MaxKeyLength)}, true},
		{"blank", []string{""}, false},
		{"twice", []string{"a", "b"}, false},
		{"twice the same", []string{"a", "a"}, false},
		{"too long", []string{strings.Repeat("k", MaxKeyLength+1)}, false},
		{"a space", []string{"a b"}, false},
		{"not ascii", []string{"clé"}, false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("POST", "/holds", nil)
		for _, v := range tc.values {
			r.Header.Add(Header, v)
		}
		k, err := FromRequest(r, "scope", struct{ N int }{1})
		if tc.ok {
			if err != nil || (k == nil) != (tc.values == nil) {
				t.Errorf("%s: %v, %v", tc.name, k, err)
			}
			continue
		}
		if e, ok := err.(*problem.Error); !ok || e.Kind != problem.Invalid {
			t.Errorf("%s: %v, %v, want invalid_request", tc.name, k, err)
		}
	}
}
