package booking

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/money"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// maxPrice is the largest ticket_price a NUMERIC(10,2) can hold.
const maxPrice = money.Cents(99_999_999_99)

// AdminStore is what managing events needs from storage.
type AdminStore interface {
	// CreateEvent inserts an event with all of p set, its whole stock
	// available and its oversell guard on.
	CreateEvent(ctx context.Context, p sale.EventPatch) (sale.Event, error)
	// UpdateEvent applies p under the event's row lock; sale.ErrTotalBelowHeld
	// if the total would leave fewer tickets than are held and sold.
	UpdateEvent(ctx context.Context, id int64, p sale.EventPatch) (sale.Event, error)
}

// eventInput is the JSON body of POST and PATCH /admin/events.
type eventInput struct {
	Name         *string      `json:"name"`
	Description  *string      `json:"description"`
	EventDate    *string      `json:"event_date"`
	TotalTickets *httpapi.Int `json:"total_tickets"`
	TicketPrice  *string      `json:"ticket_price"`
	// Raw, so that null (clear) and absent (leave) differ.
	OnSaleAt  json.RawMessage `json:"on_sale_at"`
	OffSaleAt json.RawMessage `json:"off_sale_at"`
	Queue     json.RawMessage `json:"queue"`
}

// queueInput is the "queue" object of the admin bodies.
type queueInput struct {
	AdmitPerSecond *httpapi.Int `json:"admit_per_second"`
	PassTTL        *string      `json:"pass_ttl"`
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// parseTime reads an RFC 3339 time JSON can hold (years 0001 to 9999 in
// UTC), or a 400 naming field.
func parseTime(field, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err == nil && (t.UTC().Year() < 1 || t.UTC().Year() > 9999) {
		err = errors.New("year out of range")
	}
	if err != nil {
		return time.Time{}, problem.Invalidf("%s must be an RFC 3339 time such as 2027-06-01T18:00:00Z", field)
	}
	return t.UTC(), nil
}

// optionalTime reads a nullable time field of a patch.
func optionalTime(field string, raw json.RawMessage) (sale.Optional[time.Time], error) {
	if raw == nil {
		return sale.Optional[time.Time]{}, nil
	}
	if isNull(raw) {
		return sale.Optional[time.Time]{Set: true}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return sale.Optional[time.Time]{}, problem.Invalidf("%s must be an RFC 3339 time string or null", field)
	}
	t, err := parseTime(field, s)
	if err != nil {
		return sale.Optional[time.Time]{}, err
	}
	return sale.Optional[time.Time]{Set: true, V: &t}, nil
}

// optionalQueue reads the queue field: null, or an object whose missing
// settings take their defaults.
func optionalQueue(raw json.RawMessage) (sale.Optional[sale.QueueSettings], error) {
	if raw == nil {
		return sale.Optional[sale.QueueSettings]{}, nil
	}
	if isNull(raw) {
		return sale.Optional[sale.QueueSettings]{Set: true}, nil
	}
	var in queueInput
	if err := httpapi.DecodeBytes(raw, &in); err != nil {
		var e *problem.Error
		if errors.As(err, &e) {
			return sale.Optional[sale.QueueSettings]{}, problem.Invalidf("queue: %s", e.Msg)
		}
		return sale.Optional[sale.QueueSettings]{}, err
	}
	q := sale.QueueSettings{AdmitPerSecond: sale.DefaultAdmitPerSecond, PassTTL: sale.DefaultPassTTL}
	if in.AdmitPerSecond != nil {
		n := in.AdmitPerSecond.N
		if !in.AdmitPerSecond.Set || n < 1 || n > sale.MaxAdmitPerSecond {
			return sale.Optional[sale.QueueSettings]{}, problem.Invalidf("queue.admit_per_second must be an integer from 1 to %d", sale.MaxAdmitPerSecond)
		}
		q.AdmitPerSecond = int(n)
	}
	if in.PassTTL != nil {
		d, err := time.ParseDuration(*in.PassTTL)
		if err != nil || d%time.Second != 0 || d < sale.MinPassTTL.Duration() || d > sale.MaxPassTTL.Duration() {
			return sale.Optional[sale.QueueSettings]{}, problem.Invalidf(`queue.pass_ttl must be a whole number of seconds from "10s" to "24h", such as "10m"`)
		}
		q.PassTTL = sale.Seconds(d / time.Second)
	}
	return sale.Optional[sale.QueueSettings]{Set: true, V: &q}, nil
}

// controlInText reports a control character (Unicode Cc) other than a line
// feed or a tab, which a description may hold: the rest (escape, carriage
// return, C1 controls) can rewrite a terminal that shows the text, as
// `holdfast check` and the logs do. A name holds none at all.
func controlInText(r rune) bool {
	return unicode.IsControl(r) && r != '\n' && r != '\t'
}

func (in eventInput) patch() (sale.EventPatch, error) {
	var p sale.EventPatch
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if name == "" || utf8.RuneCountInString(name) > sale.MaxNameLength || strings.ContainsFunc(name, unicode.IsControl) {
			return p, problem.Invalidf("name must be 1 to %d characters, with no control characters", sale.MaxNameLength)
		}
		p.Name = &name
	}
	if in.Description != nil {
		if utf8.RuneCountInString(*in.Description) > 10_000 || strings.ContainsFunc(*in.Description, controlInText) {
			return p, problem.Invalidf("description must be at most 10000 characters, with no control characters but line breaks (\\n) and tabs")
		}
		p.Description = in.Description
	}
	if in.EventDate != nil {
		// JSON, and so every answer carrying the event, can hold only
		// years 0001 to 9999 in UTC.
		t, err := parseTime("event_date", *in.EventDate)
		if err != nil {
			return p, err
		}
		p.EventDate = &t
	}
	var err error
	if p.OnSaleAt, err = optionalTime("on_sale_at", in.OnSaleAt); err != nil {
		return p, err
	}
	if p.OffSaleAt, err = optionalTime("off_sale_at", in.OffSaleAt); err != nil {
		return p, err
	}
	if on, off := p.OnSaleAt.V, p.OffSaleAt.V; on != nil && off != nil && !off.After(*on) {
		return p, sale.ErrSaleWindow
	}
	if p.Queue, err = optionalQueue(in.Queue); err != nil {
		return p, err
	}
	if in.TotalTickets != nil {
		n := in.TotalTickets.N
		if !in.TotalTickets.Set || n < 0 || n > sale.MaxTotalTickets {
			return p, problem.Invalidf("total_tickets must be an integer from 0 to %d", sale.MaxTotalTickets)
		}
		total := int(n)
		p.Total = &total
	}
	if in.TicketPrice != nil {
		c, err := money.Parse(*in.TicketPrice)
		if err != nil || c < 0 || c > maxPrice {
			return p, problem.Invalidf(`ticket_price must be a decimal string from "0.00" to "99999999.99"`)
		}
		p.Price = &c
	}
	return p, nil
}

// AttemptLimit limits failed attempts at the admin token per client.
type AttemptLimit interface {
	// Try readies an attempt from r's client to be judged, and returns
	// the client, done, to be called once it is (right or not), which
	// returns an error to answer with instead of 401 when a failure was
	// one too many, and an error to answer with when that client may not
	// try now.
	Try(r *http.Request) (client string, done func(ctx context.Context, right bool) error, err error)
}

// RequireToken lets through only requests that carry "Authorization: Bearer
// <token>" (the scheme in any case, RFC 7235); others are 401 unauthorized,
// counted by limit and logged with the client's address, never with what
// they sent. Both sides are hashed before the constant-time comparison, so
// it takes the same time whatever the guess, its length included.
func RequireToken(token string, limit AttemptLimit, log *slog.Logger) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client, done, err := limit.Try(r)
			if err != nil {
				log.WarnContext(r.Context(), "admin request refused", "reason", "over the limit on failures",
					"client", client, "over_limit", true)
				httpapi.WriteError(w, r, log, err)
				return
			}
			reason := "no bearer token"
			if cred, ok := bearer(r.Header.Get("Authorization")); ok {
				got := sha256.Sum256([]byte(cred))
				if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
					_ = done(r.Context(), true)
					next.ServeHTTP(w, r)
					return
				}
				reason = "wrong token"
			}
			err = done(r.Context(), false)
			log.WarnContext(r.Context(), "admin request refused", "reason", reason, "client", client,
				"over_limit", err != nil)
			if err != nil {
				httpapi.WriteError(w, r, log, err)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="holdfast admin"`)
			httpapi.WriteError(w, r, log, problem.Errorf(problem.Unauthorized, "a valid admin bearer token is required"))
		})
	}
}

// bearer returns the credentials of an Authorization header of the Bearer
// scheme, whose name is case-insensitive.
func bearer(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}

// HandleCreateEvent answers POST /admin/events.
func HandleCreateEvent(store AdminStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in eventInput
		if err := httpapi.Decode(w, r, &in); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		p, err := in.patch()
		if err == nil {
			switch {
			case p.Name == nil:
				err = problem.Invalidf("name is required")
			case p.EventDate == nil:
				err = problem.Invalidf("event_date is required")
			case p.Total == nil:
				err = problem.Invalidf("total_tickets is required")
			case p.Price == nil:
				err = problem.Invalidf("ticket_price is required")
			}
		}
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		ev, err := store.CreateEvent(r.Context(), p)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "event created", "event", ev.ID, "total", ev.TotalTickets)
		httpapi.Encode(w, http.StatusCreated, ev)
	})
}

// HandleUpdateEvent answers PATCH /admin/events/{id}.
func HandleUpdateEvent(store AdminStore, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpapi.ParseID(chi.URLParam(r, "id"), "event id")
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		var in eventInput
		if err := httpapi.Decode(w, r, &in); err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		p, err := in.patch()
		if err == nil && p == (sale.EventPatch{}) {
			err = problem.Invalidf("nothing to change: send at least one of name, description, event_date, total_tickets, ticket_price, on_sale_at, off_sale_at, queue")
		}
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		ev, err := store.UpdateEvent(r.Context(), id, p)
		if err != nil {
			httpapi.WriteError(w, r, log, err)
			return
		}
		log.InfoContext(r.Context(), "event updated", "event", ev.ID, "total", ev.TotalTickets, "available", ev.AvailableTickets)
		httpapi.Encode(w, http.StatusOK, ev)
	})
}
