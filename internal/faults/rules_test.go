package faults

import (
	"testing"
	"time"
)

// The suite's 5xx rule on its own, without a cluster: only a 503 whose
// body says unavailable is forgiven; every other 5xx is counted bad.
func TestOnlyUnavailable503sAreForgiven(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	w := window{from: t0, to: t0.Add(time.Second)}
	at := func(d time.Duration, status int, code string) answer {
		return answer{start: t0.Add(d), end: t0.Add(d + 10*time.Millisecond), status: status, code: code}
	}
	recs := []record{{answers: []answer{
		at(0, 201, ""),
		at(0, 0, ""), // no answer at all: a killed instance
		at(0, 409, "sold_out"),
		at(0, 429, "busy"),
		at(500*time.Millisecond, 503, "unavailable"), // in the window
		at(2*time.Second, 503, "unavailable"),        // in the grace after it
		at(time.Minute, 503, "unavailable"),          // outside: allowed, noted
		at(0, 200, "bad_body"),
		at(0, 500, "internal"),
		at(0, 502, ""),
		at(0, 504, ""),
		at(0, 503, ""),
		at(0, 503, "internal"),
	}}}
	bad, inWindow, outside := serverErrors(recs, w)
	if inWindow != 2 || outside != 1 {
		t.Errorf("503 unavailable: %d in the window, %d outside; want 2 and 1", inWindow, outside)
	}
	if got, want := badCounts(bad), `{200 "bad_body":1 500 "internal":1 502 "":1 503 "":1 503 "internal":1 504 "":1}`; got != want {
		t.Errorf("bad answers %s, want %s", got, want)
	}
	for _, tc := range []struct {
		status int
		body   string
		want   bool
	}{
		{503, `{"error":"the database is not answering","code":"unavailable"}`, true},
		{503, `{"error":"x","code":"internal"}`, false},
		{503, `service unavailable`, false},
		{500, `{"error":"internal error","code":"unavailable"}`, false},
	} {
		if got := unavailable(tc.status, []byte(tc.body)); got != tc.want {
			t.Errorf("unavailable(%d, %s) = %v, want %v", tc.status, tc.body, got, tc.want)
		}
	}
}
