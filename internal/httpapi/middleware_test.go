package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestDeadlineEndsAStuckRequestWithA503(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	stuck := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // a query waiting on a lock, say
		WriteError(w, r, log, r.Context().Err())
	})
	h := RequestID(Deadline(50 * time.Millisecond)(stuck))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/holds", nil))
	var body ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || body.Code != CodeUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d %s, want 503 unavailable with Retry-After", rec.Code, rec.Body)
	}
}

func TestAPanicIsA500WithTheErrorBody(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := RequestID(Recover(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	var body ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != 500 || body.Code != CodeInternal || body.Error != "internal error" {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestRequireJSON(t *testing.T) {
	t.Parallel()
	h := RequestID(RequireJSON(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })))
	cases := []struct {
		method string
		types  []string
		want   int
	}{
		{"POST", []string{"application/json"}, 204},
		{"POST", []string{"application/json; charset=utf-8"}, 204},
		{"PATCH", []string{"APPLICATION/JSON;charset=UTF-8"}, 204},
		{"POST", nil, 415},
		{"POST", []string{""}, 415},
		{"POST", []string{"text/plain"}, 415},
		{"PUT", []string{"application/x-www-form-urlencoded"}, 415},
		{"POST", []string{"application/json; charset=utf-16"}, 415},
		{"POST", []string{"application/json", "application/json"}, 415},
		{"POST", []string{"application/json;"}, 204},
		{"POST", []string{"application/json; ="}, 415},
		{"GET", nil, 204},
		{"DELETE", []string{"text/plain"}, 204},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, "/holds", nil)
		for _, ct := range tc.types {
			req.Header.Add("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s with Content-Type %q: %d, want %d", tc.method, tc.types, rec.Code, tc.want)
		}
		if tc.want == 415 {
			var body ErrorBody
			if json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Code != CodeUnsupportedMedia {
				t.Errorf("%s with Content-Type %q: body %s", tc.method, tc.types, rec.Body)
			}
		}
	}
}

func TestMethodLabelIsFromAFixedSet(t *testing.T) {
	t.Parallel()
	for m, want := range map[string]string{"GET": "GET", "DELETE": "DELETE", "get": "other", "BREW": "other", "PROPFIND": "other", "": "other"} {
		if got := MethodLabel(m); got != want {
			t.Errorf("MethodLabel(%q) = %q, want %q", m, got, want)
		}
	}
}
