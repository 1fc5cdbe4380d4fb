package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/worker"
	"github.com/holdfast/holdfast/webhook/signature"
)

// Claim is one due delivery a worker has taken: the event, where it goes
// and the secrets that sign it.
type Claim struct {
	DeliveryID int64
	EndpointID int64
	URL        string
	Secrets    []string
	// Attempt is this attempt's number, from 1.
	Attempt int
	Event   Event
}

// Result is what one attempt came to.
type Result struct {
	DeliveryID int64
	EndpointID int64
	Attempt    int
	// StatusCode is the receiver's answer, 0 for none.
	StatusCode int
	Delivered  bool
	Err        string
}

// What a delivery became after an attempt.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
	OutcomeDisabled  = "disabled"
)

// DeliveryStore is what delivery needs from storage.
type DeliveryStore interface {
	// Publish gives the next committed events their feed positions and
	// makes their deliveries, if no other publisher is at it; it returns
	// how many it published.
	Publish(ctx context.Context, limit int) (int, error)
	// ClaimDeliveries takes up to limit due deliveries no other worker
	// holds, at most perEndpoint of any one endpoint and none of skip's,
	// making each due again lease from now in case this worker dies with
	// it.
	ClaimDeliveries(ctx context.Context, limit, perEndpoint int, skip []int64, lease time.Duration) ([]Claim, error)
	// RecordAttempts logs a batch of attempts and moves each delivery on:
	// delivered, due again after retryBase doubled per attempt made (the
	// last retry at retryFor after it was made, failed if that one
	// fails), or, on a 410, disabled with its endpoint and every delivery
	// still due to it. It returns each delivery's outcome, those a 410
	// gave up among them, in the batch or not.
	RecordAttempts(ctx context.Context, rs []Result, retryBase, retryFor time.Duration) (map[int64]string, error)
	// ReleaseClaim makes a claimed delivery due now again, unattempted
	// (the worker is stopping).
	ReleaseClaim(ctx context.Context, deliveryID int64, attempt int) error
	// PurgeOutbox deletes up to limit events older than retention that
	// are published and have no delivery still due, with their
	// deliveries and attempts, and returns how many events it deleted.
	PurgeOutbox(ctx context.Context, retention time.Duration, limit int) (int, error)
}

// Observer hears what the outbox and the deliveries did, for metrics.
type Observer interface {
	EventsPublished(n int)
	WebhookDelivered(lag time.Duration)
	WebhookRetried()
	WebhookFailed()
}

type noObserver struct{}

func (noObserver) EventsPublished(int)            {}
func (noObserver) WebhookDelivered(time.Duration) {}
func (noObserver) WebhookRetried()                {}
func (noObserver) WebhookFailed()                 {}

// Options are the delivery settings.
type Options struct {
	// Timeout bounds one attempt, answer included (10 s).
	Timeout time.Duration
	// RetryBase is the delay before the first retry; each next delay
	// doubles the last.
	RetryBase time.Duration
	// RetryFor is how long after the delivery was made it is retried
	// (--webhook-retry-for).
	RetryFor time.Duration
	// Lease is how long a claimed delivery stays with its worker before
	// another may take it: longer than Timeout.
	Lease time.Duration
	// Poll is how often an idle worker looks for due deliveries.
	Poll time.Duration
	// Concurrency is how many attempts one instance makes at once.
	Concurrency int
	// AllowPrivate lets deliveries go to loopback, private and
	// link-local addresses.
	AllowPrivate bool
}

// DefaultOptions are the contract's settings.
func DefaultOptions() Options {
	return Options{Timeout: 10 * time.Second, RetryBase: 5 * time.Second, RetryFor: 72 * time.Hour,
		Lease: 15 * time.Second, Poll: 100 * time.Millisecond, Concurrency: 64}
}

// Deliverer is the background worker that sends due deliveries. One runs
// on every instance; SKIP LOCKED claims keep two from sending the same
// attempt. It holds no database connection while it waits on a
// receiver, so a slow or dead receiver costs only its own slots.
type Deliverer struct {
	store  DeliveryStore
	opts   Options
	client *http.Client
	log    *slog.Logger
	// Observe hears deliveries; nil hears nothing.
	Observe Observer
	wake    chan struct{}
	loop    *worker.Loop

	mu       sync.Mutex
	inFlight map[int64]int // attempts in flight, by endpoint
}

// perEndpoint is how many of a worker's attempts one endpoint may have in
// flight (a claim may take up to that many more): a quarter of them, so a
// receiver that hangs holds up the others' deliveries at most that much.
func (d *Deliverer) perEndpoint() int { return max(1, d.opts.Concurrency/4) }

// busy lists the endpoints with perEndpoint attempts in flight or more.
func (d *Deliverer) busy() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int64
	for ep, n := range d.inFlight {
		if n >= d.perEndpoint() {
			out = append(out, ep)
		}
	}
	return out
}

func (d *Deliverer) flying(ep int64, delta int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight[ep] += delta
	if d.inFlight[ep] <= 0 {
		delete(d.inFlight, ep)
	}
}

// attempted is an attempt made, waiting to be recorded.
type attempted struct {
	res Result
	// at is when the event's change was made, for the lag.
	at time.Time
}

// recordBatch is the most attempts one transaction records.
const recordBatch = 256

// NewDeliverer returns a Deliverer of store's deliveries.
func NewDeliverer(store DeliveryStore, opts Options, log *slog.Logger) *Deliverer {
	d := &Deliverer{store: store, opts: opts, client: Client(opts), log: log, wake: make(chan struct{}, 1),
		inFlight: map[int64]int{}}
	d.loop = worker.NewLoop(d.run)
	return d
}

// Client is the HTTP client deliveries use: opts.Timeout per attempt, no
// redirects followed (a 3xx is not a delivery), and, unless
// opts.AllowPrivate, a dialer that refuses every address that is not
// public, whatever the name resolved to.
func Client(opts Options) *http.Client {
	dialer := &net.Dialer{Timeout: opts.Timeout}
	if !opts.AllowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !Public(ap.Addr()) {
				return fmt.Errorf("webhook: %s is not a public address", address)
			}
			return nil
		}
	}
	tr := &http.Transport{
		DialContext: dialer.DialContext, TLSHandshakeTimeout: opts.Timeout,
		MaxIdleConns: 100, MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second,
	}
	return &http.Client{
		Transport: tr, Timeout: opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Start begins delivering.
func (d *Deliverer) Start(ctx context.Context) error { return d.loop.Start(ctx) }

// Stop ends delivering: attempts in flight are cut off and their
// deliveries made due again for the next worker, unattempted.
func (d *Deliverer) Stop(ctx context.Context) error { return d.loop.Stop(ctx) }

// Wake makes an idle worker look for due deliveries now.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Deliverer) observer() Observer {
	if d.Observe == nil {
		return noObserver{}
	}
	return d.Observe
}

// run claims due deliveries while it has free slots and sends each in a
// goroutine of its own; one recorder writes what came of them in batches,
// so a busy endpoint costs a transaction per batch, not per event.
func (d *Deliverer) run(ctx context.Context) {
	slots := make(chan struct{}, max(d.opts.Concurrency, 1))
	freed := make(chan struct{}, 1)
	done := make(chan attempted, recordBatch)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		d.record(ctx, done)
	}()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(done)
		<-recorded
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.wake:
		case <-freed:
		}
		free := cap(slots) - len(slots)
		var claims []Claim
		if free > 0 {
			var err error
			claims, err = d.store.ClaimDeliveries(ctx, free, d.perEndpoint(), d.busy(), d.opts.Lease)
			if err != nil && ctx.Err() == nil {
				d.log.WarnContext(ctx, "webhook: could not claim deliveries", "err", err)
			}
		}
		for _, c := range claims {
			slots <- struct{}{}
			d.flying(c.EndpointID, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.attempt(ctx, c, done)
				d.flying(c.EndpointID, -1)
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		// A full claim may have left more due: look again at once.
		next := d.opts.Poll
		if len(claims) > 0 && len(claims) == free {
			next = 0
		}
		timer.Reset(next)
	}
}

// attempt sends one claimed delivery and hands what came of it to the
// recorder.
func (d *Deliverer) attempt(ctx context.Context, c Claim, done chan<- attempted) {
	body, err := json.Marshal(c.Event)
	res := Result{DeliveryID: c.DeliveryID, EndpointID: c.EndpointID, Attempt: c.Attempt}
	if err == nil {
		res.StatusCode, err = d.send(ctx, c, body)
	}
	if ctx.Err() != nil {
		// Stopping: no attempt to speak of; the next worker sends it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := d.store.ReleaseClaim(rctx, c.DeliveryID, c.Attempt); rerr != nil {
			d.log.WarnContext(rctx, "webhook: could not release a delivery (due again when its lease ends)", "delivery_id", c.DeliveryID, "err", rerr)
		}
		return
	}
	res.Delivered = err == nil && res.StatusCode >= 200 && res.StatusCode < 300
	if err != nil {
		res.Err = trim(err.Error(), 300)
	}
	done <- attempted{res: res, at: c.Event.CreatedAt}
}

// record writes attempts as they come, as many at once as are waiting,
// until done is closed and drained.
func (d *Deliverer) record(ctx context.Context, done <-chan attempted) {
	for first := range done {
		batch := []attempted{first}
	more:
		for len(batch) < recordBatch {
			select {
			case a, ok := <-done:
				if !ok {
					break more
				}
				batch = append(batch, a)
			default:
				break more
			}
		}
		d.recordBatch(ctx, batch)
	}
}

func (d *Deliverer) recordBatch(ctx context.Context, batch []attempted) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rs := make([]Result, len(batch))
	for i, a := range batch {
		rs[i] = a.res
	}
	outcomes, err := d.store.RecordAttempts(rctx, rs, d.opts.RetryBase, d.opts.RetryFor)
	if err != nil {
		// Due again when their leases end: at least once.
		d.log.WarnContext(rctx, "webhook: could not record attempts", "attempts", len(rs), "err", err)
		return
	}
	for _, a := range batch {
		switch outcome := outcomes[a.res.DeliveryID]; outcome {
		case OutcomeDelivered:
			d.observer().WebhookDelivered(time.Since(a.at))
		case OutcomeRetry:
			d.observer().WebhookRetried()
		case OutcomeFailed, OutcomeDisabled:
			d.observer().WebhookFailed()
			d.log.WarnContext(rctx, "webhook: delivery given up", "delivery_id", a.res.DeliveryID, "endpoint_id", a.res.EndpointID,
				"outcome", outcome, "attempts", a.res.Attempt, "status", a.res.StatusCode)
		}
		delete(outcomes, a.res.DeliveryID)
	}
	// What is left, a 410 gave up with its endpoint without an attempt
	// in this batch: each is a delivery given up too, logged as one line.
	if len(outcomes) > 0 {
		for range outcomes {
			d.observer().WebhookFailed()
		}
		d.log.WarnContext(rctx, "webhook: deliveries given up with their endpoint, turned off by a 410", "deliveries", len(outcomes))
	}
}

// send POSTs body, signed, and returns the status of the answer.
func (d *Deliverer) send(ctx context.Context, c Claim, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "holdfast-webhook/1")
	req.Header.Set(signature.Header, signature.Sign(time.Now(), body, c.Secrets...))
	resp, err := d.client.Do(req)
	if err != nil {
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) {
			return 0, uerr.Unwrap()
		}
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// trim cuts s to at most n bytes, never inside a character, and drops
// what PostgreSQL's text refuses, which would fail the record of the whole
// batch of attempts: invalid UTF-8 and NUL bytes, whatever the length (an
// error may quote a receiver's certificate's names, NUL and all).
func trim(s string, n int) string {
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// Publisher is the background worker that publishes the outbox: it gives
// committed events their feed positions and makes their deliveries. It
// runs on every instance; the store lets one publish at a time.
type Publisher struct {
	store DeliveryStore
	every time.Duration
	log   *slog.Logger
	// Observe hears how many events were published; nil hears nothing.
	Observe Observer
	// Published, when set, is called after a round that published
	// something (the local Deliverer's Wake).
	Published func()
	// Retention is how long events are kept (--outbox-retention); zero
	// keeps them for ever.
	Retention time.Duration
	loop      *worker.Loop
	purgedAt  time.Time // when the last purge began
	purging   bool      // its last batch came back full: more to delete
	purged    int       // deleted since it began
}

// purgeEvery is how often a publisher purges the outbox, and purgeBatch
// the most events one statement deletes: short statements, so the purge
// never holds many rows' locks for long.
const (
	purgeEvery = time.Minute
	purgeBatch = 5000
)

// publishBatch is the most events one round publishes.
const publishBatch = 2000

// NewPublisher returns a Publisher that looks for new events every every.
func NewPublisher(store DeliveryStore, every time.Duration, log *slog.Logger) *Publisher {
	p := &Publisher{store: store, every: every, log: log}
	p.loop = worker.NewLoop(p.run)
	return p
}

// Start begins publishing.
func (p *Publisher) Start(ctx context.Context) error { return p.loop.Start(ctx) }

// Stop ends publishing after the round in flight.
func (p *Publisher) Stop(ctx context.Context) error { return p.loop.Stop(ctx) }

func (p *Publisher) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		n, err := p.store.Publish(ctx, publishBatch)
		if err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "webhook: could not publish the outbox", "err", err)
		}
		if n > 0 {
			if p.Observe != nil {
				p.Observe.EventsPublished(n)
			}
			if p.Published != nil {
				p.Published()
			}
		}
		p.purge(ctx)
		next := p.every
		if n == publishBatch || p.purging {
			next = 0
		}
		timer.Reset(next)
	}
}

// purge deletes what is past the retention, once every purgeEvery: every
// instance's publisher may, and the deletes of two are harmless to each
// other (each deletes what it finds). It deletes one batch a round, and
// rounds follow at once while batches come back full: a backlog (after an
// upgrade, or a shorter retention) is cleared as fast, but publishing
// goes on between its batches instead of waiting for all of them.
func (p *Publisher) purge(ctx context.Context) {
	if p.Retention <= 0 || (!p.purging && time.Since(p.purgedAt) < purgeEvery) {
		return
	}
	if !p.purging {
		p.purgedAt, p.purged = time.Now(), 0
	}
	n, err := p.store.PurgeOutbox(ctx, p.Retention, purgeBatch)
	if err != nil {
		p.purging = false
		if ctx.Err() == nil {
			p.log.WarnContext(ctx, "webhook: could not purge the outbox", "err", err)
		}
		return
	}
	p.purged += n
	p.purging = n == purgeBatch
	if !p.purging && p.purged > 0 {
		p.log.InfoContext(ctx, "webhook: purged events past the retention", "events", p.purged, "retention", p.Retention)
	}
}
