// Package queuepage is the buyer's page of the waiting room,
// GET /queue/{place_id}/page: what GET /queue/{place_id} answers, for a
// person rather than a program. It shows the place's position, the people
// ahead and an estimated wait; then "your turn" with the pass and the time
// it has left; or sold out, left, expired, done.
//
// The page is rendered on the server and refreshes itself with a <meta
// http-equiv="refresh"> as poll_after_seconds says, so it works with
// JavaScript off; a small script only counts the time left down between two
// refreshes and copies the pass. It loads nothing: its stylesheet and script
// are inlined, and its Content-Security-Policy allows those two by hash and
// nothing else. Everything it prints goes through html/template.
//
// The place id in its URL is the key to the place, so the page is never
// cached (Cache-Control: no-store) and sends no Referer.
package queuepage

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/sale"
)

// Places is what the page reads: queue.Service.
type Places interface {
	// Get reads a place as its buyer polls it.
	Get(ctx context.Context, id string) (queue.Place, error)
	// Event reads the place's event, for its name and pace.
	Event(ctx context.Context, id int64) (sale.Event, error)
}

//go:embed page.html
var pageHTML string

//go:embed page.css
var pageCSS string

//go:embed page.js
var pageJS string

// The tags in page.html that name its stylesheet and script, replaced by
// both inlined.
const (
	cssTag = `<link rel="stylesheet" href="page.css">`
	jsTag  = `<script src="page.js"></script>`
)

// page is the parsed template, the inline style and script that replace
// its two tags once it is rendered, and the policy that lets them run.
type page struct {
	tmpl      *template.Template
	style, js []byte
	csp       string
}

var builtPage = sync.OnceValues(func() (page, error) { return buildPage(pageHTML, pageCSS, pageJS) })

// buildPage parses the template and prepares css and js to be inlined
// into what it renders. They are put in after rendering, not into the
// template's source, because html/template strips the comments of the
// script and the stylesheet it parses, and the policy's hashes must be
// those of the bytes served.
func buildPage(html, css, js string) (page, error) {
	if strings.Count(html, cssTag) != 1 || strings.Count(html, jsTag) != 1 {
		return page{}, errors.New("queuepage: page.html must link page.css and page.js once each")
	}
	if contains(css, "</style") || contains(js, "</script") || contains(css, "{{") || contains(js, "{{") {
		return page{}, errors.New("queuepage: page.css or page.js would close its inline tag or holds a template action")
	}
	t, err := template.New("page").Parse(html)
	if err != nil {
		return page{}, fmt.Errorf("queuepage: parse page.html: %w", err)
	}
	csp := "default-src 'none'; " +
		"style-src '" + hash(css) + "'; " +
		"script-src '" + hash(js) + "'; " +
		"img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return page{tmpl: t, csp: csp, style: []byte("<style>" + css + "</style>"), js: []byte("<script>" + js + "</script>")}, nil
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func contains(s, sub string) bool { return strings.Contains(strings.ToLower(s), sub) }

// render executes the template with v and inlines the style and script.
// The tags replaced are the template's own, in <head>, before anything
// printed; and nothing printed can spell them, since html/template
// escapes every "<" it prints.
func (p page) render(v view) ([]byte, error) {
	var buf bytes.Buffer
	if err := p.tmpl.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("queuepage: render: %w", err)
	}
	out := bytes.Replace(buf.Bytes(), []byte(cssTag), p.style, 1)
	return bytes.Replace(out, []byte(jsTag), p.js, 1), nil
}

// Kinds of page beyond the place statuses: the pre-queue (waiting, no
// position yet) and an error.
const (
	kindPreQueue = "pre_queue"
	kindError    = "error"
)

// view is what the template prints; every field is text that
// html/template escapes.
type view struct {
	Kind    string
	Title   string
	Event   string
	EventID int64
	// Refresh is the page's own refresh, in seconds; 0: none.
	Refresh int

	Position, Ahead, Wait string
	Rate                  int

	Countdown            int
	CountdownText        string
	OnSaleAt, OnSaleText string
	Pass                 string
	PassLeft             int
	PassLeftText         string
	PassExpiresAt        string
	PassExpiresText      string
	Message, Detail      string
}

// Handler serves GET /queue/{place_id}/page. It panics if the embedded
// files do not fit together, which the package's tests catch.
func Handler(places Places, log *slog.Logger) http.Handler {
	p, err := builtPage()
	if err != nil {
		panic(err)
	}
	return handler(p, places, log, time.Now)
}

func handler(p page, places Places, log *slog.Logger, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		status := http.StatusOK
		v, err := placeView(ctx, places, log, chi.URLParam(r, "place_id"), now())
		if err != nil {
			e := httpapi.Public(r, log, err)
			status = e.Status
			v = errorView(e)
			if e.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
			}
		}
		body, err := p.render(v)
		// The page names its buyer's place (and may hold a pass): no
		// copy kept, no referrer sent, whatever is answered.
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if err != nil {
			log.ErrorContext(ctx, "queuepage: render", "err", err)
			h.Del("Retry-After") // the place's error's, not this one's
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", p.csp)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// placeView reads the place and its event and says what the page shows.
func placeView(ctx context.Context, places Places, log *slog.Logger, id string, now time.Time) (view, error) {
	pl, err := places.Get(ctx, id)
	if err != nil {
		return view{}, err
	}
	v := view{Kind: string(pl.Status), EventID: pl.EventID, Event: "Event #" + strconv.FormatInt(pl.EventID, 10)}
	rate := sale.DefaultAdmitPerSecond
	var onSale *time.Time
	switch ev, err := places.Event(ctx, pl.EventID); {
	case err == nil:
		if ev.Name != "" {
			v.Event = ev.Name
		}
		if ev.Queue != nil {
			rate = ev.Queue.AdmitPerSecond
		}
		onSale = ev.OnSaleAt
	case !errors.Is(err, sale.ErrEventNotFound):
		// The place is still worth showing; only the name and pace are
		// the defaults.
		log.WarnContext(ctx, "queuepage: read the event", "event", pl.EventID, "err", err)
	}
	if pl.PollAfterSeconds != nil {
		v.Refresh = *pl.PollAfterSeconds
	}
	switch pl.Status {
	case queue.StatusWaiting:
		if pl.Position == nil {
			v.Kind, v.Title = kindPreQueue, "You're in the line for the sale"
			if onSale != nil && onSale.After(now) {
				v.Countdown = ceilSeconds(onSale.Sub(now))
				v.CountdownText = clock(v.Countdown)
				v.OnSaleAt = onSale.UTC().Format(time.RFC3339)
				v.OnSaleText = onSale.UTC().Format("Mon 2 Jan 2006, 15:04 UTC")
			}
			break
		}
		pos := *pl.Position
		v.Title = "You're in line"
		v.Position = "#" + group(pos)
		v.Ahead = people(pos - 1)
		v.Rate = max(1, rate)
		v.Wait = wait(time.Duration(float64(pos) / float64(v.Rate) * float64(time.Second)))
	case queue.StatusAdmitted:
		v.Title = "It's your turn"
		if pl.Pass != nil {
			v.Pass = *pl.Pass
		}
		if pl.PassExpiresAt != nil {
			v.PassLeft = max(0, ceilSeconds(pl.PassExpiresAt.Sub(now)))
			v.PassLeftText = clock(v.PassLeft)
			v.PassExpiresAt = pl.PassExpiresAt.UTC().Format(time.RFC3339)
			v.PassExpiresText = pl.PassExpiresAt.UTC().Format("15:04:05 UTC")
		}
		if v.Pass == "" {
			// Admitted, its pass not signed yet: the next poll signs it.
			v.Refresh = 1
		}
	case queue.StatusSoldOut:
		v.Title = "Sold out"
	case queue.StatusDone:
		v.Title = "You're done"
	case queue.StatusLeft:
		v.Title = "You left the line"
	case queue.StatusExpired:
		v.Title = "Your turn is over"
	default:
		v.Kind, v.Title = kindError, "Your place"
		v.Message = "This place reads " + string(pl.Status) + "."
	}
	return v, nil
}

// errorView is the page of a place that cannot be read.
func errorView(e httpapi.Answer) view {
	status := e.Status
	v := view{Kind: kindError, Event: "holdfast waiting room", Detail: e.Message}
	switch {
	case status == http.StatusBadRequest:
		v.Title, v.Message = "This link is not a place in line", "Check that you have the whole link, as the waiting room gave it."
	case status == http.StatusNotFound:
		v.Title, v.Message = "No such place in line", "This place does not exist, or no longer does. Join the line again to get a new one."
	case status == http.StatusServiceUnavailable:
		v.Title, v.Message = "The waiting room is unavailable for a moment", "Your place is kept. This page tries again by itself."
		v.Refresh = max(1, int(math.Ceil(e.RetryAfter.Seconds())))
	default:
		v.Title, v.Message = "Something went wrong", "This page tries again by itself."
		v.Refresh = 5
	}
	return v
}

func ceilSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// clock writes seconds as m:ss, or h:mm:ss from an hour.
func clock(secs int) string {
	h, m, s := secs/3600, secs%3600/60, secs%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// group writes n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func people(n int64) string {
	switch {
	case n <= 0:
		return "nobody"
	case n == 1:
		return "1 person"
	default:
		return group(n) + " people"
	}
}

// wait says an expected wait as a person would, rounded up.
func wait(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		m := int(math.Ceil(d.Minutes()))
		if m == 1 {
			return "about 1 minute"
		}
		return "about " + strconv.Itoa(m) + " minutes"
	default:
		m := int(math.Ceil(d.Minutes()))
		return fmt.Sprintf("about %d h %02d min", m/60, m%60)
	}
}
