package hold

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/holdfast/holdfast/internal/clientaddr"
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// Idempotency scopes: a key means something only together with its endpoint
// (and, for confirm, its hold).
const (
	ScopeCreate  = "POST /holds"
	scopeConfirm = "POST /holds/confirm "
	scopeExtend  = "POST /holds/extend "
)

func renderCreated(h Hold, err error) idempotency.Response {
	if err != nil {
		return idempotency.Failure(err, nil)
	}
	return idempotency.Success(http.StatusCreated, h)
}

func renderOK(h Hold, err error) idempotency.Response {
	if err != nil {
		return idempotency.Failure(err, nil)
	}
	return idempotency.Success(http.StatusOK, h)
}

// answer writes an outcome: the kept response of a replay, the outcome's
// own error, or the hold with status.
func answer(w http.ResponseWriter, r *http.Request, log *slog.Logger, out Outcome, err error, status int) {
	idempotency.Answer(w, r, log, out.Replay, out.Hold, status, errors.Join(err, out.Err))
}

// HandleCreate answers POST /holds.
func HandleCreate(svc *Service, maxQuantity int, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body sale.Request
		if err := httpapi.Decode(w, r, &body); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		order, err := body.Order(maxQuantity)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		order.Client = clientaddr.Key(r.Context())
		key, err := idempotency.FromRequest(r, ScopeCreate, order)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		// Whether the event needs the pass, the statement that grants the
		// hold says, from the event row it locks.
		order.Pass = pass.Check(svc.Passes, r.Header.Get(pass.Header), order.EventID, order.Email)
		out, err := svc.Create(r.Context(), Request{Order: order, Key: key})
		answer(w, r, log, out, err, http.StatusCreated)
	})
}

// ParseID reads a hold id: a UUID in its usual 36-character form, or a 400.
func ParseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, problem.Invalidf("hold id must be a UUID")
	}
	return id, nil
}

func parseID(r *http.Request) (uuid.UUID, error) { return ParseID(chi.URLParam(r, "id")) }

// HandleGet answers GET /holds/{id}.
func HandleGet(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := parseID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		h, err := svc.Get(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		// The hold's state moves on its own (it lapses) and its answer names
		// the buyer: a kept copy would read pending after the hold was
		// confirmed, released or expired.
		w.Header().Set("Cache-Control", "no-store")
		httpapi.Encode(w, http.StatusOK, h)
	})
}

// HandleConfirm answers POST /holds/{id}/confirm. It takes no body.
func HandleConfirm(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := parseID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		key, err := idempotency.FromRequest(r, scopeConfirm+id.String(), struct{}{})
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		out, err := svc.Confirm(r.Context(), id, key, renderOK)
		answer(w, r, log, out, err, http.StatusOK)
	})
}

// HandleRelease answers DELETE /holds/{id}.
func HandleRelease(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := parseID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		h, err := svc.Release(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, h)
	})
}

// HandleExtend answers POST /holds/{id}/extend. It takes no body and
// honours an Idempotency-Key scoped to the hold, as confirm does.
func HandleExtend(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := parseID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		key, err := idempotency.FromRequest(r, scopeExtend+id.String(), struct{}{})
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		out, err := svc.Extend(r.Context(), id, key, renderOK)
		answer(w, r, log, out, err, http.StatusOK)
	})
}

// HandleCancel answers POST /holds/{id}/cancel, an admin request (the
// router puts it behind the admin token). It takes no body.
func HandleCancel(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := parseID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		h, err := svc.Cancel(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, h)
	})
}
