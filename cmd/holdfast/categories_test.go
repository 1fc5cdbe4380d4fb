package main

import (
	"fmt"
	"strings"
	"testing"
)

// Categories through the API: an admin adds one and changes it, the event
// shows them, a hold takes items, all or nothing, and the seed's body then
// needs a category.
func TestCategoriesAndHoldsOfSeveralItems(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	auth := []string{"Authorization", "Bearer " + testToken}
	res := ts.do("POST", "/admin/events", `{"name":"Hall","event_date":"2030-07-01T18:00:00Z","total_tickets":10,"ticket_price":"20.00"}`, auth...)
	var ev struct {
		ID         int64 `json:"id"`
		Categories []struct {
			ID               int64  `json:"id"`
			Name             string `json:"name"`
			Price            string `json:"price"`
			TotalTickets     int    `json:"total_tickets"`
			AvailableTickets int    `json:"available_tickets"`
		} `json:"categories"`
	}
	res.json(t, &ev)
	if res.Status != 201 || len(ev.Categories) != 1 || ev.Categories[0].TotalTickets != 10 || ev.Categories[0].Price != "20.00" {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	def := ev.Categories[0].ID
	// The seed's body takes the only category.
	res = ts.do("POST", "/holds", order(ev.ID, "seed@example.com", 1))
	if res.Status != 201 || !strings.Contains(string(res.Body), fmt.Sprintf(`"category_id":%d`, def)) {
		t.Fatalf("seed's body hold: %d %s", res.Status, res.Body)
	}
	cats := fmt.Sprintf("/admin/events/%d/categories", ev.ID)
	res = ts.do("POST", cats, `{"name":"VIP","price":"80.00","total_tickets":2}`, auth...)
	var vip struct {
		ID               int64 `json:"id"`
		TotalTickets     int   `json:"total_tickets"`
		AvailableTickets int   `json:"available_tickets"`
	}
	res.json(t, &vip)
	if res.Status != 201 || vip.TotalTickets != 2 || vip.AvailableTickets != 2 {
		t.Fatalf("add VIP: %d %s", res.Status, res.Body)
	}
	for _, bad := range []string{`{"name":"x","total_tickets":2}`, `{"name":"x","price":"1.00","total_tickets":-1}`, `{"name":"","price":"1.00","total_tickets":1}`} {
		expectError(t, "add "+bad, ts.do("POST", cats, bad, auth...), 400, "invalid_request")
	}
	expectError(t, "add to no event", ts.do("POST", "/admin/events/99999999/categories", `{"name":"x","price":"1.00","total_tickets":1}`, auth...), 404, "not_found")

	body := func(items string) string {
		return fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","items":%s}`, ev.ID, items)
	}
	expectError(t, "seed's body, two categories", ts.do("POST", "/holds", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev.ID)), 400, "category_required")
	expectError(t, "book/safe, two categories", ts.do("POST", "/book/safe", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","quantity":1}`, ev.ID)), 400, "category_required")
	expectError(t, "book/safe with items", ts.do("POST", "/book/safe", body(fmt.Sprintf(`[{"category_id":%d,"quantity":1}]`, vip.ID))), 400, "invalid_request")
	// A category id that names nothing, as any id in a body: 404.
	expectError(t, "no such category", ts.do("POST", "/holds", body(`[{"category_id":99999999,"quantity":1}]`)), 404, "not_found")
	expectError(t, "a category past the column", ts.do("POST", "/holds", body(`[{"category_id":2147483648,"quantity":1}]`)), 404, "not_found")
	expectError(t, "a category twice", ts.do("POST", "/holds", body(fmt.Sprintf(`[{"category_id":%d,"quantity":1},{"category_id":%d,"quantity":1}]`, vip.ID, vip.ID))), 400, "invalid_request")
	expectError(t, "more than max quantity", ts.do("POST", "/holds", body(fmt.Sprintf(`[{"category_id":%d,"quantity":6},{"category_id":%d,"quantity":5}]`, def, vip.ID))), 400, "invalid_request")
	res = ts.do("POST", "/holds", body(fmt.Sprintf(`[{"category_id":%d,"quantity":3},{"category_id":%d,"quantity":1}]`, vip.ID, def)))
	expectError(t, "3 VIP of 2", res, 409, "sold_out")
	if !strings.Contains(string(res.Body), fmt.Sprint(vip.ID)) {
		t.Fatalf("sold_out does not name category %d: %s", vip.ID, res.Body)
	}
	res = ts.do("POST", "/holds", body(fmt.Sprintf(`[{"category_id":%d,"quantity":2},{"category_id":%d,"quantity":1}]`, vip.ID, def)))
	if res.Status != 201 || !strings.Contains(string(res.Body), `"total_amount":"180.00"`) || !strings.Contains(string(res.Body), `"amount":"160.00"`) {
		t.Fatalf("2 VIP and 1: %d %s", res.Status, res.Body)
	}
	patch := func(body string) response {
		return ts.do("PATCH", fmt.Sprintf("%s/%d", cats, vip.ID), body, auth...)
	}
	expectError(t, "below held", patch(`{"total_tickets":1}`), 409, "total_below_held")
	res = patch(`{"total_tickets":5,"price":"90.00"}`)
	res.json(t, &vip)
	if res.Status != 200 || vip.TotalTickets != 5 || vip.AvailableTickets != 3 {
		t.Fatalf("raise VIP: %d %s", res.Status, res.Body)
	}
	expectError(t, "no such category", ts.do("PATCH", fmt.Sprintf("%s/99999999", cats), `{"total_tickets":5}`, auth...), 404, "not_found")
	res = ts.do("GET", fmt.Sprintf("/events/%d", ev.ID), nil)
	res.json(t, &ev)
	if res.Status != 200 || len(ev.Categories) != 2 || ev.Categories[1].AvailableTickets != 3 || ev.Categories[0].AvailableTickets != 8 {
		t.Fatalf("event: %d %s", res.Status, res.Body)
	}
}
