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
