package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/holdfast/holdfast/internal/problem"
)

func TestEveryKindHasAnAnswerNamedAlike(t *testing.T) {
	t.Parallel()
	for _, k := range problem.Kinds() {
		a, ok := byKind[k]
		if !ok {
			t.Errorf("kind %v: no answer", k)
			continue
		}
		if a.code != k.String() || a.status < 400 {
			t.Errorf("kind %v: got %d %s, want a 4xx or 5xx coded %s", k, a.status, a.code, k)
		}
	}
}

func TestWriteErrorTakesTheEndpointsStatuses(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	soldOut := fmt.Errorf("store: %w", problem.New(problem.SoldOut, "not enough tickets available"))
	busy := problem.New(problem.Busy, "the event is busy, please try again")
	book := Statuses{problem.SoldOut: http.StatusBadRequest}
	cases := []struct {
		name   string
		s      Statuses
		err    error
		status int
		retry  string
		body   string
	}{
		{"usual", nil, soldOut, http.StatusConflict, "", `{"error":"not enough tickets available","code":"sold_out"}`},
		{"override", book, soldOut, http.StatusBadRequest, "", `{"error":"not enough tickets available","code":"sold_out"}`},
		{"busy", book, busy, http.StatusTooManyRequests, "1", `{"error":"the event is busy, please try again","code":"busy"}`},
		{"ours", nil, fmt.Errorf("boom"), http.StatusInternalServerError, "", `{"error":"internal error","code":"internal"}`},
	}
	for _, c := range cases {
		h := WithStatuses(c.s, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			WriteError(w, r, log, c.err)
		}))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
		if rec.Code != c.status || rec.Header().Get("Retry-After") != c.retry || rec.Body.String() != c.body+"\n" {
			t.Errorf("%s: got %d Retry-After %q %s, want %d %q %s", c.name, rec.Code, rec.Header().Get("Retry-After"), rec.Body, c.status, c.retry, c.body)
		}
	}
}
