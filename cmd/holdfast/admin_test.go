package main

import (
	"fmt"
	"strings"
	"testing"
)

const testToken = "test-admin-token-0123456789"

func TestAdminIsNotFoundWithoutAToken(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	expectError(t, "POST /admin/events", ts.do("POST", "/admin/events", `{}`, "Authorization", "Bearer x"), 404, "not_found")
	expectError(t, "PATCH /admin/events/1", ts.do("PATCH", "/admin/events/1", `{}`), 404, "not_found")
}

func TestAdminEvents(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	auth := []string{"Authorization", "Bearer " + testToken}
	body := `{"name":"Night Market","description":"stalls","event_date":"2027-07-01T18:00:00+02:00","total_tickets":10,"ticket_price":"12.50"}`

	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong-token-xxxxxxxxxx"}, {"Authorization", testToken}} {
		res := ts.do("POST", "/admin/events", body, h...)
		expectError(t, fmt.Sprintf("auth %v", h), res, 401, "unauthorized")
		if res.Header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	res := ts.do("POST", "/admin/events", body, auth...)
	var ev struct {
		ID               int64  `json:"id"`
		Name             string `json:"name"`
		EventDate        string `json:"event_date"`
		TotalTickets     int    `json:"total_tickets"`
		AvailableTickets int    `json:"available_tickets"`
		TicketPrice      string `json:"ticket_price"`
	}
	res.json(t, &ev)
	if res.Status != 201 || ev.TotalTickets != 10 || ev.AvailableTickets != 10 || ev.TicketPrice != "12.50" || ev.EventDate != "2027-07-01T16:00:00Z" {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	for _, bad := range []string{
		`{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10}`,
		`{"name":"","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x","event_date":"tomorrow","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":-1,"ticket_price":"1.00"}`,
		`{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":1.5}`,
		`{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.005"}`,
		`{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"100000000.00"}`,
		`{"name":"` + strings.Repeat("n", 256) + `","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x","event_date":"9999-12-31T23:00:00-05:00","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x","event_date":"0000-01-01T00:00:00+05:00","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x\u0000y","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`,
		`{"name":"x","description":"\u0000","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`,
	} {
		expectError(t, "create "+bad, ts.do("POST", "/admin/events", bad, auth...), 400, "invalid_request")
	}

	// Held and sold tickets stay; the available count moves with the total.
	h := ts.mustHold(ev.ID, 3)
	ts.do("POST", "/holds/"+h.ID+"/confirm", nil)
	ts.mustHold(ev.ID, 2)
	patch := func(body string) response {
		return ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev.ID), body, auth...)
	}
	res = patch(`{"total_tickets":20,"ticket_price":"15.00"}`)
	res.json(t, &ev)
	if res.Status != 200 || ev.TotalTickets != 20 || ev.AvailableTickets != 15 || ev.TicketPrice != "15.00" || ev.Name != "Night Market" {
		t.Fatalf("raise: %d %s", res.Status, res.Body)
	}
	res = patch(`{"total_tickets":5,"name":"Night Market II"}`)
	res.json(t, &ev)
	if res.Status != 200 || ev.TotalTickets != 5 || ev.AvailableTickets != 0 || ev.Name != "Night Market II" {
		t.Fatalf("lower to what is held and sold: %d %s", res.Status, res.Body)
	}
	expectError(t, "below held and sold", patch(`{"total_tickets":4}`), 409, "total_below_held")
	expectError(t, "empty patch", patch(`{}`), 400, "invalid_request")
	expectError(t, "unknown field", patch(`{"available_tickets":100}`), 400, "invalid_request")
	expectError(t, "no such event", ts.do("PATCH", "/admin/events/2147483647", `{"name":"x"}`, auth...), 404, "not_found")
	expectError(t, "malformed id", ts.do("PATCH", "/admin/events/abc", `{"name":"x"}`, auth...), 400, "invalid_request")
	if res := ts.do("GET", "/events", nil); res.Status != 200 {
		t.Fatalf("GET /events after the bad input: %d %s", res.Status, res.Body)
	}
	if out, ok := ts.check(ev.ID); !ok {
		t.Fatalf("check:\n%s", out)
	}
}
