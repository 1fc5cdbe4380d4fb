package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestBadInputIsA4xxWithAJSONErrorAndTakesNoStock(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(10, true)
	valid := func(fields string) string {
		return fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1%s}`, ev, fields)
	}
	long := strings.Repeat("a", 250) + "@example.com"
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"empty body", ``, 400, "invalid_request"},
		{"not JSON", `hello`, 400, "invalid_request"},
		{"truncated", `{"event_id": 1, "user_em`, 400, "invalid_request"},
		{"array", `[1,2]`, 400, "invalid_request"},
		{"null", `null`, 400, "invalid_request"},
		{"unknown field", valid(`,"coupon":"FREE"`), 400, "invalid_request"},
		{"trailing data", valid(``) + ` {}`, 400, "invalid_request"},
		{"event_id string", `{"event_id":"1","user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"event_id fraction", `{"event_id":1.5,"user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"event_id zero", `{"event_id":0,"user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"event_id negative", `{"event_id":-3,"user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"event_id missing", `{"user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"event_id beyond int4", `{"event_id":3000000000,"user_email":"a@example.com","quantity":1}`, 404, "not_found"},
		{"event_id beyond int64", `{"event_id":99999999999999999999999,"user_email":"a@example.com","quantity":1}`, 404, "not_found"},
		{"event_id exponent", `{"event_id":1e3,"user_email":"a@example.com","quantity":1}`, 400, "invalid_request"},
		{"no such event", `{"event_id":2147483647,"user_email":"a@example.com","quantity":1}`, 404, "not_found"},
		{"quantity zero", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":0}`, ev), 400, "invalid_request"},
		{"quantity negative", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":-1}`, ev), 400, "invalid_request"},
		{"quantity huge", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":99999999999999999999}`, ev), 400, "invalid_request"},
		{"quantity over max", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":11}`, ev), 400, "invalid_request"},
		{"quantity fraction", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1.5}`, ev), 400, "invalid_request"},
		{"quantity bool", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":true}`, ev), 400, "invalid_request"},
		{"email missing", fmt.Sprintf(`{"event_id":%d,"quantity":1}`, ev), 400, "invalid_request"},
		{"email number", fmt.Sprintf(`{"event_id":%d,"user_email":5,"quantity":1}`, ev), 400, "invalid_request"},
		{"email empty", fmt.Sprintf(`{"event_id":%d,"user_email":"","quantity":1}`, ev), 400, "invalid_request"},
		{"email no at", fmt.Sprintf(`{"event_id":%d,"user_email":"nobody","quantity":1}`, ev), 400, "invalid_request"},
		{"email with a NUL", fmt.Sprintf(`{"event_id":%d,"user_email":"a\u0000b@example.com","quantity":1}`, ev), 400, "invalid_request"},
		{"email display name", fmt.Sprintf(`{"event_id":%d,"user_email":"Bob <bob@example.com>","quantity":1}`, ev), 400, "invalid_request"},
		{"email angle brackets", fmt.Sprintf(`{"event_id":%d,"user_email":"<bob@example.com>","quantity":1}`, ev), 400, "invalid_request"},
		{"email too long", fmt.Sprintf(`{"event_id":%d,"user_email":%q,"quantity":1}`, ev, long), 400, "invalid_request"},
		// Valid but for its size: only the size cap can refuse it.
		{"body over 64 KiB, only its size", valid(``) + strings.Repeat(" ", 64<<10), 400, "invalid_request"},
		{"body over 64 KiB", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1,"pad":"%s"}`, ev, strings.Repeat("x", 70<<10)), 400, "invalid_request"},
	}
	for _, path := range []string{"/book/safe", "/book/unsafe", "/holds"} {
		for _, tc := range cases {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				res := ts.do(http.MethodPost, path, tc.body)
				if res.Status != tc.status {
					t.Fatalf("status = %d, want %d (%s)", res.Status, tc.status, res.Body)
				}
				if _, code := res.errorBody(t); code != tc.code {
					t.Fatalf("code = %q, want %q", code, tc.code)
				}
			})
		}
	}
	if got := ts.available(ev); got != 10 {
		t.Fatalf("stock = %d after bad input, want 10", got)
	}
}

func TestSoldOutIsA400OnBook(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(3, true)
	for _, path := range []string{"/book/safe", "/book/unsafe"} {
		res := ts.do(http.MethodPost, path, fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":4}`, ev))
		if res.Status != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", path, res.Status)
		}
		if _, code := res.errorBody(t); code != "sold_out" {
			t.Fatalf("%s: code %q, want sold_out", path, code)
		}
	}
	res := ts.do(http.MethodPost, "/book/safe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":3}`, ev))
	var b struct {
		BookingID        int64  `json:"booking_id"`
		TotalAmount      string `json:"total_amount"`
		RemainingTickets int    `json:"remaining_tickets"`
		Message          string `json:"message"`
	}
	res.json(t, &b)
	if res.Status != http.StatusOK || b.TotalAmount != "76.50" || b.RemainingTickets != 0 || b.BookingID == 0 || b.Message == "" {
		t.Fatalf("booking = %d %s", res.Status, res.Body)
	}
}

func TestRoutesAnswerTheContract(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(5, true)
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/health", 200, ""},
		{"GET", "/ready", 200, ""},
		{"GET", "/events", 200, ""},
		{"GET", fmt.Sprintf("/events/%d", ev), 200, ""},
		{"GET", "/events/0", 400, "invalid_request"},
		{"GET", "/events/-1", 400, "invalid_request"},
		{"GET", "/events/abc", 400, "invalid_request"},
		{"GET", "/events/1.5", 400, "invalid_request"},
		{"GET", "/events/2147483648", 404, "not_found"},
		{"GET", "/events/999999999999999999999999", 404, "not_found"},
		{"GET", "/events?limit=0", 400, "invalid_request"},
		{"GET", "/events?limit=501", 400, "invalid_request"},
		{"GET", "/events?after=x", 400, "invalid_request"},
		{"GET", "/events?after=3000000000", 200, ""},
		{"GET", "/nowhere", 404, "not_found"},
		{"DELETE", "/events", 405, "method_not_allowed"},
		{"GET", "/book/safe", 405, "method_not_allowed"},
		{"PUT", "/health", 405, "method_not_allowed"},
	}
	for _, tc := range cases {
		res := ts.do(tc.method, tc.path, nil)
		if res.Status != tc.status {
			t.Errorf("%s %s: status %d, want %d (%s)", tc.method, tc.path, res.Status, tc.status, res.Body)
			continue
		}
		if res.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: no X-Request-Id", tc.method, tc.path)
		}
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: content type %q", tc.method, tc.path, res.Header.Get("Content-Type"))
		}
		if tc.code != "" {
			if _, code := res.errorBody(t); code != tc.code {
				t.Errorf("%s %s: code %q, want %q", tc.method, tc.path, code, tc.code)
			}
		}
	}
}

func TestEventsPage(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, ts.newEvent(i+1, true))
	}
	var page struct {
		Events []struct {
			ID           int64  `json:"id"`
			TicketPrice  string `json:"ticket_price"`
			EventDate    string `json:"event_date"`
			TotalTickets int    `json:"total_tickets"`
		} `json:"events"`
	}
	ts.do("GET", fmt.Sprintf("/events?limit=2&after=%d", ids[1]), nil).json(t, &page)
	if len(page.Events) != 2 || page.Events[0].ID != ids[2] || page.Events[1].ID != ids[3] {
		t.Fatalf("page = %+v, want events %d and %d", page.Events, ids[2], ids[3])
	}
	if page.Events[0].TicketPrice != "25.50" || page.Events[0].EventDate != "2030-01-01T20:00:00Z" || page.Events[0].TotalTickets != 3 {
		t.Fatalf("event = %+v", page.Events[0])
	}
	ts.do("GET", fmt.Sprintf("/events?after=%d", ids[4]), nil).json(t, &page)
	if len(page.Events) != 0 {
		t.Fatalf("page past the end = %+v, want empty", page.Events)
	}
}

func TestRequestIDIsEchoedAndLogged(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	res := ts.do("GET", "/events/abc", nil, "X-Request-Id", "trace-me-42")
	if got := res.Header.Get("X-Request-Id"); got != "trace-me-42" {
		t.Fatalf("X-Request-Id = %q, want the client's", got)
	}
	if !strings.Contains(ts.log.String(), "request_id=trace-me-42") {
		t.Fatalf("log lines lack the request id:\n%s", ts.log.String())
	}
	res = ts.do("GET", "/health", nil, "X-Request-Id", "bad id with spaces")
	if got := res.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Fatalf("X-Request-Id = %q, want a fresh one", got)
	}
}

func TestInternalErrorsTellTheClientNothing(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(5, true)
	// Break the database under the service: the detail must reach the log
	// and not the client.
	if _, err := ts.db().ExecContext(t.Context(), `ALTER TABLE bookings RENAME COLUMN user_email TO email_secret_detail`); err != nil {
		t.Fatal(err)
	}
	res := ts.do("POST", "/book/safe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev))
	msg, code := res.errorBody(t)
	if res.Status != 500 || code != "internal" || msg != "internal error" {
		t.Fatalf("got %d %s, want 500 internal error", res.Status, res.Body)
	}
	if !strings.Contains(ts.log.String(), "user_email") {
		t.Fatalf("the log lacks the detail:\n%s", ts.log.String())
	}
}
