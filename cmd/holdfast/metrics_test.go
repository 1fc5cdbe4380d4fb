package main

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// scrape reads /metrics into name{labels} -> value.
func (ts *testServer) scrape() map[string]float64 {
	ts.t.Helper()
	res := ts.do("GET", "/metrics", nil)
	if res.Status != 200 {
		ts.t.Fatalf("/metrics: %d", res.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(res.Body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			ts.t.Fatalf("metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsCountWhatHappened(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.Batch = batch })
		ev := ts.newEvent(5, true)

		a, b, c := ts.mustHold(ev, 1), ts.mustHold(ev, 1), ts.mustHold(ev, 1)
		ts.do("POST", "/holds/"+a.ID+"/confirm", nil)
		ts.do("POST", "/holds/"+a.ID+"/confirm", nil) // again: not a second confirmation
		ts.do("DELETE", "/holds/"+b.ID, nil)
		ts.lapse(c.ID)
		ts.do("POST", "/holds/"+c.ID+"/confirm", nil) // 410, and expired
		ts.do("POST", "/holds", order(ev, "x@example.com", 9))
		ts.do("POST", "/book/safe", order(ev, "y@example.com", 1))
		ts.do("POST", "/book/safe", order(ev, "y@example.com", 9))

		m := ts.scrape()
		want := map[string]float64{
			"holdfast_holds_created_total":                                                                         3,
			"holdfast_holds_confirmed_total":                                                                       1,
			"holdfast_holds_released_total":                                                                        1,
			"holdfast_holds_expired_total":                                                                         1,
			`holdfast_bookings_total{endpoint="/holds",outcome="held"}`:                                            3,
			`holdfast_bookings_total{endpoint="/holds",outcome="sold_out"}`:                                        1,
			`holdfast_bookings_total{endpoint="/book/safe",outcome="booked"}`:                                      1,
			`holdfast_bookings_total{endpoint="/book/safe",outcome="sold_out"}`:                                    1,
			`holdfast_http_request_duration_seconds_count{method="DELETE",route="/holds/{id}",status="200"}`:       1,
			`holdfast_http_request_duration_seconds_count{method="POST",route="/holds/{id}/confirm",status="410"}`: 1,
			"holdfast_redis_up": 1,
		}
		for name, v := range want {
			if got, ok := m[name]; !ok || got != v {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
			}
		}
		for _, name := range []string{"holdfast_lock_wait_seconds_count", "holdfast_db_connections_in_use",
			"holdfast_sweeper_lag_seconds", "holdfast_sweeper_runs_total", "holdfast_lock_timeouts_total"} {
			if _, ok := m[name]; !ok {
				t.Errorf("%s is missing", name)
			}
		}
		if m["holdfast_lock_wait_seconds_count"] < 1 {
			t.Errorf("no lock waits recorded")
		}
		if batch && m["holdfast_hold_batch_size_count"] < 1 {
			t.Errorf("no batches recorded")
		}
		if t.Failed() {
			t.Log(fmt.Sprint(m))
		}
	})
}
