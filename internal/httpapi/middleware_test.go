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
