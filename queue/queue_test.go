package queue_test

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/httpapi"
	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// edSigner signs a pass as base64(claims JSON) "." base64(Ed25519
// signature): a real signature the test can check, without the JWT
// package internal/pass builds on.
type edSigner struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newSigner(t testing.TB) *edSigner {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &edSigner{priv: priv, pub: pub}
}

func (s *edSigner) Sign(c pass.Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(body) + "." + enc.EncodeToString(ed25519.Sign(s.priv, body)), nil
}

func (s *edSigner) verify(tok string) (pass.Claims, error) {
	enc := base64.RawURLEncoding
	b, sig, _ := strings.Cut(tok, ".")
	body, err1 := enc.DecodeString(b)
	rawSig, err2 := enc.DecodeString(sig)
	if err := errors.Join(err1, err2); err != nil {
		return pass.Claims{}, err
	}
	if !ed25519.Verify(s.pub, body, rawSig) {
		return pass.Claims{}, errors.New("bad signature")
	}
	var c pass.Claims
	return c, json.Unmarshal(body, &c)
}

// events is a fixed set of events, standing in for PostgreSQL.
type events struct {
	mu sync.Mutex
	m  map[int64]sale.Event
}

func (e *events) Event(_ context.Context, id int64) (sale.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev, ok := e.m[id]
	if !ok {
		return sale.Event{}, sale.ErrEventNotFound
	}
	return ev, nil
}

func (e *events) QueuedEvents(context.Context) ([]sale.Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sale.Event
	for _, ev := range e.m {
		if ev.Queue != nil {
			out = append(out, ev)
		}
	}
	// In id order, as PostgreSQL lists them.
	slices.SortFunc(out, func(a, b sale.Event) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// world is one test's queue: a Redis prefix of its own, events, a signer,
// and as many instances (Services) as asked for.
type world struct {
	t      *testing.T
	rdb    redis.UniversalClient
	prefix string
	events *events
	signer *edSigner
}

func newWorld(t *testing.T) *world {
	t.Helper()
	rdb, prefix := testRedis(t)
	return &world{t: t, rdb: rdb, prefix: prefix, events: &events{m: map[int64]sale.Event{}}, signer: newSigner(t)}
}

// testRedis is a client of the test's Redis and the test's own key prefix,
// closed when t ends.
func testRedis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb, prefix
}

var nextEvent struct {
	sync.Mutex
	n int64
}

// event adds a queued event admitting rate a second, on sale at onSale
// (nil: now), and returns it.
func (w *world) event(rate int, onSale *time.Time, ttl sale.Seconds) sale.Event {
	nextEvent.Lock()
	nextEvent.n++
	id := nextEvent.n
	nextEvent.Unlock()
	ev := sale.Event{ID: id, Name: "e", OnSaleAt: onSale, Queue: &sale.QueueSettings{AdmitPerSecond: rate, PassTTL: ttl}}
	w.events.mu.Lock()
	w.events.m[id] = ev
	w.events.mu.Unlock()
	return ev
}

// instance is one more holdfast instance's queue service.
func (w *world) instance() *queue.Service {
	return queue.NewService(store.NewQueues(w.rdb, w.prefix), w.events, w.signer, 4, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (w *world) queues() *store.Queues { return store.NewQueues(w.rdb, w.prefix) }

func email(i int) string { return fmt.Sprintf("buyer%d@example.com", i) }

func join(t *testing.T, svc *queue.Service, ev int64, i int) queue.Place {
	t.Helper()
	p, created, err := svc.Join(context.Background(), ev, email(i))
	if err != nil || !created {
		t.Fatalf("join %d: created %v, err %v", i, created, err)
	}
	return p
}

func get(t *testing.T, svc *queue.Service, id string) queue.Place {
	t.Helper()
	p, err := svc.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return p
}

func pos(p queue.Place) int64 {
	if p.Position == nil {
		return -1
	}
	return *p.Position
}

func TestArrivalOrderIsGlobalAcrossInstances(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.instance(), w.instance()
	ev := w.event(10, nil, 600)
	var ids []string
	for i := 0; i < 20; i++ {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		p := join(t, svc, ev.ID, i)
		if pos(p) != int64(i+1) || p.Status != queue.StatusWaiting {
			t.Fatalf("join %d: status %s position %d, want waiting %d", i, p.Status, pos(p), i+1)
		}
		ids = append(ids, p.ID)
	}
	for i, id := range ids {
		svc := []*queue.Service{a, b}[i%2]
		if p := get(t, svc, id); pos(p) != int64(i+1) || p.EventID != ev.ID {
			t.Fatalf("poll %d: position %d event %d, want %d of %d", i, pos(p), p.EventID, i+1, ev.ID)
		}
	}
}

func TestThePreQueueIsShuffledOnceAtOnSale(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.instance(), w.instance()
	onSale := time.Now().Add(1500 * time.Millisecond)
	ev := w.event(1, &onSale, 600) // slow: nobody is admitted during the test's reads
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		p := join(t, []*queue.Service{a, b}[i%2], ev.ID, i)
		if p.Position != nil || p.Status != queue.StatusWaiting {
			t.Fatalf("pre-queue join %d: position %v status %s, want null and waiting", i, pos(p), p.Status)
		}
		if p.PollAfterSeconds == nil || *p.PollAfterSeconds < 1 {
			t.Fatalf("poll_after_seconds %v", p.PollAfterSeconds)
		}
		ids[i] = p.ID
	}
	// Before on_sale_at a step admits nobody and shuffles nothing.
	if res, err := a.Step(context.Background(), ev, queue.Unlimited); err != nil || res.State != "pre_queue" || len(res.Admitted) != 0 {
		t.Fatalf("step before on sale: %+v %v", res, err)
	}
	time.Sleep(time.Until(onSale) + 50*time.Millisecond)
	// A join at on_sale_at but before the shuffle goes behind the whole
	// pre-queue, and its position does not grow when the shuffle lands.
	late := join(t, a, ev.ID, n)
	if pos(late) != n+1 {
		t.Fatalf("late join position %d, want %d", pos(late), n+1)
	}
	// Both instances step at once: one shuffle lands.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = []*queue.Service{a, b}[i%2].Step(context.Background(), ev, 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	inOrder := true
	for i, id := range ids {
		p := get(t, b, id)
		k := pos(p)
		if k < 1 || k > n || seen[k] {
			t.Fatalf("place %d: position %d, want a distinct one of 1..%d", i, k, n)
		}
		seen[k] = true
		inOrder = inOrder && k == int64(i+1)
	}
	if inOrder {
		t.Fatalf("the pre-queue kept its arrival order (chance 1 in %d!)", n)
	}
	if p := get(t, a, late.ID); pos(p) != n+1 {
		t.Fatalf("late join position after the shuffle %d, want %d", pos(p), n+1)
	}
	// A second shuffle is refused.
	q := w.queues()
	if applied, err := q.Shuffle(context.Background(), ev.ID, nil); applied || err != nil {
		t.Fatalf("second shuffle: applied %v err %v, want refused", applied, err)
	}
	if p := join(t, a, ev.ID, n+1); pos(p) != n+2 {
		t.Fatalf("join after the shuffle position %d, want %d", pos(p), n+2)
	}
}

func TestTheShuffleIsUniform(t *testing.T) {
	t.Parallel()
	// Which of 3 ids comes first, over many permutations: each about 1/3.
	counts := map[string]int{}
	const runs = 3000
	for i := 0; i < runs; i++ {
		ids := []string{"a", "b", "c"}
		if err := queue.Permute(ids); err != nil {
			t.Fatal(err)
		}
		counts[ids[0]]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if c := counts[id]; c < runs/3-150 || c > runs/3+150 {
			t.Fatalf("%s first %d times of %d, want about %d", id, c, runs, runs/3)
		}
	}
}

func TestOneLivePlacePerEmail(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.instance(), w.instance()
	ev := w.event(10, nil, 600)
	var wg sync.WaitGroup
	type answer struct {
		p       queue.Place
		created bool
		err     error
	}
	answers := make([]answer, 32)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := "Same@Example.com"
			if i%2 == 1 {
				addr = "same@example.com"
			}
			p, created, err := []*queue.Service{a, b}[i%2].Join(context.Background(), ev.ID, addr)
			answers[i] = answer{p, created, err}
		}()
	}
	wg.Wait()
	created, id := 0, ""
	for _, an := range answers {
		if an.err != nil {
			t.Fatal(an.err)
		}
		if an.created {
			created++
		}
		if id == "" {
			id = an.p.ID
		}
		if an.p.ID != id || pos(an.p) != 1 {
			t.Fatalf("answers name places %s and %s (position %d), want one", id, an.p.ID, pos(an.p))
		}
	}
	if created != 1 {
		t.Fatalf("%d joins created a place, want 1", created)
	}
	// Left, the email may join again, with a new place.
	if p, err := a.Leave(context.Background(), id); err != nil || p.Status != queue.StatusLeft || p.PollAfterSeconds != nil {
		t.Fatalf("leave: %+v %v", p, err)
	}
	p, isNew, err := b.Join(context.Background(), ev.ID, "same@example.com")
	if err != nil || !isNew || p.ID == id || pos(p) != 1 {
		t.Fatalf("join after leaving: %+v new %v err %v", p, isNew, err)
	}
}

func TestBadInputIsRefusedWithoutAPlace(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	svc := w.instance()
	ev := w.event(10, nil, 600)
	plain := sale.Event{ID: ev.ID + 100000}
	w.events.mu.Lock()
	w.events.m[plain.ID] = plain
	w.events.mu.Unlock()
	closed := time.Now().Add(-time.Minute)
	shut := w.event(10, nil, 600)
	shut.OffSaleAt = &closed
	w.events.mu.Lock()
	w.events.m[shut.ID] = shut
	w.events.mu.Unlock()
	cases := []struct {
		name  string
		event int64
		email string
		code  string
	}{
		{"no such event", 999_999_999, "a@example.com", "not_found"},
		{"no queue", plain.ID, "a@example.com", "not_found"},
		{"not an email", ev.ID, "not an email", "invalid_request"},
		{"display name", ev.ID, "A <a@example.com>", "invalid_request"},
		{"empty", ev.ID, "", "invalid_request"},
		{"too long", ev.ID, strings.Repeat("a", 250) + "@example.com", "invalid_request"},
		{"closed", shut.ID, "a@example.com", "sale_closed"},
	}
	for _, c := range cases {
		_, _, err := svc.Join(context.Background(), c.event, c.email)
		var e *problem.Error
		if !errors.As(err, &e) || httpapi.Code(err) != c.code {
			t.Errorf("%s: got %v, want %s", c.name, err, c.code)
		}
	}
	st, err := svc.State(context.Background(), ev.ID)
	if err != nil || st.Waiting != 0 {
		t.Fatalf("state after refused joins: %+v %v, want nobody waiting", st, err)
	}
	for _, id := range []string{"", "x", "1-abc", "0-0123456789abcdef0123456789abcdef", "1-0123456789ABCDEF0123456789ABCDEF",
		"99999999999-0123456789abcdef0123456789abcdef", "1-0123456789abcdef0123456789abcdef0"} {
		if _, err := svc.Get(context.Background(), id); !errors.Is(err, queue.ErrBadPlaceID) {
			t.Errorf("get %q: %v, want %v", id, err, queue.ErrBadPlaceID)
		}
	}
	unknown, _ := queue.NewPlaceID(ev.ID)
	if _, err := svc.Get(context.Background(), unknown); !errors.Is(err, queue.ErrPlaceNotFound) {
		t.Errorf("get unknown: %v, want %v", err, queue.ErrPlaceNotFound)
	}
	if _, err := svc.Leave(context.Background(), unknown); !errors.Is(err, queue.ErrPlaceNotFound) {
		t.Errorf("leave unknown: %v, want %v", err, queue.ErrPlaceNotFound)
	}
}

// TestOneLivePlacePerSpellingOfAnEmail joins one address spelt three ways
// (decomposed, composed, in capitals): one place, whose pass names the
// address as the hold rules store it (NFC), so a hold that sends any of
// the spellings carries the pass's email after those rules.
func TestOneLivePlacePerSpellingOfAnEmail(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	svc := w.instance()
	ev := w.event(1000, nil, 600)
	const nfd, nfc, upper = "e\u0301te\u0301@example.com", "\u00e9t\u00e9@example.com", "\u00c9T\u00c9@EXAMPLE.COM"
	first, created, err := svc.Join(context.Background(), ev.ID, nfd)
	if err != nil || !created {
		t.Fatalf("join %q: created %v, err %v", nfd, created, err)
	}
	for _, addr := range []string{nfc, upper} {
		if p, created, err := svc.Join(context.Background(), ev.ID, addr); err != nil || created || p.ID != first.ID {
			t.Fatalf("join %q: place %s created %v err %v; want the first place, %s", addr, p.ID, created, err, first.ID)
		}
	}
	// Case folding, not lower case: \u00df and SS are one address.
	sharp, created, err := svc.Join(context.Background(), ev.ID, "stra\u00dfe@example.com")
	if err != nil || !created {
		t.Fatalf("join stra\u00dfe: created %v err %v", created, err)
	}
	if p, created, err := svc.Join(context.Background(), ev.ID, "STRASSE@example.com"); err != nil || created || p.ID != sharp.ID {
		t.Fatalf("join STRASSE: place %s created %v err %v; want stra\u00dfe's, %s", p.ID, created, err, sharp.ID)
	}
	time.Sleep(20 * time.Millisecond) // credit
	if _, err := svc.Step(context.Background(), ev, queue.Unlimited); err != nil {
		t.Fatal(err)
	}
	got := get(t, svc, first.ID)
	if got.Pass == nil {
		t.Fatalf("not admitted: %+v", got)
	}
	c, err := w.signer.verify(*got.Pass)
	if err != nil {
		t.Fatal(err)
	}
	if c.Email != nfc {
		t.Fatalf("the pass names %q, want the NFC form %q", c.Email, nfc)
	}
}

func TestAnAdmittedPlaceHasAPassThatNamesIt(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	a, b := w.instance(), w.instance()
	ev := w.event(1000, nil, 600)
	p := join(t, a, ev.ID, 1)
	time.Sleep(20 * time.Millisecond) // credit for one
	if _, err := a.Step(context.Background(), ev, queue.Unlimited); err != nil {
		t.Fatal(err)
	}
	got := get(t, b, p.ID)
	if got.Status != queue.StatusAdmitted || got.Pass == nil || got.PassExpiresAt == nil || got.Position != nil {
		t.Fatalf("after a step: %+v, want admitted with a pass", got)
	}
	c, err := w.signer.verify(*got.Pass)
	if err != nil {
		t.Fatal(err)
	}
	// A JWT's exp is whole seconds: the place's expiry must be the same
	// instant, not up to a second after its pass stops working.
	if !got.PassExpiresAt.Equal(got.PassExpiresAt.Truncate(time.Second)) {
		t.Fatalf("pass_expires_at %s is not a whole second, as the pass's exp is", got.PassExpiresAt.Format(time.RFC3339Nano))
	}
	if c.EventID != ev.ID || c.PlaceID != p.ID || c.Email != email(1) || c.Cap != 4 || !c.ExpiresAt.Equal(*got.PassExpiresAt) {
		t.Fatalf("claims %+v, want event %d place %s email %s cap 4 expiry %s", c, ev.ID, p.ID, email(1), got.PassExpiresAt)
	}
	if d := time.Until(c.ExpiresAt); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("pass expires in %s, want 10m", d)
	}
	// Joining again answers the admitted place, pass and all.
	again, created, err := b.Join(context.Background(), ev.ID, email(1))
	if err != nil || created || again.ID != p.ID || again.Pass == nil || *again.Pass != *got.Pass {
		t.Fatalf("join again: %+v created %v err %v", again, created, err)
	}
	// A confirmed hold makes it done.
	if err := b.Done(context.Background(), p.ID); err != nil {
		t.Fatal(err)
	}
	if got := get(t, a, p.ID); got.Status != queue.StatusDone || got.Pass != nil {
		t.Fatalf("after done: %+v", got)
	}
}

func TestAPassLostByItsInstanceIsSignedByTheNextPoll(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	svc := w.instance()
	ev := w.event(1000, nil, 600)
	p := join(t, svc, ev.ID, 1)
	time.Sleep(20 * time.Millisecond) // credit for one
	// The step of an instance that died before it signed.
	st := queue.Settings{EventID: ev.ID, AdmitPerSecond: 1000, PassTTL: time.Minute}
	res, err := w.queues().Admit(context.Background(), st, queue.Unlimited, nil)
	if err != nil || len(res.Admitted) != 1 {
		t.Fatalf("admit: %+v %v", res, err)
	}
	got := get(t, svc, p.ID)
	if got.Status != queue.StatusAdmitted || got.Pass == nil {
		t.Fatalf("poll: %+v, want admitted with a pass", got)
	}
	if again := get(t, svc, p.ID); *again.Pass != *got.Pass {
		t.Fatal("two polls read two passes")
	}
}

// roundTrips counts a client's round trips to Redis: a command, or a
// pipeline of them.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// A step's round trips to Redis do not grow with the places it admits:
// it kept each pass with a call of its own, and on a busy machine a step
// of 40 places took most of a second, past the burst, so an instance
// stepping alone admitted at half the rate.
func TestAStepsRoundTripsDoNotGrowWithItsAdmissions(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	trips := &roundTrips{}
	w.rdb.AddHook(trips)
	svc := w.instance()
	ev := w.event(1000, nil, 600)
	var ids []string
	for i := 0; i < 12; i++ {
		ids = append(ids, join(t, svc, ev.ID, i).ID)
	}
	stepOf := func(budget int) int64 {
		t.Helper()
		time.Sleep(30 * time.Millisecond) // credit for every budget here
		before := trips.n.Load()
		res, err := svc.Step(context.Background(), ev, budget)
		if err != nil || len(res.Admitted) != budget {
			t.Fatalf("step of %d: %+v %v", budget, res, err)
		}
		return trips.n.Load() - before
	}
	stepOf(1) // loads the scripts
	one, ten := stepOf(1), stepOf(10)
	if ten != one {
		t.Fatalf("a step admitting 10 places made %d round trips to Redis, one admitting 1 made %d: want the same", ten, one)
	}
	// Each pass is kept by the step itself (read from Redis, not by a
	// poll, which would sign a missing one).
	for i, id := range ids {
		tok, err := w.rdb.HGet(context.Background(), w.queues().QueueBase(ev.ID)+"p:"+id, "pass").Result()
		if err != nil {
			t.Fatalf("place %d's pass: %v", i, err)
		}
		if c, err := w.signer.verify(tok); err != nil || c.PlaceID != id {
			t.Fatalf("place %d's pass: claims %+v, err %v", i, c, err)
		}
	}
}

func TestLeftAndExpiredPlacesDoNotStallAdmission(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	svc := w.instance()
	ev := w.event(1000, nil, 1)
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, join(t, svc, ev.ID, i).ID)
	}
	for _, id := range ids[:3] {
		if _, err := svc.Leave(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if p := get(t, svc, ids[3]); pos(p) != 1 {
		t.Fatalf("first place after three left: position %d, want 1", pos(p))
	}
	time.Sleep(20 * time.Millisecond) // credit for more than 2
	res, err := svc.Step(context.Background(), ev, 2)
	if err != nil || len(res.Admitted) != 2 || res.Admitted[0].ID != ids[3] || res.Admitted[1].ID != ids[4] {
		t.Fatalf("step with budget 2: %+v %v, want %s and %s", res, err, ids[3], ids[4])
	}
	if p := get(t, svc, ids[5]); pos(p) != 1 {
		t.Fatalf("next place: position %d, want 1", pos(p))
	}
	time.Sleep(1100 * time.Millisecond)
	if p := get(t, svc, ids[3]); p.Status != queue.StatusExpired || p.Pass != nil {
		t.Fatalf("after its pass ran out: %+v, want expired", p)
	}
	res, err = svc.Step(context.Background(), ev, queue.Unlimited)
	if err != nil || len(res.Admitted) != 5 || res.Admitted[0].ID != ids[5] || res.Expired != 1 {
		t.Fatalf("step after expiry: %d admitted (%+v), %v; want the 5 waiting, one more expired", len(res.Admitted), res, err)
	}
	// An expired place's email may join again.
	if _, created, err := svc.Join(context.Background(), ev.ID, email(3)); err != nil || !created {
		t.Fatalf("rejoin after expiry: created %v err %v", created, err)
	}
}

func TestNoPlaceIsAdmittedTwice(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ev := w.event(100000, nil, 600)
	svcs := []*queue.Service{w.instance(), w.instance()}
	const n = 1500
	var wg sync.WaitGroup
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 10 {
				if _, _, err := svcs[i%2].Join(context.Background(), ev.ID, email(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var mu sync.Mutex
	admitted := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				res, err := svcs[g%2].Step(context.Background(), ev, 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, a := range res.Admitted {
					admitted[a.ID]++
				}
				total := len(admitted)
				mu.Unlock()
				if total >= n || (res.Waiting == 0 && len(res.Admitted) == 0) {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(admitted) != n {
		t.Fatalf("%d places admitted, want %d", len(admitted), n)
	}
	for id, c := range admitted {
		if c != 1 {
			t.Fatalf("place %s admitted %d times", id, c)
		}
	}
}

func TestAdmissionKeepsItsRateAcrossInstances(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const rate = 40
	ev := w.event(rate, nil, 600)
	a, b := w.instance(), w.instance()
	for i := 0; i < 400; i++ {
		join(t, []*queue.Service{a, b}[i%2], ev.ID, i)
	}
	// Two instances, each stepping far more often than the admitter does.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var count int
	start := time.Now()
	for _, svc := range []*queue.Service{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				res, err := svc.Step(ctx, ev, queue.Unlimited)
				if err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
				mu.Lock()
				count += len(res.Admitted)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	burst := float64(rate) / 2
	if hi := rate*elapsed + burst; float64(count) > hi {
		t.Fatalf("%d admitted in %.2fs at %d/s, want at most %.0f", count, elapsed, rate, hi)
	}
	// The first step starts the clock; allow a scheduler's worth of slack.
	if lo := rate * (elapsed - 0.5); float64(count) < lo {
		t.Fatalf("%d admitted in %.2fs at %d/s, want at least %.0f", count, elapsed, rate, lo)
	}
}

func TestPositionsNeverGrow(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	onSale := time.Now().Add(700 * time.Millisecond)
	// Admitted at 50 a second, a loaded machine's slower joins still
	// leave a line to watch (at 200 the line could empty as it formed).
	ev := w.event(50, &onSale, 600)
	a, b := w.instance(), w.instance()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	// Joins and leaves before and after on sale, an admitter on each
	// instance, and pollers watching every place.
	var mu sync.Mutex
	var ids []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 600; i++ {
			p, _, err := []*queue.Service{a, b}[i%2].Join(ctx, ev.ID, email(i))
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			mu.Lock()
			ids = append(ids, p.ID)
			if i%7 == 3 {
				leave := ids[len(ids)/2]
				mu.Unlock()
				_, _ = b.Leave(ctx, leave)
			} else {
				mu.Unlock()
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for _, svc := range []*queue.Service{a, b} {
		ad := queue.NewAdmitter(svc, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := ad.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer ad.Stop(context.Background())
	}
	last := map[string]int64{}
	for ctx.Err() == nil {
		mu.Lock()
		snapshot := append([]string(nil), ids...)
		mu.Unlock()
		for _, id := range snapshot {
			p, err := a.Get(ctx, id)
			if err != nil {
				if ctx.Err() == nil {
					t.Fatal(err)
				}
				break
			}
			if p.Position == nil {
				continue
			}
			if prev, ok := last[id]; ok && *p.Position > prev {
				t.Fatalf("place %s: position grew from %d to %d", id, prev, *p.Position)
			}
			last[id] = *p.Position
		}
	}
	wg.Wait()
	if len(last) < 50 {
		t.Fatalf("only %d places seen with a position", len(last))
	}
}

func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	r := testenv.PrivateRedis(t)
	rdb, err := store.OpenRedis(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	evs := &events{m: map[int64]sale.Event{}}
	evs.m[1] = sale.Event{ID: 1, Queue: &sale.QueueSettings{AdmitPerSecond: 10, PassTTL: 600}}
	svc := queue.NewService(store.NewQueues(rdb, "down:"), evs, newSigner(t), 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p, _, err := svc.Join(context.Background(), 1, "a@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, jerr := svc.Join(context.Background(), 1, email(i))
			_, gerr := svc.Get(context.Background(), p.ID)
			_, serr := svc.State(context.Background(), 1)
			_, lerr := svc.Leave(context.Background(), p.ID)
			for _, err := range []error{jerr, gerr, serr, lerr} {
				if !errors.Is(err, queue.ErrUnavailable) {
					t.Errorf("with Redis down: %v, want %v", err, queue.ErrUnavailable)
				}
			}
		}()
	}
	wg.Wait()
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Back (without its data: the test server keeps none), joins work
	// again once the client's pool dials again (it retries each second).
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, err := svc.Join(context.Background(), 1, "b@example.com")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("join after Redis came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPlaceOutlivesItsEventsQueue(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	svc := w.instance()
	ev := w.event(10, nil, 600)
	p := join(t, svc, ev.ID, 1)
	ev.Queue = nil
	w.events.mu.Lock()
	w.events.m[ev.ID] = ev
	w.events.mu.Unlock()
	time.Sleep(1100 * time.Millisecond) // past the service's cache of the event
	if got := get(t, svc, p.ID); got.EventID != ev.ID || got.Status != queue.StatusWaiting {
		t.Fatalf("poll: %+v, want event %d waiting", got, ev.ID)
	}
	got, err := svc.Leave(context.Background(), p.ID)
	if err != nil || got.EventID != ev.ID || got.Status != queue.StatusLeft {
		t.Fatalf("leave: %+v %v, want event %d left", got, err, ev.ID)
	}
	if _, _, err := svc.Join(context.Background(), ev.ID, email(2)); !errors.Is(err, queue.ErrNoQueue) {
		t.Fatalf("join: %v, want %v", err, queue.ErrNoQueue)
	}
}

func TestAdmissionGoesOnAtItsRateWhenAnInstanceStops(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const rate = 20
	ev := w.event(rate, nil, 600)
	a, b := w.instance(), w.instance()
	for i := 0; i < 200; i++ {
		join(t, a, ev.ID, i)
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	adA, adB := queue.NewAdmitter(a, queue.AdmitEvery, discard), queue.NewAdmitter(b, queue.AdmitEvery, discard)
	for _, ad := range []*queue.Admitter{adA, adB} {
		if err := ad.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	defer adB.Stop(context.Background())
	admitted := func() int64 {
		st, err := b.State(context.Background(), ev.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.Admitted
	}
	time.Sleep(time.Second)
	adA.Stop(context.Background()) // one instance gone
	n0, t0 := admitted(), time.Now()
	time.Sleep(1500 * time.Millisecond)
	n1, secs := admitted(), time.Since(t0).Seconds()
	got := float64(n1-n0) / secs
	if got < rate*0.6 || got > rate*1.4 {
		t.Fatalf("after one admitter stopped: %.1f admitted a second, want about %d", got, rate)
	}
}
