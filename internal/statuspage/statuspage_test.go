package statuspage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/httpapi"
)

// fakeSource answers with fixed rows and records what it was asked.
type fakeSource struct {
	events []EventStatus
	holds  []HoldStatus
	err    error

	limit, offset, holdLimit int
}

func (f *fakeSource) StatusEvents(ctx context.Context, limit, offset int) ([]EventStatus, error) {
	f.limit, f.offset = limit, offset
	return f.events, f.err
}

func (f *fakeSource) LatestHolds(ctx context.Context, limit int) ([]HoldStatus, error) {
	f.holdLimit = limit
	return f.holds, f.err
}

var now = time.Date(2030, 1, 1, 20, 0, 0, 0, time.UTC)

func serve(t *testing.T, src Source, target string) (*httptest.ResponseRecorder, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rec := httptest.NewRecorder()
	feedHandler(src, nil, log, func() time.Time { return now }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec, &logs
}

func TestFeedShape(t *testing.T) {
	t.Parallel()
	src := &fakeSource{
		events: []EventStatus{{ID: 7, Name: "Busy Night", Total: 40, Available: 25, Held: 5, Confirmed: 10}},
		holds: []HoldStatus{
			{Tag: "a1b2c3", EventID: 7, Quantity: 2, Status: "pending", CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(90*time.Second + time.Millisecond)},
			{Tag: "d4e5f6", EventID: 7, Quantity: 1, Status: "expired", CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Minute)},
			{Tag: "0a0b0c", EventID: 7, Quantity: 3, Status: "confirmed", CreatedAt: now.Add(-2 * time.Minute), ExpiresAt: now.Add(8 * time.Minute)},
			{Tag: "ffeedd", EventID: 7, Quantity: 4, Status: "pending", CreatedAt: now.Add(-10 * time.Minute), ExpiresAt: now.Add(-time.Second)},
		},
	}
	rec, _ := serve(t, src, "/status.json")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", got)
	}
	if src.limit != DefaultLimit || src.offset != 0 || src.holdLimit != LatestHolds {
		t.Fatalf("asked for limit %d offset %d and %d holds, want %d, 0 and %d", src.limit, src.offset, src.holdLimit, DefaultLimit, LatestHolds)
	}

	var body map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, rec.Body)
	}
	if got, want := keys(body), []string{"events", "generated_at", "holds"}; !slices.Equal(got, want) {
		t.Fatalf("body keys = %v, want %v", got, want)
	}
	var at string
	if err := json.Unmarshal(body["generated_at"], &at); err != nil {
		t.Fatal(err)
	}
	if got, err := time.Parse(time.RFC3339, at); err != nil || !got.Equal(now) || !strings.HasSuffix(at, "Z") {
		t.Fatalf("generated_at = %q (%v), want %s in UTC", at, err, now.Format(time.RFC3339))
	}

	var events []map[string]any
	if err := json.Unmarshal(body["events"], &events); err != nil {
		t.Fatal(err)
	}
	wantEvent := map[string]any{
		"id": 7.0, "name": "Busy Night", "total_tickets": 40.0, "available_tickets": 25.0,
		"held_tickets": 5.0, "confirmed_tickets": 10.0, "queue": nil,
	}
	if len(events) == 1 {
		// An event without categories from its source still shows a list.
		if c, ok := events[0]["categories"].([]any); !ok || len(c) != 0 {
			t.Fatalf("categories = %#v, want []", events[0]["categories"])
		}
		delete(events[0], "categories")
	}
	if len(events) != 1 || !maps.Equal(events[0], wantEvent) {
		t.Fatalf("events = %v, want [%v]", events, wantEvent)
	}

	var holds []map[string]any
	if err := json.Unmarshal(body["holds"], &holds); err != nil {
		t.Fatal(err)
	}
	if len(holds) != len(src.holds) {
		t.Fatalf("%d holds, want %d", len(holds), len(src.holds))
	}
	wantKeys := []string{"created_at", "event_id", "expires_at", "quantity", "seconds_left", "status", "tag"}
	for i, h := range holds {
		if got := keys(h); !slices.Equal(got, wantKeys) {
			t.Fatalf("hold %d keys = %v, want %v", i, got, wantKeys)
		}
		if h["tag"] != src.holds[i].Tag || h["status"] != src.holds[i].Status {
			t.Fatalf("hold %d = %v, want tag %s status %s", i, h, src.holds[i].Tag, src.holds[i].Status)
		}
	}
	// Pending with 90.001s left rounds up; anything not pending, or past its
	// expiry, has none.
	for i, want := range []float64{91, 0, 0, 0} {
		if got := holds[i]["seconds_left"]; got != want {
			t.Errorf("hold %d (%s) seconds_left = %v, want %v", i, src.holds[i].Status, got, want)
		}
	}
	if got := holds[0]["expires_at"]; got != "2030-01-01T20:01:30.001Z" {
		t.Errorf("expires_at = %v, want RFC 3339 in UTC", got)
	}
}

func TestFeedCarriesNoBuyerOrHoldID(t *testing.T) {
	t.Parallel()
	// The Source's types cannot carry an email or an id; this pins the
	// wire format too, so that a field added later has to be a choice.
	src := &fakeSource{
		events: []EventStatus{{ID: 1, Name: "Quiet Night", Total: 10, Available: 9, Held: 1}},
		holds:  []HoldStatus{{Tag: "abcdef", EventID: 1, Quantity: 1, Status: "pending", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}},
	}
	rec, _ := serve(t, src, "/status.json")
	raw := rec.Body.String()
	for _, bad := range []string{"@", "email", "user", `"hold_id"`, `"booking_id"`} {
		if strings.Contains(raw, bad) {
			t.Errorf("feed contains %q: %s", bad, raw)
		}
	}
	var body struct {
		Holds []map[string]any `json:"holds"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	for _, h := range body.Holds {
		if _, ok := h["id"]; ok {
			t.Errorf("a hold carries an id: %v", h)
		}
	}
}

func TestFeedEmpty(t *testing.T) {
	t.Parallel()
	rec, _ := serve(t, &fakeSource{}, "/status.json")
	if got, want := rec.Body.String(), `"events":[],"holds":[]}`; !strings.Contains(got, want) {
		t.Fatalf("body = %s, want empty lists, not null", got)
	}
}

func TestFeedPaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query         string
		limit, offset int
	}{
		{"", DefaultLimit, 0},
		{"?limit=1", 1, 0},
		{"?limit=100&offset=0", 100, 0},
		{"?limit=11&offset=30", 11, 30},
		{"?offset=5", DefaultLimit, 5},
	}
	for _, tt := range tests {
		src := &fakeSource{}
		rec, _ := serve(t, src, "/status.json"+tt.query)
		if rec.Code != http.StatusOK || src.limit != tt.limit || src.offset != tt.offset {
			t.Errorf("%q: status %d, limit %d offset %d; want 200, %d, %d", tt.query, rec.Code, src.limit, src.offset, tt.limit, tt.offset)
		}
	}
}

func TestFeedRefusesBadPaging(t *testing.T) {
	t.Parallel()
	for _, query := range []string{
		"?limit=0", "?limit=101", "?limit=-1", "?limit=ten", "?limit=1.5", "?limit=99999999999999999999",
		"?offset=-1", "?offset=x", "?limit=10&offset=-5",
	} {
		src := &fakeSource{}
		rec, _ := serve(t, src, "/status.json"+query)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", query, rec.Code)
			continue
		}
		var body httpapi.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Code != httpapi.CodeInvalid || body.Error == "" {
			t.Errorf("%q: body %s (%v), want an invalid_request error", query, rec.Body, err)
		}
		if src.limit != 0 {
			t.Errorf("%q: the source was asked", query)
		}
	}
}

func TestFeedHidesStoreErrors(t *testing.T) {
	t.Parallel()
	rec, logs := serve(t, &fakeSource{err: errors.New("store: connection to 10.0.0.5 refused")}, "/status.json")
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "10.0.0.5") {
		t.Fatalf("status %d body %s, want 500 without the detail", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "10.0.0.5") {
		t.Fatalf("the detail was not logged: %s", logs)
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type = %q, want text/html; charset=utf-8", got)
	}
	html, _ := io.ReadAll(rec.Body)
	page := string(html)
	// Everything is inlined: the page loads nothing but its own feed.
	for _, bad := range []string{`href="page.css"`, `src="page.js"`, "http://", "https://", "//cdn", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, want := range []string{"<style>", "<script>", "/status.json", `id="events"`, `id="holds"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
}

// TestScriptWritesNoHTML keeps every value of the feed text: page.js may
// not use the DOM's ways of parsing a string as HTML. The browser test in
// cmd/holdfast shows a name with markup as text; this says why at once.
func TestScriptWritesNoHTML(t *testing.T) {
	t.Parallel()
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser",
		"createContextualFragment", "srcdoc", "setHTMLUnsafe", "eval(", "new Function"} {
		if bytes.Contains(pageJS, []byte(sink)) {
			t.Errorf("page.js uses %s: write feed values with textContent or append", sink)
		}
	}
}

func TestBuildPageRefusesMismatchedFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		html, css, js string
	}{
		{"no stylesheet link", `<script src="page.js"></script>`, "", ""},
		{"script closes its tag", string(cssTag) + string(jsTag), "", "x = '</SCRIPT>'"},
		{"style closes its tag", string(cssTag) + string(jsTag), "/* </style> */", ""},
	}
	for _, tt := range tests {
		if _, err := buildPage([]byte(tt.html), []byte(tt.css), []byte(tt.js)); err == nil {
			t.Errorf("%s: built", tt.name)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
