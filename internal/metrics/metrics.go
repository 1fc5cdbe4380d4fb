// Package metrics holds holdfast's Prometheus metrics: one registry per
// server (never the global one, so tests and several servers in one process
// do not share counts), the middleware that times requests by route, and
// the counters the store, the locks and the sweeper report into.
//
// Names follow Prometheus conventions: the holdfast_ prefix, _total for
// counters, _seconds for durations.
package metrics

import (
	"database/sql"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast/internal/httpapi"
)

// Metrics is one server's metrics.
type Metrics struct {
	reg *prometheus.Registry

	holdsCreated   prometheus.Counter
	holdsConfirmed prometheus.Counter
	holdsReleased  prometheus.Counter
	holdsExpired   prometheus.Counter
	holdsExtended  prometheus.Counter
	holdsCancelled prometheus.Counter
	bookings       *prometheus.CounterVec
	requests       *prometheus.HistogramVec
	lockWait       prometheus.Histogram
	lockTimeouts   prometheus.Counter
	batchSize      prometheus.Histogram
	sweeps         prometheus.Counter
	swept          prometheus.Histogram
	sweeperLag     prometheus.Gauge
	sweeperErrors  prometheus.Counter

	outboxEvents prometheus.Counter
	deliveries   *prometheus.CounterVec
	deliveryLag  prometheus.Histogram

	queueJoins    *prometheus.CounterVec
	queuePolls    *prometheus.CounterVec
	queueAdmitted prometheus.Counter
	queueTime     prometheus.Histogram
	queueLag      prometheus.Histogram
	waitingMu     sync.Mutex
	waiting       map[int64]int64 // per queued event, as of its last step here
}

// New registers every metric on a registry of its own.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	m.holdsCreated = counter("holdfast_holds_created_total", "Holds taken.")
	m.holdsConfirmed = counter("holdfast_holds_confirmed_total", "Holds confirmed.")
	m.holdsReleased = counter("holdfast_holds_released_total", "Holds released by their buyer.")
	m.holdsExpired = counter("holdfast_holds_expired_total", "Holds expired: swept, or found lapsed by a buyer, a confirm or a release.")
	m.holdsExtended = counter("holdfast_holds_extended_total", "Holds extended (POST /holds/{id}/extend that moved the expiry).")
	m.holdsCancelled = counter("holdfast_holds_cancelled_total", "Confirmed bookings cancelled and refunded, their tickets back on sale.")
	m.lockTimeouts = counter("holdfast_lock_timeouts_total", "Requests answered busy because the event's lock was not had within the lock wait.")
	m.sweeps = counter("holdfast_sweeper_runs_total", "Sweeper runs.")
	m.sweeperErrors = counter("holdfast_sweeper_errors_total", "Events whose sweep failed; the sweeper went on with the next event.")
	m.bookings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_bookings_total", Help: "Answers of the booking endpoints, by endpoint and outcome (booked or the error code).",
	}, []string{"endpoint", "outcome"})
	f(m.bookings)
	m.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "holdfast_http_request_duration_seconds", Help: "Time to answer a request, by route pattern, method and status.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method", "status"})
	f(m.requests)
	m.lockWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_lock_wait_seconds", Help: "Time spent waiting for an event's Redis lock.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	f(m.lockWait)
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_hold_batch_size", Help: "Hold requests served by one transaction.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	})
	f(m.batchSize)
	m.swept = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_sweeper_swept_holds", Help: "Holds one sweeper run put back on sale.",
		Buckets: []float64{0, 1, 10, 100, 1000, 10000, 100000},
	})
	f(m.swept)
	m.sweeperLag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holdfast_sweeper_lag_seconds", Help: "Age of the oldest expired hold still pending, as of the last sweep (0 when none).",
	})
	f(m.sweeperLag)
	m.outboxEvents = counter("holdfast_outbox_events_total", "Events of hold changes published to the change feed (and to webhook deliveries) by this instance's publisher.")
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_webhook_deliveries_total", Help: "Webhook delivery attempts by this instance, by outcome: delivered, retried (to be tried again), failed (given up, or the endpoint turned off by a 410).",
	}, []string{"outcome"})
	f(m.deliveries)
	for _, o := range []string{"delivered", "retried", "failed"} {
		m.deliveries.WithLabelValues(o)
	}
	m.deliveryLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_webhook_delivery_lag_seconds", Help: "Time from a hold's change to the 2xx of its webhook delivery.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
	})
	f(m.deliveryLag)
	m.queueJoins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_queue_joins_total", Help: "Answers of POST /events/{id}/queue, by outcome (new, existing or the error code).",
	}, []string{"outcome"})
	f(m.queueJoins)
	m.queuePolls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holdfast_queue_polls_total", Help: "Answers of GET /queue/{place_id}, by outcome (the place's status or the error code).",
	}, []string{"outcome"})
	f(m.queuePolls)
	m.queueAdmitted = counter("holdfast_queue_admitted_total", "Waiting room places this instance's admission steps admitted.")
	m.queueTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_queue_time_in_queue_seconds", Help: "Time from a place's join to its admission.",
		Buckets: []float64{.1, .5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
	})
	f(m.queueTime)
	m.queueLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "holdfast_queue_admission_lag_seconds", Help: "Time from a place's admission to the first poll that saw it admitted.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30},
	})
	f(m.queueLag)
	m.waiting = map[int64]int64{}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_queue_waiting", Help: "Places waiting in every queued event's queue, as of this instance's last admission step of each.",
	}, func() float64 {
		m.waitingMu.Lock()
		defer m.waitingMu.Unlock()
		var n int64
		for _, w := range m.waiting {
			n += w
		}
		return float64(n)
	}))
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// WatchDB reports the connection pool's use.
func (m *Metrics) WatchDB(db *sql.DB) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_db_connections_in_use", Help: "PostgreSQL connections in use.",
	}, func() float64 { return float64(db.Stats().InUse) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_db_connections_open", Help: "PostgreSQL connections open.",
	}, func() float64 { return float64(db.Stats().OpenConnections) }))
}

// WatchRedis reports whether Redis answered last time it was asked.
func (m *Metrics) WatchRedis(up func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holdfast_redis_up", Help: "1 when Redis answered the last lock or ping, 0 when the service runs on PostgreSQL alone.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// HoldsCreated counts holds taken.
func (m *Metrics) HoldsCreated(n int) { m.holdsCreated.Add(float64(n)) }

// HoldsConfirmed counts holds confirmed.
func (m *Metrics) HoldsConfirmed(n int) { m.holdsConfirmed.Add(float64(n)) }

// HoldsReleased counts holds released.
func (m *Metrics) HoldsReleased(n int) { m.holdsReleased.Add(float64(n)) }

// HoldsExpired counts holds expired.
func (m *Metrics) HoldsExpired(n int) { m.holdsExpired.Add(float64(n)) }

// HoldsExtended counts holds extended.
func (m *Metrics) HoldsExtended(n int) { m.holdsExtended.Add(float64(n)) }

// HoldsCancelled counts confirmed bookings cancelled.
func (m *Metrics) HoldsCancelled(n int) { m.holdsCancelled.Add(float64(n)) }

// LockWaited records one wait for an event's lock.
func (m *Metrics) LockWaited(d time.Duration, busy bool) {
	m.lockWait.Observe(d.Seconds())
	if busy {
		m.lockTimeouts.Inc()
	}
}

// QueueTimedOut counts a hold request that waited its whole lock wait in
// its event's queue.
func (m *Metrics) QueueTimedOut() { m.lockTimeouts.Inc() }

// Batched records the size of one batch of holds.
func (m *Metrics) Batched(n int) { m.batchSize.Observe(float64(n)) }

// Swept records one sweeper run.
func (m *Metrics) Swept(expired int, lag time.Duration) {
	m.sweeps.Inc()
	m.swept.Observe(float64(expired))
	m.sweeperLag.Set(lag.Seconds())
}

// SweepFailed counts events whose sweep failed in one run.
func (m *Metrics) SweepFailed(events int) { m.sweeperErrors.Add(float64(events)) }

// EventsPublished counts events the publisher gave their feed positions.
func (m *Metrics) EventsPublished(n int) { m.outboxEvents.Add(float64(n)) }

// WebhookDelivered counts a delivered webhook and its lag from the change.
func (m *Metrics) WebhookDelivered(lag time.Duration) {
	m.deliveries.WithLabelValues("delivered").Inc()
	m.deliveryLag.Observe(lag.Seconds())
}

// WebhookRetried counts a failed attempt that will be tried again.
func (m *Metrics) WebhookRetried() { m.deliveries.WithLabelValues("retried").Inc() }

// WebhookFailed counts a delivery given up.
func (m *Metrics) WebhookFailed() { m.deliveries.WithLabelValues("failed").Inc() }

// Joined counts one join of a waiting room by outcome.
func (m *Metrics) Joined(outcome string) { m.queueJoins.WithLabelValues(outcome).Inc() }

// Polled counts one poll of a place by outcome.
func (m *Metrics) Polled(outcome string) { m.queuePolls.WithLabelValues(outcome).Inc() }

// QueueAdmitted counts one admitted place and the time it waited.
func (m *Metrics) QueueAdmitted(timeInQueue time.Duration) {
	m.queueAdmitted.Inc()
	m.queueTime.Observe(timeInQueue.Seconds())
}

// AdmissionLag records how long an admitted place went unseen.
func (m *Metrics) AdmissionLag(d time.Duration) { m.queueLag.Observe(d.Seconds()) }

// QueueWaiting records how many places wait in eventID's queue.
func (m *Metrics) QueueWaiting(eventID int64, n int64) {
	m.waitingMu.Lock()
	defer m.waitingMu.Unlock()
	if n == 0 {
		delete(m.waiting, eventID) // bounded by the events with people waiting
		return
	}
	m.waiting[eventID] = n
}

// Middleware times every request by its route pattern, and counts the
// answers of the booking endpoints by outcome. It must run inside the chi
// router, where the pattern is known once the request is served. Every
// label comes from a fixed set, so no request can add a series: the route
// is a pattern of the route table or "unmatched", the method one of the
// standard ones or "other", the status a number the handlers write.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &httpapi.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := rec.Status()
		if status == 0 {
			status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		m.requests.WithLabelValues(route, httpapi.MethodLabel(r.Method), strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		if route == "/book/safe" || route == "/book/unsafe" || route == "/holds" {
			outcome := httpapi.CodeOf(r.Context())
			if outcome == "" {
				outcome = "booked"
				if route == "/holds" {
					outcome = "held"
				}
			}
			m.bookings.WithLabelValues(route, outcome).Inc()
		}
	})
}
