package queue

import (
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// joinRequest is the body of POST /events/{id}/queue.
type joinRequest struct {
	UserEmail *string `json:"user_email"`
}

// HandleJoin answers POST /events/{id}/queue: 201 with a new place, or 200
// with the live place the email already has.
func HandleJoin(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		eventID, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		var body joinRequest
		if err := httpapi.Decode(w, r, &body); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		if body.UserEmail == nil {
			httpapi.WriteError(w, r, log, problem.Invalidf("user_email is required"))
			return
		}
		p, created, err := svc.Join(r.Context(), eventID, *body.UserEmail)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
		}
		encodePlace(w, status, p)
	})
}

// HandleGet answers GET /queue/{place_id}.
func HandleGet(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := svc.Get(r.Context(), chi.URLParam(r, "place_id"))
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		encodePlace(w, http.StatusOK, p)
	})
}

// HandleLeave answers DELETE /queue/{place_id}.
func HandleLeave(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := svc.Leave(r.Context(), chi.URLParam(r, "place_id"))
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		encodePlace(w, http.StatusOK, p)
	})
}

// encodePlace answers with a place, which no cache may keep: it carries the
// buyer's pass once admitted, and a kept copy would tell them waiting after
// their turn came (its URL is the place's key, as the page's is).
func encodePlace(w http.ResponseWriter, status int, p Place) {
	w.Header().Set("Cache-Control", "no-store")
	httpapi.Encode(w, status, p)
}

// HandleState answers GET /events/{id}/queue.
func HandleState(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		eventID, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		st, err := svc.State(r.Context(), eventID)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, st)
	})
}

// AppendJSON appends the place as json.Marshal writes it (see
// httpapi.Appender): every buyer in line polls, and reflection was a tenth
// of a poll's CPU in holdfast.
func (p Place) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = httpapi.AppendString(b, p.ID)
	b = append(b, `,"event_id":`...)
	b = strconv.AppendInt(b, p.EventID, 10)
	b = append(b, `,"status":`...)
	b = httpapi.AppendString(b, string(p.Status))
	b = append(b, `,"position":`...)
	if p.Position != nil {
		b = strconv.AppendInt(b, *p.Position, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"joined_at":`...)
	b = httpapi.AppendTime(b, p.JoinedAt)
	b = append(b, `,"pass":`...)
	if p.Pass != nil {
		b = httpapi.AppendString(b, *p.Pass)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"pass_expires_at":`...)
	if p.PassExpiresAt != nil {
		b = httpapi.AppendTime(b, *p.PassExpiresAt)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"poll_after_seconds":`...)
	if p.PollAfterSeconds != nil {
		b = strconv.AppendInt(b, int64(*p.PollAfterSeconds), 10)
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}
