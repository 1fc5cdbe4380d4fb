// Package statuspage is the live status page at GET / and the feed it reads,
// GET /status.json: the events on sale, busiest first, each with its stock
// split into confirmed, held and available tickets, the map of each seated
// event (every seat available, held or sold, never by whom), and the
// latest holds with the time they have left.
//
// The page is one HTML file with its stylesheet and script inlined when the
// package is first used: the service mounts only the page and the feed, and
// the page loads nothing else, from us or from anyone. Its
// Content-Security-Policy allows exactly that inline style and script, by
// hash, and fetches to its own origin.
//
// An event with a waiting room shows its queue: its state (sold out
// among them), how many wait, how many were admitted, and the pace of
// admissions measured from the admitted counter over the last seconds.
//
// The feed is for watching a sale, not for acting on it, so it carries no
// buyer's email, no hold id and no place id: a hold id is the capability
// to confirm or release the hold, a place id the key to a place. Holds are
// named by a short tag the store derives from the id and that cannot be
// turned back into it; places are only counted.
package statuspage

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/httpapi"
)

// EventStatus is one event's stock as the page shows it. Available + Held +
// Confirmed is Total while the store's invariants hold.
type EventStatus struct {
	ID        int64
	Name      string
	Total     int
	Available int
	Held      int // tickets in pending holds, lapsed or not, until swept
	Confirmed int
	// AdmitPerSecond is the pace of the event's waiting room; 0: it has
	// none.
	AdmitPerSecond int
	// Categories are the event's ticket categories, in id order.
	Categories []CategoryStatus
	// Seats is the event's seat map, row by row in the map's order; nil
	// for an event without one.
	Seats []SeatRow
}

// SeatRow is one row of a seat map as the page draws it: its seats'
// statuses in order, one letter a seat, "a" available, "h" held, "s" sold.
// Which booking holds a seat is never said.
type SeatRow struct {
	Section string `json:"section"`
	Row     string `json:"row"`
	Seats   string `json:"seats"`
}

// HoldStatus is one hold as the page shows it: no buyer, no id.
type HoldStatus struct {
	// Tag names the hold on the page without revealing its id.
	Tag      string
	EventID  int64
	Quantity int
	// Status is the status the API reports: pending, confirmed, released
	// or expired.
	Status    string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Source is what the feed reads.
type Source interface {
	// StatusEvents returns a page of events, busiest (most tickets held or
	// confirmed) first, then by id.
	StatusEvents(ctx context.Context, limit, offset int) ([]EventStatus, error)
	// LatestHolds returns the latest limit holds, newest first.
	LatestHolds(ctx context.Context, limit int) ([]HoldStatus, error)
}

// Database is the server the feed reads, as the page shows it: Role
// "primary" or "standby", Replication "synchronous", "waiting" or
// "asynchronous" (see store.DBRole).
type Database struct {
	Role        string
	Replication string
}

// DatabaseSource is a Source that can also say what its database is; the
// feed then carries it, and the page shows it beside the time.
type DatabaseSource interface {
	Database(ctx context.Context) (Database, error)
}

// Paging of GET /status.json, and how many holds it shows.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	LatestHolds  = 20
)

//go:embed page.html
var pageHTML []byte

//go:embed page.css
var pageCSS []byte

//go:embed page.js
var pageJS []byte

// The tags in page.html that name the stylesheet and the script; the page
// works opened from disk as it is, and is served with both inlined.
var (
	cssTag = []byte(`<link rel="stylesheet" href="page.css">`)
	jsTag  = []byte(`<script src="page.js"></script>`)
)

// page is the HTML served and the policy that lets it run.
type page struct {
	html []byte
	csp  string
}

var builtPage = sync.OnceValues(func() (page, error) { return buildPage(pageHTML, pageCSS, pageJS) })

// buildPage inlines css and js into html and writes the policy that allows
// those two and nothing else.
func buildPage(html, css, js []byte) (page, error) {
	if bytes.Count(html, cssTag) != 1 || bytes.Count(html, jsTag) != 1 {
		return page{}, fmt.Errorf("statuspage: page.html must link page.css and page.js once each")
	}
	if bytes.Contains(bytes.ToLower(css), []byte("</style")) || bytes.Contains(bytes.ToLower(js), []byte("</script")) {
		return page{}, fmt.Errorf("statuspage: page.css or page.js would close its own inline tag")
	}
	out := bytes.Replace(html, cssTag, concat("<style>", css, "</style>"), 1)
	out = bytes.Replace(out, jsTag, concat("<script>", js, "</script>"), 1)
	csp := "default-src 'none'; " +
		"style-src '" + hash(css) + "'; " +
		"script-src '" + hash(js) + "'; " +
		"connect-src 'self'; img-src data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return page{html: out, csp: csp}, nil
}

func concat(open string, body []byte, closing string) []byte {
	out := make([]byte, 0, len(open)+len(body)+len(closing))
	return append(append(append(out, open...), body...), closing...)
}

func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Handler serves the status page. It panics if the embedded files do not
// fit together, which the package's tests catch.
func Handler() http.Handler {
	p, err := builtPage()
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(p.html)
	})
}

// CategoryStatus is one ticket category's stock as the page shows it.
type CategoryStatus struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Total     int    `json:"total_tickets"`
	Available int    `json:"available_tickets"`
}

type eventJSON struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Total     int        `json:"total_tickets"`
	Available int        `json:"available_tickets"`
	Held      int        `json:"held_tickets"`
	Confirmed int        `json:"confirmed_tickets"`
	Queue     *queueJSON `json:"queue"`
	// Categories are never null: an event has at least one.
	Categories []CategoryStatus `json:"categories"`
	// SeatMap is omitted for an event without seats.
	SeatMap []SeatRow `json:"seat_map,omitempty"`
}

type holdJSON struct {
	Tag         string    `json:"tag"`
	EventID     int64     `json:"event_id"`
	Quantity    int       `json:"quantity"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	SecondsLeft int       `json:"seconds_left"`
}

type databaseJSON struct {
	Role        string `json:"role"`
	Replication string `json:"replication"`
}

type feed struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Database    *databaseJSON `json:"database,omitempty"`
	Events      []eventJSON   `json:"events"`
	Holds       []holdJSON    `json:"holds"`
}

// FeedHandler serves GET /status.json?limit=&offset=: a page of events,
// busiest first (limit 1 to MaxLimit, DefaultLimit when absent; offset 0 or
// more), each with its queue when it has one (read from queues; nil: none
// shown), and the LatestHolds latest holds.
func FeedHandler(src Source, queues Queues, log *slog.Logger) http.Handler {
	return feedHandler(src, queues, log, time.Now)
}

// feedHandler is FeedHandler on the given clock. seconds_left is for the
// page's countdown only: the database's clock decides when a hold expires.
func feedHandler(src Source, queues Queues, log *slog.Logger, now func() time.Time) http.Handler {
	m := newMeter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, offset, err := paging(r)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		ctx := r.Context()
		events, err := src.StatusEvents(ctx, limit, offset)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		holds, err := src.LatestHolds(ctx, LatestHolds)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		qs := readQueues(ctx, queues, m, log, events, now)
		at := now().UTC()
		out := feed{GeneratedAt: at, Events: make([]eventJSON, len(events)), Holds: make([]holdJSON, len(holds))}
		if ds, ok := src.(DatabaseSource); ok {
			// The page is for watching; a role it cannot read leaves
			// the rest of the feed as it is.
			if db, err := ds.Database(ctx); err == nil {
				out.Database = &databaseJSON{Role: db.Role, Replication: db.Replication}
			}
		}
		for i, e := range events {
			out.Events[i] = eventJSON{ID: e.ID, Name: e.Name, Total: e.Total, Available: e.Available,
				Held: e.Held, Confirmed: e.Confirmed, Queue: qs[i], Categories: e.Categories, SeatMap: e.Seats}
			if out.Events[i].Categories == nil {
				out.Events[i].Categories = []CategoryStatus{}
			}
		}
		for i, h := range holds {
			out.Holds[i] = holdJSON{
				Tag: h.Tag, EventID: h.EventID, Quantity: h.Quantity, Status: h.Status,
				CreatedAt: h.CreatedAt.UTC(), ExpiresAt: h.ExpiresAt.UTC(),
				SecondsLeft: secondsLeft(h, at),
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		httpapi.Encode(w, http.StatusOK, out)
	})
}

// secondsLeft is the whole seconds, rounded up, until a pending hold
// expires; 0 for a hold that is over or no longer pending.
func secondsLeft(h HoldStatus, at time.Time) int {
	if h.Status != "pending" {
		return 0
	}
	left := h.ExpiresAt.Sub(at).Seconds()
	if left <= 0 {
		return 0
	}
	return int(math.Ceil(left))
}

func paging(r *http.Request) (limit, offset int, err error) {
	q, err := httpapi.Query(r)
	if err != nil {
		return 0, 0, err
	}
	l, err := httpapi.QueryInt(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		return 0, 0, err
	}
	o, err := httpapi.QueryInt(q, "offset", 0, 0, int64(math.MaxInt))
	return int(l), int(o), err
}
