package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// Status is a place's state as the API reports it.
type Status string

// The statuses of the contract.
const (
	StatusWaiting  Status = "waiting"
	StatusAdmitted Status = "admitted"
	StatusDone     Status = "done"
	StatusSoldOut  Status = "sold_out"
	StatusLeft     Status = "left"
	StatusExpired  Status = "expired"
)

// State is an event's queue as a whole.
type State string

// The queue states of the contract.
const (
	StatePreQueue State = "pre_queue"
	StateOpen     State = "open"
	StateSoldOut  State = "sold_out"
	StateClosed   State = "closed"
)

// Errors the queue service returns; each answers as the contract says.
var (
	ErrPlaceNotFound = problem.New(problem.NotFound, "no such place")
	// ErrNoQueue: the event exists but has no waiting room; its tickets
	// are held directly with POST /holds.
	ErrNoQueue = problem.New(problem.NotFound, "this event has no waiting room: hold its tickets with POST /holds")
	// ErrUnavailable: Redis, which holds the queue, cannot be reached.
	ErrUnavailable = problem.New(problem.Unavailable, "the waiting room is unavailable, please try again")
)

// Place is one buyer's place in an event's queue.
type Place struct {
	ID               string     `json:"id"`
	EventID          int64      `json:"event_id"`
	Status           Status     `json:"status"`
	Position         *int64     `json:"position"`
	JoinedAt         time.Time  `json:"joined_at"`
	Pass             *string    `json:"pass"`
	PassExpiresAt    *time.Time `json:"pass_expires_at"`
	PollAfterSeconds *int       `json:"poll_after_seconds"`

	// Email is the buyer's, as they joined with it.
	Email string `json:"-"`
	// AdmittedAt is when the place was admitted (zero: not yet).
	AdmittedAt time.Time `json:"-"`
}

// QueueState is the answer of GET /events/{id}/queue.
type QueueState struct {
	EventID        int64      `json:"event_id"`
	State          State      `json:"state"`
	Waiting        int64      `json:"waiting"`
	Admitted       int64      `json:"admitted"`
	AdmitPerSecond int        `json:"admit_per_second"`
	OnSaleAt       *time.Time `json:"on_sale_at"`
}

// Settings are what the queue's scripts need to know of an event.
type Settings struct {
	EventID        int64
	OnSaleAt       *time.Time
	OffSaleAt      *time.Time
	AdmitPerSecond int
	PassTTL        time.Duration
}

// Burst is the most admissions the step may make at once after a pause:
// half a second's worth, at least one.
func (s Settings) Burst() float64 { return max(1, float64(s.AdmitPerSecond)/2) }

// Admitted is a place one admission step admitted.
type Admitted struct {
	ID         string
	Email      string
	JoinedAt   time.Time
	AdmittedAt time.Time
	ExpiresAt  time.Time
}

// StepResult is what one admission step did.
type StepResult struct {
	// State is pre_queue, open or closed; "shuffle" when the pre-queue
	// must be shuffled before anyone is admitted.
	State    string
	Admitted []Admitted
	Waiting  int64
	Expired  int
	// Took is how long the step's parts took, for the admitter's report
	// of a slow step.
	Took StepTimes
}

// StepTimes is how long an admission step spent reading the stock, in the
// admission script (the shuffle's included) and signing passes.
type StepTimes struct {
	Stock, Admit, Passes time.Duration
}

// Backlog is what an event's queue holds that its admission step acts on.
type Backlog struct {
	PreQueue, Waiting int64 // places
	// Lapsing: an admitted place's pass runs out by the horizon asked.
	Lapsing bool
}

// StateShuffle is the step's answer while the pre-queue waits for its
// shuffle.
const StateShuffle = "shuffle"

// Unlimited is the admission budget of a step with no limit of its own
// beyond the stock.
const Unlimited = -1

// Stock is what an event's stock lets its queue admit, read from
// PostgreSQL once per admission step (one query, one snapshot).
type Stock struct {
	// Available is the event's tickets left, counting back those of
	// pending holds that have lapsed: the next hold takes them back.
	Available int
	// Pending is 1 while the event has a live (unlapsed) pending hold,
	// else 0: all the step needs to know (one index entry read, where a
	// count would read every pending hold of the sale each step).
	Pending int
	// ReadAt orders readings of one event's stock (the database's clock,
	// in microseconds): a step whose reading is older than one a step has
	// already applied admits nothing and leaves the sold-out flag alone,
	// since another instance may have read, and acted on, what came after.
	ReadAt int64
	// Horizon is the earliest a booking this reading could not see (not
	// committed yet) can have been made, by the same clock: the next
	// reading lists the places that booked from a little before it (the
	// store says how little), so a booking whose commit came long after it
	// was made is not missed; and a place that went keeps reserving until
	// a reading whose horizon is after it went. 0 is not known: the next
	// reading looks over its whole window, and a place that went is
	// judged by ReadAt.
	Horizon int64
	// Took are the places that made a booking with their pass lately
	// (the store says how lately; the step keeps each it sees for the
	// rest of the place's pass): their tickets left Available when they
	// held, so they reserve nothing more. Given back (released, expired),
	// those tickets are the stock's again and go to the next places in
	// line; a place that held once and gave back may hold again while its
	// pass lasts, but without a reserve.
	Took []string
	// Reserve is how many tickets an admitted place that does not hold yet
	// may still take: the per-buyer cap (see Reserve).
	Reserve float64
}

// SoldOut reports whether the stock is gone for good, unless an admin adds
// tickets: nothing left and no pending hold that could come back.
func (s Stock) SoldOut() bool { return s.Available <= 0 && s.Pending == 0 }

// Reserve chooses how many tickets an admitted place that does not hold
// yet keeps aside from the stock.
type Reserve string

// The two ways of reserving, measured in BENCHMARKS.md ("The queue and the
// stock"). ReserveCap keeps the most a buyer may take until it books, so
// no admitted place finds nothing but after one that booked took more; ReserveAverage keeps the average quantity of the
// event's recent holds, which admits more places at once and so sells out
// sooner, but a buyer who asks for more than the average may find the
// stock already taken by the places admitted with it.
const (
	ReserveCap     Reserve = "cap"
	ReserveAverage Reserve = "average"
)

// StockReader reads an event's stock for the admission step.
type StockReader interface {
	// QueueStock reads eventID's stock, whose passes last passTTL. since
	// is the Horizon of the last reading this instance applied (0 for
	// none): the places that booked need only be listed from a little
	// before it, the store says how little. recent is true when the
	// average quantity of its recent holds is wanted (ReserveAverage), and
	// then answered as avg (0 when it has none).
	QueueStock(ctx context.Context, eventID int64, passTTL time.Duration, since int64, recent bool) (st Stock, avg float64, err error)
}

// Store is what the queue needs from Redis. Every method fails with
// ErrUnavailable when Redis cannot be reached.
type Store interface {
	// Join puts a new place id for email (folded: its key of one live
	// place) in the event's queue, or answers the email's live place with
	// created false. sale.ErrSaleClosed after off_sale_at.
	Join(ctx context.Context, ev Settings, id, folded, email string) (p Place, created bool, err error)
	// Place reads a place; first is true the first time an admitted place
	// is read. ErrPlaceNotFound if there is none.
	Place(ctx context.Context, eventID int64, id string) (p Place, first bool, err error)
	// Leave turns a waiting or admitted place left.
	Leave(ctx context.Context, eventID int64, id string) (Place, error)
	// Done turns an admitted (or just expired) place done.
	Done(ctx context.Context, eventID int64, id string) error
	// SetPasses keeps each pass on its admitted place unless the place
	// has one, and answers the passes kept, in order ("" for a place not
	// admitted).
	SetPasses(ctx context.Context, eventID int64, passes []PlacePass) ([]string, error)
	// Admit runs one admission step, admitting at most budget places
	// (Unlimited: no budget) and, with a stock, no more than it can still
	// serve; with a stock it also keeps the queue's sold-out flag.
	Admit(ctx context.Context, ev Settings, budget int, stock *Stock) (StepResult, error)
	// PreQueue lists the pre-queue's places, in arrival order.
	PreQueue(ctx context.Context, eventID int64) ([]string, error)
	// Shuffle gives the pre-queue the order given, once: applied false if
	// it was applied before; an error if order is not the pre-queue.
	Shuffle(ctx context.Context, eventID int64, order []string) (applied bool, err error)
	// State reads the queue's state, length and admissions so far.
	State(ctx context.Context, ev Settings) (QueueState, error)
	// Backlogs reads each event's Backlog, passes lapsing by horizon,
	// in order.
	Backlogs(ctx context.Context, eventIDs []int64, horizon time.Time) ([]Backlog, error)
}

// ErrStaleShuffle: the pre-queue changed between its read and its shuffle.
var ErrStaleShuffle = errors.New("queue: pre-queue changed during its shuffle")

// Events is what the queue needs from the events' storage.
type Events interface {
	// Event reads one event, or sale.ErrEventNotFound.
	Event(ctx context.Context, id int64) (sale.Event, error)
	// QueuedEvents lists the events with a queue that may still admit or
	// expire places.
	QueuedEvents(ctx context.Context) ([]sale.Event, error)
}

// Signer signs a pass for an admitted place.
type Signer interface {
	Sign(c pass.Claims) (string, error)
}

// Observer hears what the queue does, for metrics.
type Observer interface {
	Joined(outcome string)
	Polled(outcome string)
	QueueAdmitted(timeInQueue time.Duration)
	AdmissionLag(d time.Duration)
	QueueWaiting(eventID int64, n int64)
}

type noObserver struct{}

func (noObserver) Joined(string)               {}
func (noObserver) Polled(string)               {}
func (noObserver) QueueAdmitted(time.Duration) {}
func (noObserver) AdmissionLag(time.Duration)  {}
func (noObserver) QueueWaiting(int64, int64)   {}

// Service is the waiting room: joins, polls, leaves and admission.
type Service struct {
	store  Store
	events Events
	cap    int
	log    *slog.Logger
	// Signer signs the passes of admitted places. Without one (nil) places
	// are admitted with no pass until one is set: their polls sign it.
	Signer Signer
	// Observe hears joins, polls and admissions; never nil.
	Observe Observer
	// Stock, when set, is read by every admission step so that the queue
	// never admits more places than the stock can serve (nil: admission
	// at the rate alone, as in tests of the queue by itself).
	Stock StockReader
	// Reserve is how much an admitted place keeps aside (ReserveCap when
	// empty).
	Reserve Reserve
	// MaxQuantity is the most tickets one hold may ask for: the reserve
	// when there is no per-buyer cap.
	MaxQuantity int

	mu    sync.Mutex
	cache map[int64]cachedEvent
	// applied is, for each event, the last stock reading a step of this
	// instance applied: the next reading lists the places that booked
	// since a little before it, not over a whole window, and the step
	// sends Redis only those it did not send then, so a step costs what
	// the holds since the last one cost, however fast they come.
	applied map[int64]appliedReading
}

// appliedReading is what Step remembers of a stock reading it applied.
type appliedReading struct {
	horizon int64
	took    map[string]bool
	at      time.Time // when the step applied it, by this instance's clock
}

type cachedEvent struct {
	ev sale.Event
	at time.Time
}

// eventCacheTTL is how long a service trusts an event's settings read from
// PostgreSQL: a change by an admin reaches every instance within it.
const eventCacheTTL = time.Second

// NewService returns the waiting room on st; ticketCap is the per-buyer cap
// each pass carries (0: none).
func NewService(st Store, events Events, signer Signer, ticketCap int, log *slog.Logger) *Service {
	return &Service{store: st, events: events, Signer: signer, cap: ticketCap, log: log,
		Observe: noObserver{}, cache: map[int64]cachedEvent{}, applied: map[int64]appliedReading{}}
}

// event reads a queued event's settings, from the cache while fresh.
func (s *Service) event(ctx context.Context, id int64) (sale.Event, error) {
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && time.Since(c.at) < eventCacheTTL {
		return c.ev, nil
	}
	ev, err := s.events.Event(ctx, id)
	if err != nil {
		return sale.Event{}, err
	}
	s.remember(ev)
	return ev, nil
}

func (s *Service) remember(ev sale.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.cache) > 10_000 {
		// Only existing events are kept, but there may be many: drop the
		// stale ones rather than grow.
		for id, c := range s.cache {
			if now.Sub(c.at) >= eventCacheTTL {
				delete(s.cache, id)
			}
		}
	}
	s.cache[ev.ID] = cachedEvent{ev: ev, at: now}
}

// settings is a queued event's Settings, or ErrNoQueue.
func settings(ev sale.Event) (Settings, error) {
	if ev.Queue == nil {
		return Settings{}, ErrNoQueue
	}
	return Settings{EventID: ev.ID, OnSaleAt: ev.OnSaleAt, OffSaleAt: ev.OffSaleAt,
		AdmitPerSecond: ev.Queue.AdmitPerSecond, PassTTL: ev.Queue.PassTTL.Duration()}, nil
}

func (s *Service) settings(ctx context.Context, eventID int64) (Settings, error) {
	ev, err := s.event(ctx, eventID)
	if err != nil {
		return Settings{}, err
	}
	return settings(ev)
}

// Join gives email a place in the event's queue: a new one (created true),
// or the live place it already has.
func (s *Service) Join(ctx context.Context, eventID int64, email string) (Place, bool, error) {
	p, created, err := s.join(ctx, eventID, email)
	outcome := "existing"
	if created {
		outcome = "new"
	}
	if err != nil {
		outcome = errorCode(err)
	}
	s.Observe.Joined(outcome)
	return p, created, err
}

func (s *Service) join(ctx context.Context, eventID int64, email string) (Place, bool, error) {
	// The hold rules' form: the pass names the address as a hold stores
	// it, and a place is one per buyer as the per-buyer cap counts them.
	email, err := sale.NormalizeEmail(email)
	if err != nil {
		return Place{}, false, err
	}
	st, err := s.settings(ctx, eventID)
	if err != nil {
		return Place{}, false, err
	}
	id, err := NewPlaceID(eventID)
	if err != nil {
		return Place{}, false, err
	}
	p, created, err := s.store.Join(ctx, st, id, sale.BuyerKey(email), email)
	if err != nil {
		return Place{}, false, err
	}
	return s.finish(ctx, st, p), created, nil
}

// Get reads a place, as its buyer polls it.
func (s *Service) Get(ctx context.Context, id string) (Place, error) {
	p, err := s.get(ctx, id)
	outcome := string(p.Status)
	if err != nil {
		outcome = errorCode(err)
	}
	s.Observe.Polled(outcome)
	return p, err
}

func (s *Service) get(ctx context.Context, id string) (Place, error) {
	eventID, err := ParsePlaceID(id)
	if err != nil {
		return Place{}, err
	}
	p, first, err := s.store.Place(ctx, eventID, id)
	if err != nil {
		return Place{}, err
	}
	st, err := s.settings(ctx, eventID)
	if err != nil {
		// The event lost its queue (or was never read): the place is still
		// the buyer's to read, with the default pace.
		st = Settings{EventID: eventID, AdmitPerSecond: sale.DefaultAdmitPerSecond}
	}
	if first && !p.AdmittedAt.IsZero() {
		s.Observe.AdmissionLag(time.Since(p.AdmittedAt))
	}
	if p.Status == StatusAdmitted && p.Pass == nil {
		// Admitted by a step whose instance had not stored the pass yet
		// (or died before it did): any instance signs the same claims.
		if kept, err := s.signPasses(ctx, eventID, []passFor{{p.ID, p.Email, *p.PassExpiresAt}}); err == nil && kept[0] != "" {
			p.Pass = &kept[0]
		} else if err != nil && !errors.Is(err, errNoSigner) {
			s.log.WarnContext(ctx, "queue: sign pass on poll", "place", p.ID, "err", err)
		}
	}
	return s.finish(ctx, st, p), nil
}

// Leave gives up a place's turn.
func (s *Service) Leave(ctx context.Context, id string) (Place, error) {
	eventID, err := ParsePlaceID(id)
	if err != nil {
		return Place{}, err
	}
	p, err := s.store.Leave(ctx, eventID, id)
	if err != nil {
		return Place{}, err
	}
	st, _ := s.settings(ctx, eventID)
	return s.finish(ctx, st, p), nil
}

// Done marks a place done: its buyer confirmed a hold made with its pass.
// The confirm path calls it after the confirm commits, best effort: the
// booking's queue_place column is the record that counts.
func (s *Service) Done(ctx context.Context, placeID string) error {
	eventID, err := ParsePlaceID(placeID)
	if err != nil {
		return err
	}
	return s.store.Done(ctx, eventID, placeID)
}

// State reads the event's queue as a whole.
func (s *Service) State(ctx context.Context, eventID int64) (QueueState, error) {
	st, err := s.settings(ctx, eventID)
	if err != nil {
		return QueueState{}, err
	}
	return s.store.State(ctx, st)
}

// finish fills what the place's answer derives from the event's settings.
func (s *Service) finish(_ context.Context, st Settings, p Place) Place {
	if p.Pass != nil && *p.Pass == "" {
		p.Pass = nil
	}
	if p.Status != StatusAdmitted {
		p.Pass, p.PassExpiresAt = nil, nil
	}
	p.PollAfterSeconds = pollAfter(st, p, time.Now())
	return p
}

// pollAfter is how long a buyer should wait before polling again: half the
// expected wait for its turn, from 1 to 30 seconds; null once there is
// nothing to wait for.
func pollAfter(st Settings, p Place, now time.Time) *int {
	var secs float64
	switch {
	case p.Status == StatusAdmitted && p.PassExpiresAt != nil:
		secs = p.PassExpiresAt.Sub(now).Seconds() / 2
	case p.Status != StatusWaiting:
		return nil
	case p.Position == nil && st.OnSaleAt != nil:
		secs = st.OnSaleAt.Sub(now).Seconds() / 2
	case p.Position == nil:
		secs = 1
	default:
		secs = float64(*p.Position) / float64(max(1, st.AdmitPerSecond)) / 2
	}
	n := int(math.Min(30, math.Max(1, math.Ceil(secs))))
	return &n
}

// PlacePass is a signed pass for an admitted place, to keep on it.
type PlacePass struct {
	ID, Pass string
}

// passFor names an admitted place whose pass is to be signed.
type passFor struct {
	id, email string
	expires   time.Time
}

// signPasses signs the passes of admitted places and keeps them on the
// places, in one call to the store (the first kept wins, so every poll
// reads one token). It answers the passes kept, in order.
func (s *Service) signPasses(ctx context.Context, eventID int64, places []passFor) ([]string, error) {
	if s.Signer == nil {
		return nil, errNoSigner
	}
	passes := make([]PlacePass, len(places))
	for i, p := range places {
		tok, err := s.Signer.Sign(pass.Claims{EventID: eventID, PlaceID: p.id, Email: p.email, Cap: s.cap, ExpiresAt: p.expires})
		if err != nil {
			return nil, fmt.Errorf("queue: sign pass: %w", err)
		}
		passes[i] = PlacePass{ID: p.id, Pass: tok}
	}
	return s.store.SetPasses(ctx, eventID, passes)
}

// errNoSigner: the service has no Signer yet.
var errNoSigner = errors.New("queue: no pass signer")

// dueLead is how far ahead due looks for a pass that runs out or an
// on-sale: the step goes by Redis's clock, and this instance's may be
// behind it by that much.
const dueLead = time.Second

// idleEvery is about how often an idle queue is stepped all the same,
// where steps read the stock: its step keeps the sold-out flag that the
// queue's state (GET /events/{id}/queue) and a new place's first answer
// read.
const idleEvery = time.Second

// due picks the events of evs whose admission step has work now: places
// waiting, a pass that runs out, or a pre-queue whose on-sale has come;
// then, where steps read the stock, at most refreshes idle queues, those
// stepped longest ago, and none stepped in the last idleEvery. Every other
// step would read its stock from PostgreSQL and run its script in Redis
// to admit nothing, every tick, on every instance: with hundreds of
// queued events between their sales, most of what the admitters did
// (BENCHMARKS.md). The step stays the judge of what to do; this only
// passes over queues it would find empty. The queues with work come
// first, so a run's idle steps never hold theirs back, and the cap
// spreads the idle steps over the runs instead of all of them falling due
// in the same one every second. An idle queue's waiting gauge is set
// here, since no step may set it (its last step may have seen a place
// that left since). due answers evs whole when the backlogs cannot be
// read: their steps then fail and are reported.
func (s *Service) due(ctx context.Context, evs []sale.Event, refreshes int) []sale.Event {
	if len(evs) == 0 {
		return evs
	}
	ids := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	now := time.Now()
	backlogs, err := s.store.Backlogs(ctx, ids, now.Add(dueLead))
	if err != nil {
		return evs
	}
	type idle struct {
		ev   sale.Event
		last time.Time
	}
	var due []sale.Event
	var stale []idle
	for i, ev := range evs {
		b := backlogs[i]
		onSale := ev.OnSaleAt == nil || !ev.OnSaleAt.After(now.Add(dueLead))
		if b.Waiting > 0 || b.Lapsing || (b.PreQueue > 0 && onSale) {
			due = append(due, ev)
			continue
		}
		s.Observe.QueueWaiting(ev.ID, b.PreQueue+b.Waiting)
		if s.Stock == nil {
			continue
		}
		s.mu.Lock()
		last := s.applied[ev.ID].at
		s.mu.Unlock()
		if now.Sub(last) >= idleEvery {
			stale = append(stale, idle{ev, last})
		}
	}
	slices.SortStableFunc(stale, func(a, b idle) int { return a.last.Compare(b.last) })
	for _, q := range stale[:min(len(stale), refreshes)] {
		due = append(due, q.ev)
	}
	return due
}

// Step runs one admission step for ev, admitting at most budget places
// (Unlimited for no limit), shuffling the pre-queue first when its time
// has come, and signs the admitted places' passes.
func (s *Service) Step(ctx context.Context, ev sale.Event, budget int) (StepResult, error) {
	st, err := settings(ev)
	if err != nil {
		return StepResult{}, err
	}
	var took StepTimes
	t0 := time.Now()
	var stock *Stock
	if s.Stock != nil {
		// Read before the script runs: what changes in between (holds
		// made, places admitted by another instance) makes the budget the
		// script works out smaller than the truth, never larger, but for
		// a place that booked and went in between, which the script keeps
		// reserving (the queue's gone set, doc.go). A hold given back in
		// between is missed until the next step.
		stk, err := s.readStock(ctx, st)
		if err != nil {
			return StepResult{}, err
		}
		stock = &stk
	}
	var reading appliedReading
	if stock != nil {
		// The reading overlaps the last one applied: the places listed in
		// both are in the took set already.
		s.mu.Lock()
		last := s.applied[ev.ID]
		s.mu.Unlock()
		reading = appliedReading{horizon: stock.Horizon, took: make(map[string]bool, len(stock.Took)), at: t0}
		fresh := stock.Took[:0:0]
		for _, id := range stock.Took {
			reading.took[id] = true
			if !last.took[id] {
				fresh = append(fresh, id)
			}
		}
		stock.Took = fresh
	}
	t1 := time.Now()
	took.Stock = t1.Sub(t0)
	res, err := s.store.Admit(ctx, st, budget, stock)
	if err == nil && res.State == StateShuffle {
		if err := s.shuffle(ctx, ev.ID); err != nil {
			return res, err
		}
		res, err = s.store.Admit(ctx, st, budget, stock)
	}
	t2 := time.Now()
	took.Admit = t2.Sub(t1)
	if err != nil {
		res.Took = took
		return res, err
	}
	if stock != nil {
		// The script kept this reading's places that booked: the next
		// reading need not list them again.
		s.mu.Lock()
		s.applied[ev.ID] = reading
		s.mu.Unlock()
	}
	s.Observe.QueueWaiting(ev.ID, res.Waiting)
	places := make([]passFor, len(res.Admitted))
	for i, a := range res.Admitted {
		s.Observe.QueueAdmitted(a.AdmittedAt.Sub(a.JoinedAt))
		places[i] = passFor{a.ID, a.Email, a.ExpiresAt}
	}
	if len(places) > 0 {
		if _, err := s.signPasses(ctx, ev.ID, places); err != nil && !errors.Is(err, errNoSigner) {
			// Each place's next poll signs its pass.
			s.log.WarnContext(ctx, "queue: passes not stored", "event", ev.ID, "places", len(places), "err", err)
		}
	}
	took.Passes = time.Since(t2)
	res.Took = took
	return res, nil
}

// readStock reads ev's stock and sets what each admitted place reserves.
func (s *Service) readStock(ctx context.Context, ev Settings) (Stock, error) {
	avgWanted := s.Reserve == ReserveAverage
	s.mu.Lock()
	since := s.applied[ev.EventID].horizon
	s.mu.Unlock()
	st, avg, err := s.Stock.QueueStock(ctx, ev.EventID, ev.PassTTL, since, avgWanted)
	if err != nil {
		return Stock{}, fmt.Errorf("queue: read the stock of event %d: %w", ev.EventID, err)
	}
	st.Reserve = float64(s.reserveCap())
	if avgWanted && avg >= 1 {
		st.Reserve = min(avg, st.Reserve)
	}
	return st, nil
}

// reserveCap is the most one admitted place can take: the per-buyer cap,
// or without one the most one hold may ask for (a pass makes one booking),
// at least one.
func (s *Service) reserveCap() int {
	c := s.cap
	if c <= 0 || (s.MaxQuantity > 0 && s.MaxQuantity < c) {
		c = s.MaxQuantity
	}
	return max(1, c)
}

// shuffle puts the pre-queue in a uniformly random order (Fisher-Yates
// with crypto/rand), applied once by the store however many instances try.
func (s *Service) shuffle(ctx context.Context, eventID int64) error {
	for attempt := 0; attempt < 3; attempt++ {
		ids, err := s.store.PreQueue(ctx, eventID)
		if err != nil {
			return err
		}
		if err := Permute(ids); err != nil {
			return err
		}
		applied, err := s.store.Shuffle(ctx, eventID, ids)
		if errors.Is(err, ErrStaleShuffle) {
			continue
		}
		if err != nil {
			return err
		}
		if applied {
			s.log.InfoContext(ctx, "queue: pre-queue shuffled", "event", eventID, "places", len(ids))
		}
		return nil
	}
	return ErrStaleShuffle
}

// Permute shuffles ids in place, every order equally likely, with
// crypto/rand: nobody can predict or steer the pre-queue's order.
func Permute(ids []string) error {
	for i := len(ids) - 1; i > 0; i-- {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return fmt.Errorf("queue: shuffle: %w", err)
		}
		k := int(j.Int64())
		ids[i], ids[k] = ids[k], ids[i]
	}
	return nil
}

// placeSecretLen is the random part of a place id, in bytes: 128 bits, so
// an id cannot be guessed.
const placeSecretLen = 16

// NewPlaceID makes a place id: the event id, so any instance finds the
// queue's hash tag from the id alone, and 128 random bits.
func NewPlaceID(eventID int64) (string, error) {
	var b [placeSecretLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("queue: place id: %w", err)
	}
	return strconv.FormatInt(eventID, 10) + "-" + hex.EncodeToString(b[:]), nil
}

// ErrBadPlaceID answers a place id of the wrong form.
var ErrBadPlaceID = problem.Invalidf("place id must be as POST /events/{id}/queue gave it, such as 42-0123456789abcdef0123456789abcdef")

// ParsePlaceID checks a place id's form and returns its event id.
func ParsePlaceID(id string) (int64, error) {
	ev, secret, ok := strings.Cut(id, "-")
	if !ok || len(secret) != 2*placeSecretLen || strings.Trim(secret, "0123456789abcdef") != "" ||
		ev == "" || len(ev) > 10 || ev[0] == '0' || strings.Trim(ev, "0123456789") != "" {
		return 0, ErrBadPlaceID
	}
	n, err := strconv.ParseInt(ev, 10, 64)
	if err != nil || n > math.MaxInt32 {
		return 0, ErrBadPlaceID
	}
	return n, nil
}

// errorCode is err's contract code, for the outcome counters.
func errorCode(err error) string {
	return httpapi.Code(err)
}
