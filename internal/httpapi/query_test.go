package httpapi

import (
	"errors"
	"math"
	"net/http/httptest"
	"testing"

	"github.com/holdfast/holdfast/internal/problem"
)

func TestQueryIntTakesOneValueOfDigitsInItsRange(t *testing.T) {
	for _, c := range []struct {
		query string
		want  int64
		ok    bool
	}{
		{"", 7, true}, {"limit=1", 1, true}, {"limit=100", 100, true}, {"limit=007", 7, true}, {"other=x", 7, true},
		{"limit=0", 0, false}, {"limit=101", 0, false}, {"limit=", 0, false}, {"limit=+5", 0, false}, {"limit=-1", 0, false},
		{"limit=1x", 0, false}, {"limit=1&limit=2", 0, false}, {"limit=%205", 0, false}, {"limit=1.0", 0, false},
		{"limit=99999999999999999999", 0, false},
	} {
		r := httptest.NewRequest("GET", "/x?"+c.query, nil)
		q, err := Query(r)
		if err != nil {
			t.Fatalf("%q: %v", c.query, err)
		}
		n, err := QueryInt(q, "limit", 7, 1, 100)
		var p *problem.Error
		switch {
		case c.ok && (err != nil || n != c.want):
			t.Errorf("%q: %d, %v; want %d", c.query, n, err, c.want)
		case !c.ok && !errors.As(err, &p):
			t.Errorf("%q: %d, %v; want a problem", c.query, n, err)
		case !c.ok && p.Kind != problem.Invalid:
			t.Errorf("%q: kind %v, want invalid", c.query, p.Kind)
		}
	}
}

func TestQueryIntSaysTheRangeItWanted(t *testing.T) {
	q := map[string][]string{"n": {"x"}}
	for _, c := range []struct {
		lo, hi int64
		want   string
	}{
		{1, 500, "n must be an integer from 1 to 500"},
		{0, math.MaxInt64, "n must be a non-negative integer"},
		{2, math.MaxInt64, "n must be an integer of at least 2"},
	} {
		_, err := QueryInt(q, "n", 0, c.lo, c.hi)
		if p, ok := err.(*problem.Error); !ok || p.Msg != c.want {
			t.Errorf("range %d to %d: %v, want %q", c.lo, c.hi, err, c.want)
		}
	}
}

func TestQueryRefusesAMalformedQueryString(t *testing.T) {
	for _, raw := range []string{"after=1;x", "after=%zz"} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.URL.RawQuery = raw
		if _, err := Query(r); err == nil {
			t.Errorf("%q parsed", raw)
		}
	}
}
