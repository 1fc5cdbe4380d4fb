package main

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/apidoc"
)

// TestOpenAPICoversEveryRoute walks the real router and fails for any route
// and method it has that internal/apidoc's document lacks, so a route cannot
// be added without documenting it. chi patterns such as /holds/{id} are
// OpenAPI paths as they are. Documented operations the server does not
// mount are only logged.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.JSON())
	if err != nil {
		t.Fatalf("load the OpenAPI document: %v", err)
	}
	// Every route that depends on a setting is mounted: the harness turns
	// --unsafe-demo on, and an admin token mounts /admin.
	ts := newTestServer(t, func(c *config) { c.AdminToken = "openapi-test-admin-token" })

	routes, ok := ts.app.handler.(chi.Routes)
	if !ok {
		t.Fatalf("the app's handler is a %T, not a chi router", ts.app.handler)
	}
	var walked, missing []string
	err = chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		walked = append(walked, method+" "+route)
		if item := doc.Paths.Value(route); item == nil || item.GetOperation(method) == nil {
			missing = append(missing, method+" "+route)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	if len(walked) == 0 {
		t.Fatal("the router lists no routes")
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("route %s is not in internal/apidoc/openapi.json", m)
	}

	for _, path := range doc.Paths.InMatchingOrder() {
		for method := range doc.Paths.Value(path).Operations() {
			if !slices.Contains(walked, method+" "+path) {
				t.Logf("documented but not mounted by this test server: %s %s", method, path)
			}
		}
	}

	if !slices.Contains(walked, "GET /openapi.json") {
		t.Log("GET /openapi.json is not mounted yet; not fetching it")
		return
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
