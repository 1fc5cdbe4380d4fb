package main

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/statuspage"
)

// statusRoutes mounts the live status page and its data feed.
func (a *app) statusRoutes(r chi.Router) {
	r.Method(http.MethodGet, "/", statuspage.Handler())
	r.Method(http.MethodGet, "/status.json", statuspage.FeedHandler(a.store, a.queue, a.log))
}
