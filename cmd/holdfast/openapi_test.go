package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/apidoc"
	"github.com/holdfast/holdfast/internal/testenv"
)

// TestOpenAPICoversEveryRoute walks the real router and checks it against
// internal/apidoc's document both ways: every route and method it has must
// be documented, so a route cannot be added without its entry, and every
// documented operation must be served, /openapi.json included, so none can
// be unmounted while the document still promises it. chi patterns such as
// /holds/{id} are OpenAPI paths as they are.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.JSON())
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	// Every route that depends on a setting is mounted: --unsafe-demo
	// mounts /book/unsafe (the harness turns it on; so does this test, in
	// case that changes), an admin token mounts /admin.
	ts := newTestServer(t, func(c *config) {
		c.UnsafeDemo = true
		c.AdminToken = "openapi-test-admin-token"
	})

	routes, ok := ts.app.handler.(chi.Routes)
	if !ok {
		t.Fatalf("the app's handler is a %T, not a chi router", ts.app.handler)
	}
	var walked []string
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		walked = append(walked, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	if len(walked) == 0 {
		t.Fatal("the router lists no routes")
	}
	var documented []string
	for _, path := range doc.Paths.InMatchingOrder() {
		for method := range doc.Paths.Value(path).Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	slices.Sort(walked)
	slices.Sort(documented)
	for _, r := range walked {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not in internal/apidoc/openapi.json", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(walked, op) {
			t.Errorf("%s is in internal/apidoc/openapi.json but the router does not serve it (with --unsafe-demo and an admin token)", op)
		}
	}
	if !slices.Contains(walked, "GET /openapi.json") {
		t.Fatal("GET /openapi.json is not mounted")
	}
	res := ts.do(http.MethodGet, "/openapi.json", nil)
	if res.Status != http.StatusOK {
		t.Fatalf("GET /openapi.json: status %d, want 200: %s", res.Status, res.Body)
	}
	if got := res.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("GET /openapi.json: Content-Type = %q, want application/json", got)
	}
	if !bytes.Equal(res.Body, apidoc.JSON()) {
		t.Errorf("GET /openapi.json serves %d bytes that are not internal/apidoc's document (%d bytes)", len(res.Body), len(apidoc.JSON()))
	}
	served, err := openapi3.NewLoader().LoadFromData(res.Body)
	if err != nil {
		t.Fatalf("GET /openapi.json: %v", err)
	}
	if err := served.Validate(context.Background()); err != nil {
		t.Errorf("GET /openapi.json serves an invalid document: %v", err)
	}
}

// TestEveryRouteAnswersAsDocumentedWithoutPostgres stops PostgreSQL under a
// running server and asks every documented operation: each must answer a
// status its entry lists, with a body that matches (the harness checks
// both), and each that needs the database must say 503 unavailable, never
// 500. The 503 responses of the document are otherwise seen by no test.
func TestEveryRouteAnswersAsDocumentedWithoutPostgres(t *testing.T) {
	t.Parallel()
	pg, err := testenv.StartPostgres(context.Background())
	if err != nil {
		t.Fatalf("start a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	const token = "openapi-test-admin-token"
	ts := newTestServer(t, func(c *config) {
		c.DatabaseURL = testenv.NewDatabase(t, pg.URL("postgres"))
		c.AdminToken = token
	})
	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 1)
	if err := pg.Stop(); err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}

	buy := fmt.Sprintf(`{"event_id":%d,"user_email":"down@example.com","quantity":1}`, ev)
	newEvent := `{"name":"Down","event_date":"2030-01-01T20:00:00Z","total_tickets":5,"ticket_price":"10.00"}`
	jsonBody := []string{"Content-Type", "application/json"}
	admin := []string{"Content-Type", "application/json", "Authorization", "Bearer " + token}
	for _, tc := range []struct {
		method, path, body string
		header             []string
		want               int
	}{
		{"GET", "/health", "", nil, 200},
		{"GET", "/ready", "", nil, 503},
		{"GET", "/metrics", "", nil, 200},
		{"GET", "/openapi.json", "", nil, 200},
		{"GET", "/", "", nil, 200},
		{"GET", "/status.json", "", nil, 503},
		{"GET", "/events", "", nil, 503},
		{"GET", "/events/" + itoa(ev), "", nil, 503},
		{"POST", "/book/unsafe", buy, jsonBody, 503},
		{"POST", "/book/safe", buy, jsonBody, 503},
		{"POST", "/holds", buy, jsonBody, 503},
		{"GET", "/holds/" + h.ID, "", nil, 503},
		{"POST", "/holds/" + h.ID + "/confirm", "", nil, 503},
		{"DELETE", "/holds/" + h.ID, "", nil, 503},
		{"POST", "/admin/events", newEvent, admin, 503},
		{"PATCH", "/admin/events/" + itoa(ev), `{"total_tickets":20}`, admin, 503},
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		res := ts.do(tc.method, tc.path, body, tc.header...)
		if res.Status != tc.want {
			t.Errorf("%s %s without PostgreSQL: %d %s, want %d", tc.method, tc.path, res.Status, res.Body, tc.want)
			continue
		}
		if tc.want == 503 && tc.path != "/ready" {
			if _, code := res.errorBody(t); code != "unavailable" {
				t.Errorf("%s %s without PostgreSQL: code %q, want unavailable", tc.method, tc.path, code)
			}
		}
	}
}

// TestEveryLimitedRouteAnswersBusyAsDocumented puts every write route over
// a rate limit of one a second: each must answer 429 busy, which the
// harness checks against the route's entry (status, body, Retry-After).
func TestEveryLimitedRouteAnswersBusyAsDocumented(t *testing.T) {
	t.Parallel()
	const token = "openapi-test-admin-token"
	ts := newTestServer(t, func(c *config) {
		c.AdminToken = token
		c.RateLimit = 1
	})
	ev := ts.newEvent(100, true)
	var h holdBody
	for range 30 { // the limit lets one a second through
		if res := ts.do("POST", "/holds", order(ev, "busy@example.com", 1)); res.Status == http.StatusCreated {
			res.json(t, &h)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if h.ID == "" {
		t.Fatal("no hold was taken in 3 s under a limit of one a second")
	}
	buy := fmt.Sprintf(`{"event_id":%d,"user_email":"busy@example.com","quantity":1}`, ev)
	jsonBody := []string{"Content-Type", "application/json"}
	admin := []string{"Content-Type", "application/json", "Authorization", "Bearer " + token}
	for _, tc := range []struct {
		method, path, body string
		header             []string
	}{
		{"POST", "/book/unsafe", buy, jsonBody},
		{"POST", "/book/safe", buy, jsonBody},
		{"POST", "/holds", buy, jsonBody},
		{"POST", "/holds/" + h.ID + "/confirm", "", nil},
		{"DELETE", "/holds/" + h.ID, "", nil},
		{"POST", "/admin/events", `{"name":"Busy","event_date":"2030-01-01T20:00:00Z","total_tickets":5,"ticket_price":"10.00"}`, admin},
		{"PATCH", "/admin/events/" + itoa(ev), `{"total_tickets":200}`, admin},
	} {
		// Three at once: however the second turns, at most two pass.
		busy := 0
		for range 3 {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			res := ts.do(tc.method, tc.path, body, tc.header...)
			if res.Status == http.StatusTooManyRequests {
				busy++
				if _, code := res.errorBody(t); code != "busy" {
					t.Errorf("%s %s: 429 with code %q, want busy", tc.method, tc.path, code)
				}
			}
		}
		if busy == 0 {
			t.Errorf("%s %s: three requests at a limit of one a second, none answered 429", tc.method, tc.path)
		}
	}
}
