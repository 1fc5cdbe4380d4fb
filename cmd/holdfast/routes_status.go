package main

import "github.com/go-chi/chi/v5"

// statusRoutes mounts the live status page and its data feed.
func (a *app) statusRoutes(r chi.Router) {}
