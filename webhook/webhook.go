package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/problem"
)

// The event types: one per change of a hold.
const (
	TypeCreated   = "hold.created"
	TypeExtended  = "hold.extended"
	TypeConfirmed = "hold.confirmed"
	TypeReleased  = "hold.released"
	TypeExpired   = "hold.expired"
	TypeCancelled = "hold.cancelled"
)

// Types lists every event type.
var Types = []string{TypeCreated, TypeExtended, TypeConfirmed, TypeReleased, TypeExpired, TypeCancelled}

// Event is one change of a hold, as the change feed lists it and a webhook
// delivers it. Data is the hold as the change left it.
type Event struct {
	ID        uuid.UUID `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	// Sequence counts the changes of one hold from 1, so a receiver can
	// order the events of a hold whatever order they arrive in.
	Sequence int       `json:"sequence"`
	Data     hold.Hold `json:"data"`
	// Pos is the event's place in the change feed.
	Pos int64 `json:"-"`
}

// Endpoint is a receiver of webhooks.
type Endpoint struct {
	ID    int64    `json:"id"`
	URL   string   `json:"url"`
	Types []string `json:"types"`
	// Secret signs deliveries; shown only when the endpoint is made and
	// when its secret is rotated.
	Secret    string    `json:"secret,omitempty"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"created_at"`
	// DisabledReason says why an endpoint was turned off (a 410).
	DisabledReason *string `json:"disabled_reason"`
}

// Attempt is one attempt of one delivery, as the delivery log shows it.
type Attempt struct {
	DeliveryID int64     `json:"delivery_id"`
	EventID    uuid.UUID `json:"event_id"`
	Type       string    `json:"type"`
	Attempt    int       `json:"attempt"`
	// StatusCode is the receiver's answer, nil when there was none (the
	// connection refused, the 10 s timeout passed).
	StatusCode *int      `json:"status_code"`
	Delivered  bool      `json:"delivered"`
	At         time.Time `json:"at"`
	Error      string    `json:"error,omitempty"`
}

// Errors of the webhook service.
var (
	ErrNotFound         = problem.New(problem.NotFound, "no such webhook endpoint")
	ErrDeliveryNotFound = problem.New(problem.NotFound, "no such delivery of this endpoint")
)

// EndpointStore is what the admin side needs from storage.
type EndpointStore interface {
	CreateEndpoint(ctx context.Context, url string, types []string, secret string) (Endpoint, error)
	Endpoints(ctx context.Context) ([]Endpoint, error)
	DeleteEndpoint(ctx context.Context, id int64) (Endpoint, error)
	// RotateSecret makes secret the endpoint's current secret; the
	// others stay valid for grace.
	RotateSecret(ctx context.Context, id int64, secret string, grace time.Duration) (Endpoint, error)
	Attempts(ctx context.Context, endpointID int64, limit int) ([]Attempt, error)
	// ReplayDelivery makes a new delivery of the delivery's event to its
	// endpoint, due now, and turns the endpoint on again.
	ReplayDelivery(ctx context.Context, endpointID, deliveryID int64) (int64, error)
	Changes(ctx context.Context, after int64, limit int) ([]Event, error)
}

// Service manages webhook endpoints and reads the change feed.
type Service struct {
	Store EndpointStore
	// AllowPrivate lets endpoints live on loopback, private and
	// link-local addresses (--webhook-allow-private).
	AllowPrivate bool
	// Resolver looks up an endpoint's host; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// RotationGrace is how long the previous secret keeps signing after a
// rotation, so receivers can switch at their pace.
const RotationGrace = 24 * time.Hour

// CreateRequest is the body of POST /admin/webhooks.
type CreateRequest struct {
	URL   string   `json:"url"`
	Types []string `json:"types"`
}

// Valid checks the request's fields.
func (r CreateRequest) Valid() error {
	if len(r.URL) > 2048 {
		return problem.Invalidf("url must be at most 2048 characters")
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return problem.Invalidf("url must be an absolute http:// or https:// URL")
	}
	if u.User != nil {
		return problem.Invalidf("url must not carry a user or password")
	}
	for _, t := range r.Types {
		if !slices.Contains(Types, t) {
			return problem.Invalidf("types: %q is not one of %s", t, strings.Join(Types, ", "))
		}
	}
	return nil
}

// Create registers an endpoint with a fresh secret.
func (s *Service) Create(ctx context.Context, req CreateRequest) (Endpoint, error) {
	if err := req.Valid(); err != nil {
		return Endpoint{}, err
	}
	if !s.AllowPrivate {
		if err := s.checkPublic(ctx, req.URL); err != nil {
			return Endpoint{}, err
		}
	}
	types := slices.Clone(req.Types)
	slices.Sort(types)
	types = slices.Compact(types)
	if types == nil {
		types = []string{}
	}
	return s.Store.CreateEndpoint(ctx, req.URL, types, newSecret())
}

// checkPublic refuses a URL whose host is, or resolves to, an address
// that is not public. The dialer checks again at every connection (see
// Dialer), since a name may resolve differently later.
func (s *Service) checkPublic(ctx context.Context, raw string) error {
	u, _ := url.Parse(raw)
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !Public(ip) {
			return problem.Invalidf("url: %s is a loopback, private or link-local address (the server runs without --webhook-allow-private)", host)
		}
		return nil
	}
	r := s.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(lctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return problem.Invalidf("url: host %q does not resolve", host)
	}
	for _, a := range addrs {
		if !Public(a) {
			return problem.Invalidf("url: %s resolves to %s, a loopback, private or link-local address (the server runs without --webhook-allow-private)", host, a.Unmap())
		}
	}
	return nil
}

// Public reports whether ip is an address webhooks may go to without
// --webhook-allow-private: not loopback, private, link-local, unspecified,
// multicast, or the shared and benchmarking ranges.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || !ip.IsValid() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (carrier NAT)
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach private IPv4
}

func newSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "whsec_" + hex.EncodeToString(b)
}

// List lists the endpoints, without their secrets.
func (s *Service) List(ctx context.Context) ([]Endpoint, error) { return s.Store.Endpoints(ctx) }

// Delete removes an endpoint and its deliveries, and returns it.
func (s *Service) Delete(ctx context.Context, id int64) (Endpoint, error) {
	return s.Store.DeleteEndpoint(ctx, id)
}

// Rotate gives an endpoint a new secret; the old one keeps signing for
// RotationGrace, so each delivery carries both signatures meanwhile.
func (s *Service) Rotate(ctx context.Context, id int64) (Endpoint, error) {
	return s.Store.RotateSecret(ctx, id, newSecret(), RotationGrace)
}

// Attempts is the endpoint's delivery log, newest first.
func (s *Service) Attempts(ctx context.Context, id int64, limit int) ([]Attempt, error) {
	return s.Store.Attempts(ctx, id, limit)
}

// Replay sends a delivery's event to its endpoint again, now, as a new
// delivery with retries of its own. A replay to an endpoint a 410 turned
// off turns it on again: the operator says the receiver is back.
func (s *Service) Replay(ctx context.Context, id, deliveryID int64) (int64, error) {
	return s.Store.ReplayDelivery(ctx, id, deliveryID)
}

// Changes lists the change feed's events after position after, at most
// limit, in commit order.
func (s *Service) Changes(ctx context.Context, after int64, limit int) ([]Event, error) {
	return s.Store.Changes(ctx, after, limit)
}
