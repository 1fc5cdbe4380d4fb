package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// seatMapBody is a PUT body of one section "A" of rows x perRow seats of
// category cat.
func seatMapBody(rows, perRow int, cat int64) string {
	var b strings.Builder
	b.WriteString(`{"sections":[{"name":"A","rows":[`)
	for r := 1; r <= rows; r++ {
		if r > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"%d","seats":[`, r)
		for n := 1; n <= perRow; n++ {
			if n > 1 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"number":%d,"category_id":%d}`, n, cat)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}]}`)
	return b.String()
}

type seatsAnswer struct {
	Seats []struct {
		ID         string `json:"id"`
		Section    string `json:"section"`
		Row        string `json:"row"`
		Number     int    `json:"number"`
		CategoryID int64  `json:"category_id"`
		Status     string `json:"status"`
	} `json:"seats"`
}

// adminEvent makes an event of total tickets named name through the admin
// API and returns it and its default category.
func (ts *testServer) adminEvent(t *testing.T, name string, total int) (ev, cat int64) {
	t.Helper()
	res := ts.do("POST", "/admin/events", fmt.Sprintf(`{"name":%q,"event_date":"2030-07-01T18:00:00Z","total_tickets":%d,"ticket_price":"20.00"}`, name, total),
		"Authorization", "Bearer "+testToken)
	var e struct {
		ID         int64 `json:"id"`
		Categories []struct {
			ID int64 `json:"id"`
		} `json:"categories"`
	}
	res.json(t, &e)
	if res.Status != 201 || len(e.Categories) != 1 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	return e.ID, e.Categories[0].ID
}

// putSeats gives ev the seat map body of n seats.
func (ts *testServer) putSeats(t *testing.T, ev int64, body string, n int) {
	t.Helper()
	res := ts.do("PUT", fmt.Sprintf("/admin/events/%d/seats", ev), body, "Authorization", "Bearer "+testToken)
	var m seatsAnswer
	res.json(t, &m)
	if res.Status != 200 || len(m.Seats) != n {
		t.Fatalf("put seats: %d %.300s", res.Status, res.Body)
	}
}

// seatedEvent makes an event of rows x perRow seats through the admin API
// and returns it and its category.
func (ts *testServer) seatedEvent(t *testing.T, rows, perRow int) (ev, cat int64) {
	t.Helper()
	ev, cat = ts.adminEvent(t, "Hall", rows*perRow)
	ts.putSeats(t, ev, seatMapBody(rows, perRow, cat), rows*perRow)
	return ev, cat
}

func (ts *testServer) seats(t *testing.T, ev int64, query string) seatsAnswer {
	t.Helper()
	res := ts.do("GET", fmt.Sprintf("/events/%d/seats%s", ev, query), nil)
	var m seatsAnswer
	res.json(t, &m)
	if res.Status != 200 {
		t.Fatalf("seats: %d %s", res.Status, res.Body)
	}
	return m
}

type seatedHold struct {
	ID       string   `json:"id"`
	Quantity int      `json:"quantity"`
	Seats    []string `json:"seats"`
}

// Seats through the API: a map defined, read, held by name and best
// available, refused while held, and the hold's seats after it ends.
func TestSeatsAPI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	auth := []string{"Authorization", "Bearer " + testToken}
	ev, cat := ts.seatedEvent(t, 2, 4)
	if m := ts.seats(t, ev, "?section=A"); len(m.Seats) != 8 || m.Seats[0].ID != "A-1-1" || m.Seats[0].Status != "available" || m.Seats[0].Row != "1" {
		t.Fatalf("seats: %+v", m)
	}
	if m := ts.seats(t, ev, "?section=B"); len(m.Seats) != 0 {
		t.Fatalf("section B: %+v", m)
	}
	expectError(t, "seats of no event", ts.do("GET", "/events/99999999/seats", nil), 404, "not_found")
	expectError(t, "a map of no such category", ts.do("PUT", fmt.Sprintf("/admin/events/%d/seats", ev), seatMapBody(1, 1, 99999999), auth...), 404, "not_found")
	body := func(email, seats string) string {
		return fmt.Sprintf(`{"event_id":%d,"user_email":"%s",%s}`, ev, email, seats)
	}
	res := ts.do("POST", "/holds", body("a@example.com", `"seats":["A-1-2","A-1-3"]`))
	var h seatedHold
	res.json(t, &h)
	if res.Status != 201 || !slices.Equal(h.Seats, []string{"A-1-2", "A-1-3"}) || h.Quantity != 2 {
		t.Fatalf("named: %d %s", res.Status, res.Body)
	}
	res = ts.do("POST", "/holds", body("b@example.com", `"seats":["A-1-3","A-1-4"]`))
	expectError(t, "taken", res, 409, "seat_taken")
	if msg, _ := res.errorBody(t); !strings.Contains(msg, "A-1-3") || strings.Contains(msg, "A-1-4") {
		t.Fatalf("seat_taken names %q", msg)
	}
	expectError(t, "no such seat", ts.do("POST", "/holds", body("b@example.com", `"seats":["Z-1-1"]`)), 400, "invalid_request")
	expectError(t, "seat twice", ts.do("POST", "/holds", body("b@example.com", `"seats":["A-1-1","A-1-1"]`)), 400, "invalid_request")
	expectError(t, "seats and best", ts.do("POST", "/holds", body("b@example.com", fmt.Sprintf(`"seats":["A-1-1"],"best_available":{"category_id":%d,"quantity":1}`, cat))), 400, "invalid_request")
	expectError(t, "quantity alone", ts.do("POST", "/holds", body("b@example.com", `"quantity":1`)), 400, "invalid_request")
	expectError(t, "book/safe", ts.do("POST", "/book/safe", body("b@example.com", `"quantity":1`)), 400, "invalid_request")
	expectError(t, "book/safe seats", ts.do("POST", "/book/safe", body("b@example.com", `"seats":["A-1-1"]`)), 400, "invalid_request")
	res = ts.do("POST", "/holds", body("b@example.com", fmt.Sprintf(`"best_available":{"category_id":%d,"quantity":3,"section":"A"}`, cat)))
	var best seatedHold
	res.json(t, &best)
	if res.Status != 201 || !slices.Equal(best.Seats, []string{"A-2-1", "A-2-2", "A-2-3"}) {
		t.Fatalf("best: %d %s", res.Status, res.Body)
	}
	expectError(t, "map while held", ts.do("PUT", fmt.Sprintf("/admin/events/%d/seats", ev), seatMapBody(1, 1, cat), auth...), 409, "seat_map_in_use")
	expectError(t, "bad map", ts.do("PUT", fmt.Sprintf("/admin/events/%d/seats", ev), `{"sections":[{"name":"A-B","rows":[]}]}`, auth...), 400, "invalid_request")
	m := ts.seats(t, ev, "")
	status := map[string]string{}
	for _, s := range m.Seats {
		status[s.ID] = s.Status
	}
	if status["A-1-2"] != "held" || status["A-2-3"] != "held" || status["A-1-1"] != "available" {
		t.Fatalf("statuses %v", status)
	}
	if strings.Contains(string(ts.do("GET", fmt.Sprintf("/events/%d/seats", ev), nil).Body), "example.com") {
		t.Fatal("the seat map says who holds a seat")
	}
	if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil); res.Status != 200 {
		t.Fatalf("confirm: %d %s", res.Status, res.Body)
	}
	res = ts.do("DELETE", "/holds/"+best.ID, nil)
	var released seatedHold
	res.json(t, &released)
	if res.Status != 200 || !slices.Equal(released.Seats, best.Seats) {
		t.Fatalf("release: %d %s", res.Status, res.Body)
	}
	m = ts.seats(t, ev, "")
	for _, s := range m.Seats {
		status[s.ID] = s.Status
	}
	if status["A-1-2"] != "sold" || status["A-2-3"] != "available" {
		t.Fatalf("after confirm and release %v", status)
	}
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check: %s", out)
	}
}

// Buyers rush a small venue for 2 to 4 seats each, best available, through
// the whole server, with Redis up and down: no seat is held twice, every
// hold has its seats, the venue sells out to the last seat a buyer can use.
func TestSeatsRush(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(c *config) { c.AdminToken = testToken }, func(t *testing.T, ts *testServer, _ bool) {
		const rows, perRow = 8, 10
		ev, cat := ts.seatedEvent(t, rows, perRow)
		var mu sync.Mutex
		seen := map[string]string{}
		var wg sync.WaitGroup
		for g := 0; g < 24; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					qty := 2 + (g+i)%3
					res := ts.do("POST", "/holds", fmt.Sprintf(`{"event_id":%d,"user_email":"b%d-%d@example.com","best_available":{"category_id":%d,"quantity":%d}}`, ev, g, i, cat, qty))
					if res.Status == 409 && res.code() == "sold_out" {
						if qty == 2 {
							return
						}
						continue
					}
					if res.Status == 429 {
						continue
					}
					var h seatedHold
					if res.Status != 201 {
						t.Errorf("hold: %d %s", res.Status, res.Body)
						return
					}
					res.json(t, &h)
					if len(h.Seats) != qty {
						t.Errorf("hold of %d has seats %v", qty, h.Seats)
					}
					mu.Lock()
					for _, s := range h.Seats {
						if other, ok := seen[s]; ok {
							t.Errorf("seat %s held by %s and %s", s, other, h.ID)
						}
						seen[s] = h.ID
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(seen) < rows*perRow-1 {
			t.Errorf("%d of %d seats sold", len(seen), rows*perRow)
		}
		free := 0
		for _, s := range ts.seats(t, ev, "").Seats {
			if s.Status == "available" {
				free++
			}
		}
		if free != rows*perRow-len(seen) {
			t.Errorf("%d seats available, %d held of %d", free, len(seen), rows*perRow)
		}
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check: %s", out)
		}
	})
}

// Seated holds keep every rule of a hold: an idempotency key replays the
// same seats, the per-buyer cap refuses (and the seats it would have
// taken stay free), a sale window and a waiting room refuse before any
// seat is taken.
func TestSeatsKeepTheRules(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken; c.TicketCap = 4 })
	auth := []string{"Authorization", "Bearer " + testToken}
	ev, cat := ts.seatedEvent(t, 2, 5)
	best := func(email string, qty int) string {
		return fmt.Sprintf(`{"event_id":%d,"user_email":"%s","best_available":{"category_id":%d,"quantity":%d}}`, ev, email, cat, qty)
	}
	first := ts.do("POST", "/holds", best("a@example.com", 3), "Idempotency-Key", "seat-key-1")
	again := ts.do("POST", "/holds", best("a@example.com", 3), "Idempotency-Key", "seat-key-1")
	if first.Status != 201 || again.Status != 201 || string(first.Body) != string(again.Body) {
		t.Fatalf("replay: %d %s, then %d %s", first.Status, first.Body, again.Status, again.Body)
	}
	expectError(t, "over the cap", ts.do("POST", "/holds", best("a@example.com", 2)), 409, "limit_exceeded")
	expectError(t, "named, over the cap", ts.do("POST", "/holds", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","seats":["A-2-1","A-2-2"]}`, ev)), 409, "limit_exceeded")
	available := 0
	for _, s := range ts.seats(t, ev, "").Seats {
		if s.Status == "available" {
			available++
		}
	}
	if available != 7 {
		t.Fatalf("%d seats available after one hold of 3 and two refusals, want 7", available)
	}
	// The refused pair's seats (row 1's last two) went back: the next buyer
	// gets them.
	var h seatedHold
	res := ts.do("POST", "/holds", best("b@example.com", 2))
	res.json(t, &h)
	if res.Status != 201 || !slices.Equal(h.Seats, []string{"A-1-4", "A-1-5"}) {
		t.Fatalf("next pair: %d %s", res.Status, res.Body)
	}
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"off_sale_at":"2001-01-01T00:00:00Z"}`, auth...); res.Status != 200 {
		t.Fatalf("close the sale: %d %s", res.Status, res.Body)
	}
	expectError(t, "sale closed", ts.do("POST", "/holds", best("c@example.com", 2)), 403, "sale_closed")
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"off_sale_at":null,"queue":{"admit_per_second":5}}`, auth...); res.Status != 200 {
		t.Fatalf("queue: %d %s", res.Status, res.Body)
	}
	expectError(t, "queued", ts.do("POST", "/holds", best("c@example.com", 2)), 403, "queue_required")
	if out, ok := ts.check(ev); !ok {
		t.Fatalf("check: %s", out)
	}
}

// An event's total moves its only category (schema/011), so it cannot move
// when that category is seated; it can whenever the event has several
// categories or none seated. The check asked whether a category whose id
// was the event's id had seats: here B's id is the id of A's seated
// category, so B was refused, while S, whose only category is seated, was
// let change its total and then sold fewer seats than it had free. And an
// event total that took its only category below what it holds was a 500.
func TestAnEventsTotalNeverMovesASeatedCategory(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	auth := []string{"Authorization", "Bearer " + testToken}
	a, _ := ts.adminEvent(t, "A", 100) // event 1, category 1
	var seated struct {
		ID int64 `json:"id"`
	}
	res := ts.do("POST", fmt.Sprintf("/admin/events/%d/categories", a), `{"name":"Seated","price":"10.00","total_tickets":4}`, auth...)
	res.json(t, &seated)
	ts.putSeats(t, a, seatMapBody(1, 4, seated.ID), 4)
	b, _ := ts.adminEvent(t, "B", 10)
	if b != seated.ID {
		t.Fatalf("B is event %d, A's seated category %d: the ids must meet for this test", b, seated.ID)
	}
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", b), `{"total_tickets":20}`, auth...); res.Status != 200 {
		t.Fatalf("a plain event's total: %d %s", res.Status, res.Body)
	}
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", a), `{"total_tickets":120}`, auth...); res.Status != 200 {
		t.Fatalf("the total of an event of two categories, one seated: %d %s", res.Status, res.Body)
	}
	s, cat := ts.adminEvent(t, "S", 4)
	ts.putSeats(t, s, seatMapBody(1, 4, cat), 4)
	expectError(t, "the total of an event whose only category is seated",
		ts.do("PATCH", fmt.Sprintf("/admin/events/%d", s), `{"total_tickets":2}`, auth...), 400, "invalid_request")
	if res := ts.do("POST", "/holds", fmt.Sprintf(`{"event_id":%d,"user_email":"a@example.com","seats":["A-1-1","A-1-2","A-1-3"]}`, s)); res.Status != 201 {
		t.Fatalf("3 of its 4 seats: %d %s", res.Status, res.Body)
	}
	// One category with less room than its event (its own total lowered):
	// the event's total can take it no lower than what it holds.
	h, hcat := ts.adminEvent(t, "H", 100)
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d/categories/%d", h, hcat), `{"total_tickets":10}`, auth...); res.Status != 200 {
		t.Fatalf("the category's total: %d %s", res.Status, res.Body)
	}
	expectError(t, "an event's total that takes its only category below zero",
		ts.do("PATCH", fmt.Sprintf("/admin/events/%d", h), `{"total_tickets":50}`, auth...), 409, "total_below_held")
	for _, ev := range []int64{a, b, s, h} {
		if out, ok := ts.check(ev); !ok {
			t.Fatalf("check of event %d: %s", ev, out)
		}
	}
}
