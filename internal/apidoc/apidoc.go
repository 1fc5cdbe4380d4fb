// Package apidoc holds the OpenAPI 3 document of holdfast's HTTP API and
// serves it at GET /openapi.json.
//
// The document, openapi.json, is written by hand from docs/API.md rather
// than generated, so that it says what the contract promises (codes, money
// as decimal strings, when a route exists at all) and not merely what the Go
// types happen to marshal. Tests keep it honest: this package's check that
// it is a valid OpenAPI 3.0 document whose every example matches its
// schema; cmd/holdfast's check that the router serves exactly the routes
// and methods it documents; and cmd/holdfast's test harness, which holds
// every answer any of its tests sees to the document (a status not listed
// for the route, or a body or header off its schema, fails the test). A
// route added without its entry here, an entry without its route, or a
// response the document does not describe fails the build's tests.
package apidoc

import (
	"bytes"
	_ "embed"
	"net/http"
	"strconv"
)

//go:embed openapi.json
var doc []byte

// JSON returns the OpenAPI document. It is a copy: the caller may change it.
func JSON() []byte { return bytes.Clone(doc) }

// Handler serves the OpenAPI document as application/json.
func Handler() http.Handler {
	size := strconv.Itoa(len(doc))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", size)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(doc)
		}
	})
}
