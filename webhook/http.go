package webhook

import (
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/problem"
)

// Page sizes of the change feed and the delivery log.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

func endpointID(r *http.Request) (int64, error) {
	return httpapi.ParseID(chi.URLParam(r, "id"), "webhook id")
}

// limitParam reads ?limit=, DefaultLimit when absent.
func limitParam(q url.Values) (int, error) {
	n, err := httpapi.QueryInt(q, "limit", DefaultLimit, 1, MaxLimit)
	return int(n), err
}

// HandleCreate answers POST /admin/webhooks.
func HandleCreate(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req CreateRequest
		if err := httpapi.Decode(w, r, &req); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		e, err := svc.Create(r.Context(), req)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusCreated, e)
	})
}

// HandleList answers GET /admin/webhooks.
func HandleList(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		es, err := svc.List(r.Context())
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, map[string]any{"webhooks": es})
	})
}

// HandleDelete answers DELETE /admin/webhooks/{id}.
func HandleDelete(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := endpointID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		e, err := svc.Delete(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, e)
	})
}

// HandleRotate answers POST /admin/webhooks/{id}/rotate. It takes no body.
func HandleRotate(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := endpointID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		e, err := svc.Rotate(r.Context(), id)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, e)
	})
}

// HandleDeliveries answers GET /admin/webhooks/{id}/deliveries.
func HandleDeliveries(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := endpointID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		q, err := httpapi.Query(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		limit, err := limitParam(q)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		as, err := svc.Attempts(r.Context(), id, limit)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusOK, map[string]any{"deliveries": as})
	})
}

// HandleReplay answers POST /admin/webhooks/{id}/deliveries/{delivery_id}/replay.
// It takes no body.
func HandleReplay(svc *Service, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := endpointID(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		did, err := httpapi.ParseID(chi.URLParam(r, "delivery_id"), "delivery id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		nid, err := svc.Replay(r.Context(), id, did)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		httpapi.Encode(w, http.StatusAccepted, map[string]int64{"delivery_id": nid})
	})
}

// HandleChanges answers GET /admin/changes?after=&limit=. The cursor is
// opaque to clients: the last event's feed position, "0" (or none) for
// the start.
func HandleChanges(svc *Service, log *slog.Logger) http.Handler {
	type page struct {
		Changes []Event `json:"changes"`
		Next    string  `json:"next"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := httpapi.Query(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		after, err := httpapi.QueryInt(q, "after", 0, 0, math.MaxInt64)
		if err != nil {
			// The cursor is opaque: say where one comes from.
			httpapi.WriteError(w, r, log, problem.Invalidf("after must be a cursor from a previous page's next"))
			return
		}
		limit, err := limitParam(q)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		evs, err := svc.Changes(r.Context(), after, limit)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		next := after
		if len(evs) > 0 {
			next = evs[len(evs)-1].Pos
		}
		httpapi.Encode(w, http.StatusOK, page{Changes: evs, Next: strconv.FormatInt(next, 10)})
	})
}
