package main

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/booking"
	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/apidoc"
	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/queuepage"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
	"github.com/holdfast/holdfast/webhook"
)

// routes lists every route the service has.
func (a *app) routes(r chi.Router) {
	r.Method(http.MethodGet, "/health", handleHealth())
	r.Method(http.MethodGet, "/ready", handleReady(a))
	r.Method(http.MethodGet, "/metrics", a.metrics.Handler())
	r.Method(http.MethodGet, "/openapi.json", apidoc.Handler())
	r.Method(http.MethodGet, "/events", booking.HandleListEvents(a.store, a.log))
	r.Method(http.MethodGet, "/events/{id}", booking.HandleGetEvent(a.store, a.log))
	r.Method(http.MethodGet, "/events/{id}/seats", booking.HandleSeats(a.store, a.log))
	if a.cfg.UnsafeDemo {
		r.Method(http.MethodPost, "/book/unsafe", a.jsonBody(booking.HandleBookUnsafe(a.booking, a.cfg.MaxQuantity, a.log)))
	}
	r.Method(http.MethodPost, "/book/safe", a.jsonBody(booking.HandleBookSafe(a.booking, a.cfg.MaxQuantity, a.log)))
	r.Method(http.MethodPost, "/holds", a.jsonBody(hold.HandleCreate(a.holds, a.cfg.MaxQuantity, a.log)))
	r.Method(http.MethodGet, "/holds/{id}", hold.HandleGet(a.holds, a.log))
	r.Method(http.MethodDelete, "/holds/{id}", a.limited(hold.HandleRelease(a.holds, a.log)))
	r.Method(http.MethodPost, "/holds/{id}/confirm", a.limited(hold.HandleConfirm(a.holds, a.log)))
	r.Method(http.MethodPost, "/holds/{id}/extend", a.limited(hold.HandleExtend(a.holds, a.log)))
	r.Method(http.MethodGet, "/queue/keys", pass.HandleKeys(a.passes))
	r.Method(http.MethodPost, "/events/{id}/queue", a.jsonBody(queue.HandleJoin(a.queue, a.log)))
	r.Method(http.MethodGet, "/events/{id}/queue", queue.HandleState(a.queue, a.log))
	r.Method(http.MethodGet, "/queue/{place_id}", queue.HandleGet(a.queue, a.log))
	r.Method(http.MethodGet, "/queue/{place_id}/page", queuepage.Handler(a.queue, a.log))
	r.Method(http.MethodDelete, "/queue/{place_id}", a.limited(queue.HandleLeave(a.queue, a.log)))
	a.statusRoutes(r)
	if a.cfg.AdminToken != "" {
		r.Route("/admin", func(r chi.Router) {
			r.Group(func(r chi.Router) {
				// Content-Type first: a refused form post tells nothing and
				// counts as no attempt at the token.
				r.Use(httpapi.RequireJSON, booking.RequireToken(a.cfg.AdminToken, a.adminFailures, a.log))
				r.Method(http.MethodPost, "/events", a.limited(booking.HandleCreateEvent(a.store, a.log)))
				r.Method(http.MethodPatch, "/events/{id}", a.limited(booking.HandleUpdateEvent(a.store, a.log)))
				r.Method(http.MethodPost, "/events/{id}/categories", a.limited(booking.HandleCreateCategory(a.store, a.log)))
				r.Method(http.MethodPatch, "/events/{id}/categories/{cid}", a.limited(booking.HandleUpdateCategory(a.store, a.log)))
				r.Method(http.MethodPut, "/events/{id}/seats", a.limited(booking.HandlePutSeats(a.store, a.log)))
				r.Method(http.MethodPost, "/webhooks", a.limited(webhook.HandleCreate(a.webhooks, a.log)))
			})
			// Reads, deletes and the POSTs without a body: the token
			// alone (a browser's form cannot send it).
			r.Group(func(r chi.Router) {
				r.Use(booking.RequireToken(a.cfg.AdminToken, a.adminFailures, a.log))
				r.Method(http.MethodGet, "/webhooks", webhook.HandleList(a.webhooks, a.log))
				r.Method(http.MethodDelete, "/webhooks/{id}", a.limited(webhook.HandleDelete(a.webhooks, a.log)))
				r.Method(http.MethodPost, "/webhooks/{id}/rotate", a.limited(webhook.HandleRotate(a.webhooks, a.log)))
				r.Method(http.MethodGet, "/webhooks/{id}/deliveries", webhook.HandleDeliveries(a.webhooks, a.log))
				r.Method(http.MethodPost, "/webhooks/{id}/deliveries/{delivery_id}/replay", a.limited(webhook.HandleReplay(a.webhooks, a.log)))
				r.Method(http.MethodGet, "/changes", webhook.HandleChanges(a.webhooks, a.log))
			})
		})
		// An admin request at the contract's path, behind the same token.
		// It takes no body, so no Content-Type check: a browser's form
		// cannot send the bearer token.
		r.Method(http.MethodPost, "/holds/{id}/cancel",
			booking.RequireToken(a.cfg.AdminToken, a.adminFailures, a.log)(a.limited(hold.HandleCancel(a.holds, a.log))))
	}
}

// limited puts a write endpoint behind the per-client rate limit, when
// there is one. It wraps the route's handler rather than the router, so a
// limited request is still known by its route (metrics, logs).
func (a *app) limited(h http.Handler) http.Handler {
	if a.limiter == nil {
		return h
	}
	return a.limiter.Middleware(h)
}

// jsonBody is a write endpoint that takes a JSON body: 415 for any other
// Content-Type before anything else, then the rate limit.
func (a *app) jsonBody(h http.Handler) http.Handler {
	return httpapi.RequireJSON(a.limited(h))
}

func handleHealth() http.Handler {
	body := map[string]string{"status": "ok"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.Encode(w, http.StatusOK, body)
	})
}

// handleReady reports whether the service can sell: 503 "down" without
// PostgreSQL, 200 "degraded" without Redis (sales go on, on row locks
// alone), 200 "ok" with both. With PostgreSQL up it says what the server
// the pool reaches is (primary or standby) and whether commits wait for a
// synchronous standby.
func handleReady(a *app) http.Handler {
	type status struct {
		Status      string `json:"status"`
		Postgres    string `json:"postgres"`
		Redis       string `json:"redis"`
		Role        string `json:"role,omitempty"`
		Replication string `json:"replication,omitempty"`
	}
	word := func(err error) string {
		if err != nil {
			return "down"
		}
		return "ok"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		role, pgErr := store.ReadDBRole(ctx, a.db)
		redisErr := a.locks.Up(context.WithoutCancel(ctx))
		st := status{Status: "ok", Postgres: word(pgErr), Redis: word(redisErr), Role: role.Role, Replication: role.Replication}
		code := http.StatusOK
		switch {
		case pgErr != nil:
			st.Status, code = "down", http.StatusServiceUnavailable
			a.log.WarnContext(ctx, "not ready: postgres down", "err", pgErr)
		case role.Role == "standby":
			// Every write would fail there; the pool will find the
			// primary on its next connection.
			st.Status, code = "down", http.StatusServiceUnavailable
			a.log.WarnContext(ctx, "not ready: postgres is a standby")
		case redisErr != nil:
			st.Status = "degraded"
		}
		httpapi.Encode(w, code, st)
	})
}

// adminFailuresPerSecond is how many wrong or missing admin tokens one
// client address may send a second, whatever --rate-limit says: enough for
// an operator's typo, too few for a brute force.
const adminFailuresPerSecond = 10
