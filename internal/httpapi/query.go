package httpapi

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast/internal/problem"
)

// Query is r's query string, parsed strictly: a malformed one (a stray
// ';', a bad escape) is a 400, where r.URL.Query drops the pair it cannot
// read and so answers a page the client did not ask for ("after=1;x"
// read as no after at all).
func Query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, problem.Invalidf("malformed query string")
	}
	return q, nil
}

// QueryInt reads the paging parameter name of q: def when absent; else
// exactly one value of decimal digits from lo to hi. Anything else (empty,
// signed, repeated, out of range, past int64) is a 400 naming the range.
// Every list endpoint reads its limit, offset and after with it, so they
// refuse the same things.
func QueryInt(q url.Values, name string, def, lo, hi int64) (int64, error) {
	vs, ok := q[name]
	if !ok {
		return def, nil
	}
	if len(vs) == 1 && vs[0] != "" && strings.Trim(vs[0], "0123456789") == "" {
		if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil && n >= lo && n <= hi {
			return n, nil
		}
	}
	switch {
	case hi != math.MaxInt64:
		return 0, problem.Invalidf("%s must be an integer from %d to %d", name, lo, hi)
	case lo == 0:
		return 0, problem.Invalidf("%s must be a non-negative integer", name)
	default:
		return 0, problem.Invalidf("%s must be an integer of at least %d", name, lo)
	}
}
