package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/apidoc"
)

// apiCheck holds every answer a test sees to internal/apidoc's document:
// the status must be one the document gives the route, and the body and
// headers must match that response's schema. The harness puts it in front
// of every test server, so a test need not ask for it and cannot forget.
//
// The route is found by the server's own router, not by matching the
// document's paths: an answer is judged by the operation that really
// served it, and a route the server has but the document lacks is an error
// of its own. A request no route takes may get only the 404 and 405 that
// the document's description promises for any path, with the error body.
type apiCheck struct {
	doc    *openapi3.T
	routes chi.Routes
	opts   *openapi3filter.Options
}

// newAPICheck loads the document; routes is the router that serves the
// requests to be checked.
func newAPICheck(t testing.TB, routes chi.Routes) *apiCheck {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(apidoc.JSON())
	if err != nil {
		t.Fatalf("load internal/apidoc/openapi.json: %v", err)
	}
	return &apiCheck{doc: doc, routes: routes, opts: &openapi3filter.Options{
		IncludeResponseStatus: true, // an undocumented status is an error, not a pass
		MultiError:            true,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
			openapi3.WithStringFormatValidator("email", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForEmail)),
		},
	}}
}

// registerBodyDecoders teaches openapi3filter the media types the API
// answers with that it does not know: the status page is text/html. The
// registry is kin-openapi's, global to the process, so TestMain calls this
// once before any test runs.
func registerBodyDecoders() {
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// chiMethods are the methods chi routes; any other it answers 405 on any
// path.
var chiMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

// route returns the pattern the router serves the request with and its
// path parameters, or "" when no route takes it.
func (c *apiCheck) route(method, path string) (string, map[string]string) {
	rctx := chi.NewRouteContext()
	pattern := c.routes.Find(rctx, method, path)
	if pattern == "" {
		return "", nil
	}
	params := map[string]string{}
	for i, k := range rctx.URLParams.Keys {
		params[k] = rctx.URLParams.Values[i]
	}
	return pattern, params
}

// pathKnown reports whether any method of the path has a route, which is
// when chi answers 405 rather than 404.
func (c *apiCheck) pathKnown(path string) bool {
	for _, m := range chiMethods {
		if p, _ := c.route(m, path); p != "" {
			return true
		}
	}
	return false
}

// problem returns what is wrong with an answer to r, or "" if nothing is.
func (c *apiCheck) problem(r *http.Request, status int, header http.Header, body []byte) string {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	pattern, params := c.route(r.Method, path)
	if pattern == "" {
		want := http.StatusNotFound
		if !slices.Contains(chiMethods, r.Method) || c.pathKnown(path) {
			want = http.StatusMethodNotAllowed
		}
		if status != want {
			return fmt.Sprintf("no route takes it, so the answer must be %d, not %d", want, status)
		}
		if r.Method == http.MethodHead {
			return ""
		}
		if ct := header.Get("Content-Type"); ct != "application/json" {
			return fmt.Sprintf("the %d body is %q, not application/json", status, ct)
		}
		if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(decodeJSON(body), openapi3.VisitAsResponse(), openapi3.MultiErrors()); err != nil {
			return fmt.Sprintf("the %d body is not an Error: %v", status, err)
		}
		return ""
	}
	item := c.doc.Paths.Value(pattern)
	if item == nil || item.GetOperation(r.Method) == nil {
		return fmt.Sprintf("route %s %s is served but not documented", r.Method, pattern)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    r,
			PathParams: params,
			Route: &routers.Route{Spec: c.doc, Path: pattern, PathItem: item,
				Method: r.Method, Operation: item.GetOperation(r.Method)},
			Options: c.opts,
		},
		Status:  status,
		Header:  header,
		Options: c.opts,
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Sprintf("route %s %s: %v", r.Method, pattern, err)
	}
	return ""
}

// decodeJSON decodes a body for VisitJSON; a body that is not JSON becomes
// its text, which no object schema accepts.
func decodeJSON(body []byte) any {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return string(body)
	}
	return v
}

// check fails t with the route, status and body of an answer the document
// does not allow.
func (c *apiCheck) check(t testing.TB, r *http.Request, status int, header http.Header, body []byte) {
	if p := c.problem(r, status, header, body); p != "" {
		t.Errorf("%s %s answered %d, against internal/apidoc/openapi.json: %s\nbody: %s",
			r.Method, r.URL.RequestURI(), status, p, clip(body, 2000))
	}
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// handler checks every answer next gives.
func (c *apiCheck) handler(t testing.TB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &answerRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		c.check(t, r, status, w.Header(), rec.body.Bytes())
	})
}

// answerRecorder passes an answer on and keeps a copy of its status and
// body.
type answerRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (a *answerRecorder) WriteHeader(code int) {
	if a.status == 0 && code >= 200 {
		a.status = code
	}
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	a.body.Write(b)
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (a *answerRecorder) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// Flush passes a flush on, for handlers that stream.
func (a *answerRecorder) Flush() { _ = http.NewResponseController(a.ResponseWriter).Flush() }

// documentedRoutes is a router of every operation in the document, for
// checking answers of a server whose own router the test cannot reach (one
// that serve starts).
func documentedRoutes(doc *openapi3.T) chi.Routes {
	r := chi.NewRouter()
	for _, path := range doc.Paths.InMatchingOrder() {
		for method := range doc.Paths.Value(path).Operations() {
			r.MethodFunc(method, path, func(http.ResponseWriter, *http.Request) {})
		}
	}
	return r
}

// checkedClient is an HTTP client whose every answer is checked against
// the document, as if each documented route were mounted.
func checkedClient(t testing.TB) *http.Client {
	c := newAPICheck(t, nil)
	c.routes = documentedRoutes(c.doc)
	return &http.Client{Timeout: testClient.Timeout, Transport: checkedTransport{t: t, c: c, next: testClient.Transport}}
}

type checkedTransport struct {
	t    testing.TB
	c    *apiCheck
	next http.RoundTripper
}

func (ct checkedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := ct.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	ct.c.check(ct.t, req, res.StatusCode, res.Header, body)
	return res, nil
}

// TestAPICheckCatches keeps the checker itself strict: without it going
// lax (an undocumented status let through, a body not read) every test
// that relies on it would stay green.
func TestAPICheckCatches(t *testing.T) {
	t.Parallel()
	c := newAPICheck(t, nil)
	c.routes = documentedRoutes(c.doc)
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	notFound := `{"error":"no such event","code":"not_found"}`
	for _, tc := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		ok                 bool
	}{
		{"documented", "GET", "/health", 200, jsonCT, `{"status":"ok"}`, true},
		{"documented error", "GET", "/events/7", 404, jsonCT, notFound, true},
		{"undocumented status", "GET", "/health", 404, jsonCT, notFound, false},
		{"body off its schema", "GET", "/health", 200, jsonCT, `{"status":"fine"}`, false},
		{"unknown field", "GET", "/health", 200, jsonCT, `{"status":"ok","extra":1}`, false},
		{"not JSON", "GET", "/health", 200, jsonCT, `ok`, false},
		{"wrong content type", "GET", "/health", 200, http.Header{"Content-Type": {"text/plain"}}, `{"status":"ok"}`, false},
		{"error code off the enum", "GET", "/events/7", 404, jsonCT, `{"error":"x","code":"gone"}`, false},
		{"no route: 404", "GET", "/nowhere", 404, jsonCT, `{"error":"no such route: /nowhere","code":"not_found"}`, true},
		{"no route: 200", "GET", "/nowhere", 200, jsonCT, `{}`, false},
		{"no route: body not an Error", "GET", "/nowhere", 404, jsonCT, `not found`, false},
		{"known path, other method: 405", "PUT", "/health", 405, jsonCT, `{"error":"method PUT is not allowed on /health","code":"method_not_allowed"}`, true},
		{"known path, other method: 404", "PUT", "/health", 404, jsonCT, notFound, false},
		{"unknown method", "BREW", "/nowhere", 405, jsonCT, `{"error":"method BREW is not allowed on /nowhere","code":"method_not_allowed"}`, true},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		p := c.problem(r, tc.status, tc.header, []byte(tc.body))
		if (p == "") != tc.ok {
			t.Errorf("%s: %s %s %d %s: problem %q, want ok=%v", tc.name, tc.method, tc.path, tc.status, tc.body, p, tc.ok)
		}
	}
}
