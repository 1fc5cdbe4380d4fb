package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/store"
	"github.com/holdfast/holdfast/webhook"
)

// publishAll publishes until nothing is left.
func publishAll(t *testing.T, s *store.Store) {
	t.Helper()
	for {
		n, err := s.Publish(context.Background(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// feed reads the whole change feed after after.
func feed(t *testing.T, s *store.Store, after int64) []webhook.Event {
	t.Helper()
	var all []webhook.Event
	for {
		evs, err := s.Changes(context.Background(), after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Pos
	}
}

// kinds is each event of hold id as "type/sequence/status".
func kinds(evs []webhook.Event, id uuid.UUID) []string {
	var out []string
	for _, e := range evs {
		if e.Data.ID == id {
			out = append(out, fmt.Sprintf("%s/%d/%s", e.Type, e.Sequence, e.Data.Status))
		}
	}
	return out
}

func same(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// Every path that changes a hold writes its event, with the hold's
// sequence, in the change's transaction; an update that is no change (an
// expiry moved earlier) writes none.
func TestEveryChangeOfAHoldWritesItsEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 20)

	a := takeHold(t, s, ev, 2, time.Minute)
	if _, err := s.Extend(ctx, a.ID, 2*time.Minute, time.Hour, nil, noRender); err != nil {
		t.Fatal(err)
	}
	if out, err := s.Confirm(ctx, a.ID, nil, noRender); err != nil || out.Err != nil {
		t.Fatalf("confirm: %v %v", err, out.Err)
	}
	if _, err := s.Cancel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	b := takeHold(t, s, ev, 1, time.Minute)
	if _, err := s.Release(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	c := takeHold(t, s, ev, 1, time.Minute)
	lapse(t, s, c.ID) // moves the expiry earlier: no event
	if _, err := s.SweepExpired(ctx, 100); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s)
	evs := feed(t, s, 0)
	for id, want := range map[uuid.UUID][]string{
		a.ID: {"hold.created/1/pending", "hold.extended/2/pending", "hold.confirmed/3/confirmed", "hold.cancelled/4/cancelled"},
		b.ID: {"hold.created/1/pending", "hold.released/2/released"},
		c.ID: {"hold.created/1/pending", "hold.expired/2/expired"},
	} {
		if got := kinds(evs, id); !same(got, want) {
			t.Errorf("hold %s: events %v, want %v", id, got, want)
		}
	}
	if len(evs) != 8 {
		t.Errorf("%d events, want 8", len(evs))
	}
	// The event's hold is the Hold view: items included.
	first := evs[0]
	if first.Data.ID != a.ID || len(first.Data.Items) != 1 || first.Data.Items[0].Quantity != 2 || first.Data.TotalAmount.String() != "24.68" {
		t.Errorf("first event's hold: %+v", first.Data)
	}
	for i, e := range evs {
		if e.Pos != int64(i+1) {
			t.Errorf("event %d at position %d", i, e.Pos)
		}
	}
}

// A change that rolls back writes no event.
func TestARolledBackChangeWritesNoEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 5)
	h := takeHold(t, s, ev, 1, time.Minute)
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConfirmTx(ctx, tx, h.ID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s)
	if got := kinds(feed(t, s, 0), h.ID); !same(got, []string{"hold.created/1/pending"}) {
		t.Fatalf("events %v, want only the creation", got)
	}
}

// Two transactions that commit out of the order they wrote their events:
// the feed hands out the one that committed first, then, once the other
// commits, that one, after it. A reader that kept its place by write order
// (outbox.n, or a serial id) would have skipped the second: it is below the
// first (watermill #311, #576).
func TestTheFeedSkipsNothingWhenTransactionsCommitOutOfOrder(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	early := takeHold(t, s, ev, 1, time.Minute)
	late := takeHold(t, s, ev, 1, time.Minute)
	publishAll(t, s)
	cursor := feed(t, s, 0)[1].Pos

	// First writes its event first, and commits last.
	first, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()
	if _, err := s.ConfirmTx(ctx, first, early.ID); err != nil {
		t.Fatal(err)
	}
	second, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback()
	if _, err := s.ConfirmTx(ctx, second, late.ID); err != nil {
		t.Fatal(err)
	}
	if err := second.Commit(); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s)
	page := feed(t, s, cursor)
	if got := kinds(page, late.ID); len(page) != 1 || !same(got, []string{"hold.confirmed/2/confirmed"}) {
		t.Fatalf("feed after the second commit: %d events, late %v", len(page), got)
	}
	cursor = page[0].Pos
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s)
	page = feed(t, s, cursor)
	if got := kinds(page, early.ID); len(page) != 1 || !same(got, []string{"hold.confirmed/2/confirmed"}) {
		t.Fatalf("feed after the first commit: %d events, early %v (skipped?)", len(page), got)
	}
	// Written first, committed last: its write order is below the event
	// it comes after in the feed.
	var nEarly, nLate int64
	if err := s.DB().GetContext(ctx, &nEarly, `SELECT n FROM outbox WHERE hold_id = $1 AND sequence = 2`, early.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DB().GetContext(ctx, &nLate, `SELECT n FROM outbox WHERE hold_id = $1 AND sequence = 2`, late.ID); err != nil {
		t.Fatal(err)
	}
	if nEarly >= nLate {
		t.Fatalf("write order %d, %d: the test did not commit out of order", nEarly, nLate)
	}
}

// Many writers and many publishers at once: every committed change is in
// the feed exactly once, positions run 1, 2, 3... without a hole, and each
// hold's events come in its sequence order. (Without the publisher's
// advisory lock, two publishers give one position twice: the unique index
// refuses it and a round fails, or, reading max(pos) before the other
// commits, they number over each other.)
func TestManyPublishersHandOutEveryEventOnceInOrder(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10_000)
	const writers, holdsEach = 8, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var pubErr error
	var pubMu sync.Mutex
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Publish(ctx, 5); err != nil {
					pubMu.Lock()
					pubErr = err
					pubMu.Unlock()
					return
				}
			}
		}()
	}
	var writersWG sync.WaitGroup
	var mu sync.Mutex
	var rolledBack []uuid.UUID
	for w := 0; w < writers; w++ {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			for i := 0; i < holdsEach; i++ {
				outs, err := s.CreateHolds(ctx, ev, []hold.Request{request(ev, fmt.Sprintf("w%d-%d@example.com", w, i), 1)}, time.Minute, noRender)
				if err != nil || outs[0].Err != nil {
					t.Errorf("hold: %v %v", err, outs)
					return
				}
				id := outs[0].Hold.ID
				switch i % 3 {
				case 0:
					_, _ = s.Confirm(ctx, id, nil, noRender)
				case 1:
					_, _ = s.Release(ctx, id)
				case 2:
					tx, err := s.DB().BeginTxx(ctx, nil)
					if err == nil {
						_, _ = s.ConfirmTx(ctx, tx, id)
						_ = tx.Rollback()
						mu.Lock()
						rolledBack = append(rolledBack, id)
						mu.Unlock()
					}
				}
			}
		}()
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	publishAll(t, s)
	evs := feed(t, s, 0)
	seen := map[uuid.UUID]bool{}
	last := map[uuid.UUID]int{}
	var prev int64
	for i, e := range evs {
		// Positions may have holes (a round numbers its events by their
		// write order), never a repeat or a step back.
		if e.Pos <= prev {
			t.Fatalf("event %d at position %d after %d", i, e.Pos, prev)
		}
		prev = e.Pos
		if seen[e.ID] {
			t.Fatalf("event %s twice", e.ID)
		}
		seen[e.ID] = true
		if e.Sequence != last[e.Data.ID]+1 {
			t.Fatalf("hold %s: sequence %d after %d", e.Data.ID, e.Sequence, last[e.Data.ID])
		}
		last[e.Data.ID] = e.Sequence
	}
	var changes int
	if err := s.DB().GetContext(ctx, &changes, `SELECT sum(change_seq) FROM bookings WHERE event_id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	if len(evs) != changes {
		t.Fatalf("%d events for %d changes", len(evs), changes)
	}
	for _, id := range rolledBack {
		if last[id] != 1 {
			t.Fatalf("hold %s whose confirm rolled back has %d events", id, last[id])
		}
	}
}

// Many workers claiming at once: each due delivery goes to one of them,
// once, and a claim's lease keeps it from the others. (Without FOR UPDATE
// in the claim, two workers take the same delivery: the test sees it
// twice.)
func TestEveryDueDeliveryIsClaimedOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.CreateEndpoint(ctx, "http://127.0.0.1:9/x", []string{}, "whsec_test"); err != nil {
		t.Fatal(err)
	}
	ev := newEvent(t, s, 1000)
	const holds = 300
	reqs := make([]hold.Request, holds)
	for i := range reqs {
		reqs[i] = request(ev, fmt.Sprintf("b%d@example.com", i), 1)
	}
	if _, err := s.CreateHolds(ctx, ev, reqs, time.Minute, noRender); err != nil {
		t.Fatal(err)
	}
	publishAll(t, s)
	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				cs, err := s.ClaimDeliveries(ctx, 7, 100, nil, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(cs) == 0 {
					return
				}
				mu.Lock()
				for _, c := range cs {
					claimed[c.DeliveryID]++
					if c.Attempt != 1 || c.Event.Type != webhook.TypeCreated || len(c.Secrets) != 1 {
						t.Errorf("claim %+v", c)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(claimed) != holds {
		t.Fatalf("%d deliveries claimed, want %d", len(claimed), holds)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Fatalf("delivery %d claimed %d times", id, n)
		}
	}
}

// An endpoint deleted while attempts to it are in flight takes its
// deliveries with it. The attempts' record is one batch with other
// endpoints' answers; the log's key to a delivery gone failed all of it,
// so another endpoint's 200 was never recorded and its event was sent
// again. Here the delete is still uncommitted when the record starts, and
// commits while the record waits for it.
func TestAnEndpointDeletedMidAttemptLeavesTheOthersRecorded(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	eps, claims, _ := claimedEvent(t, s, 2)
	gone, kept := eps[0], eps[1]
	var rs []webhook.Result
	for _, c := range claims {
		rs = append(rs, webhook.Result{DeliveryID: c.DeliveryID, EndpointID: c.EndpointID, Attempt: c.Attempt, StatusCode: 200, Delivered: true})
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, gone.ID); err != nil {
		t.Fatal(err)
	}
	recorded := make(chan error, 1)
	go func() {
		_, err := s.RecordAttempts(ctx, rs, time.Second, time.Hour)
		recorded <- err
	}()
	time.Sleep(200 * time.Millisecond) // the record waits for the delete's deliveries
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err != nil {
		t.Fatalf("recording the attempts: %v", err)
	}
	var outcome *string
	if err := s.DB().GetContext(ctx, &outcome, `SELECT outcome FROM webhook_deliveries WHERE endpoint_id = $1`, kept.ID); err != nil {
		t.Fatal(err)
	}
	if log, err := s.Attempts(ctx, kept.ID, 10); err != nil || outcome == nil || *outcome != webhook.OutcomeDelivered || len(log) != 1 {
		t.Fatalf("the kept endpoint's delivery, answered 200: outcome %v, log %v %v; want delivered, one attempt", outcome, log, err)
	}
	var left int
	if err := s.DB().GetContext(ctx, &left, `SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1`, gone.ID); err != nil || left != 0 {
		t.Fatalf("the deleted endpoint's log: %d rows (%v), want none", left, err)
	}
}

// openRound runs a publish round by hand, publishing want events, and
// leaves its transaction open, as a round is before it commits.
func openRound(t *testing.T, s *store.Store, want int) *sqlx.Tx {
	t.Helper()
	ctx := context.Background()
	round, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { round.Rollback() })
	var mine bool
	if err := round.GetContext(ctx, &mine, `SELECT pg_try_advisory_xact_lock($1)`, store.PublishLock); err != nil || !mine {
		t.Fatalf("the round's lock: %v %v", mine, err)
	}
	if _, err := round.ExecContext(ctx, store.QPublishPlan); err != nil {
		t.Fatal(err)
	}
	var batch []int64
	if err := round.SelectContext(ctx, &batch, store.QPublishBatch, 100); err != nil || len(batch) != want {
		t.Fatalf("the round's batch: %v %v, want %d events", batch, err, want)
	}
	var n int
	if err := round.GetContext(ctx, &n, store.QPublish, pq.Array(batch)); err != nil || n != want {
		t.Fatalf("the round published %d (%v), want %d", n, err, want)
	}
	return round
}

// An endpoint registered while a publish round is in progress: the round
// read the endpoints before it was there, and its events became visible
// when it committed, after the endpoint's 201, so the endpoint missed
// events published after it was registered. Registering waits for the
// round now. Here the round is run by hand, held open at its end.
func TestAnEndpointRegisteredDuringARoundGetsWhatIsPublishedAfter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	takeHold(t, s, ev, 1, time.Minute)
	round := openRound(t, s, 1)
	type registered struct {
		ep      webhook.Endpoint
		visible int // events in the feed when its 201 came
		err     error
	}
	done := make(chan registered, 1)
	go func() {
		ep, err := s.CreateEndpoint(ctx, "http://127.0.0.1:9/x", []string{}, "whsec_test")
		evs, ferr := s.Changes(ctx, 0, 100)
		done <- registered{ep, len(evs), errors.Join(err, ferr)}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := round.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	var deliveries int
	if err := s.DB().GetContext(ctx, &deliveries, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, r.ep.ID); err != nil {
		t.Fatal(err)
	}
	if published := len(feed(t, s, 0)); published-r.visible > deliveries {
		t.Fatalf("%d events became visible after the endpoint's 201, and it has %d deliveries", published-r.visible, deliveries)
	}
}

// A 410 while a publish round is in progress: the round read the endpoint
// as on, and its deliveries to it, committed after the 410 stopped the
// pending ones, stayed due while it was off, and went out after a replay
// turned it on, though the contract says they stop. Turning it off waits
// for the round now.
func TestAnEndpointTurnedOffDuringARoundKeepsNothingDue(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	eps, claims, ev := claimedEvent(t, s, 1)
	ep, claim := eps[0], claims[0]
	takeHold(t, s, ev, 1, time.Minute)
	round := openRound(t, s, 1)
	gone := make(chan error, 1)
	go func() {
		_, err := s.RecordAttempts(ctx, []webhook.Result{{DeliveryID: claim.DeliveryID, EndpointID: ep.ID,
			Attempt: claim.Attempt, StatusCode: 410}}, time.Second, time.Hour)
		gone <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if err := round.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-gone; err != nil {
		t.Fatal(err)
	}
	var due int
	if err := s.DB().GetContext(ctx, &due, `SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND next_at IS NOT NULL`, ep.ID); err != nil {
		t.Fatal(err)
	}
	if due != 0 {
		t.Fatalf("after the 410, %d deliveries to the endpoint are still due, want none", due)
	}
}

// The purge takes what is past the retention, published and delivered,
// with its deliveries and their log; an event not yet published, or with
// a delivery still due, stays whatever its age; the feed goes on after
// it.
func TestThePurgeKeepsWhatIsStillOwed(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ep, err := s.CreateEndpoint(ctx, "http://127.0.0.1:9/x", []string{webhook.TypeConfirmed}, "whsec_test")
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvent(t, s, 20)
	takeHold(t, s, ev, 1, time.Minute) // created: published, no delivery (the endpoint takes confirms)
	b := takeHold(t, s, ev, 1, time.Minute)
	if out, err := s.Confirm(ctx, b.ID, nil, noRender); err != nil || out.Err != nil {
		t.Fatalf("confirm: %v %v", err, out.Err)
	}
	publishAll(t, s)                        // b's confirm has a delivery, due
	c := takeHold(t, s, ev, 1, time.Minute) // written, not published
	if n, err := s.PurgeOutbox(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("purge of an hour: %d, %v; want nothing that young", n, err)
	}
	// A negative retention makes every event old.
	if n, err := s.PurgeOutbox(ctx, -time.Hour, 100); err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want a's and b's created, not b's confirm (due) or c's (unpublished)", n, err)
	}
	left := feed(t, s, 0)
	if len(left) != 1 || left[0].Type != webhook.TypeConfirmed || left[0].Data.ID != b.ID {
		t.Fatalf("after the purge the feed has %v, want b's confirm alone", kinds(left, b.ID))
	}
	// Delivered, the confirm goes too, with its delivery and log.
	claims, err := s.ClaimDeliveries(ctx, 10, 10, nil, time.Minute)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %v %v", claims, err)
	}
	if _, err := s.RecordAttempts(ctx, []webhook.Result{{DeliveryID: claims[0].DeliveryID, EndpointID: ep.ID,
		Attempt: 1, StatusCode: 200, Delivered: true}}, time.Second, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Delivered, it is still the newest published event, which stays:
	// the publisher numbers on from it.
	if n, err := s.PurgeOutbox(ctx, -time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("purge of the newest event: %d, %v; want it kept", n, err)
	}
	// c, published now, continues the feed after it; then the confirm
	// goes, with its delivery and log.
	publishAll(t, s)
	rest := feed(t, s, left[0].Pos)
	if len(rest) != 1 || rest[0].Data.ID != c.ID {
		t.Fatalf("the feed after the purge: %+v, want c's created after position %d", rest, left[0].Pos)
	}
	if n, err := s.PurgeOutbox(ctx, -time.Hour, 100); err != nil || n != 1 {
		t.Fatalf("purge after delivery: %d, %v; want the confirm", n, err)
	}
	if log, err := s.Attempts(ctx, ep.ID, 10); err != nil || len(log) != 0 {
		t.Fatalf("the delivery log after the purge: %v %v, want empty", log, err)
	}
	if all := feed(t, s, 0); len(all) != 1 || all[0].Pos != rest[0].Pos {
		t.Fatalf("the feed at the end: %+v, want c's created alone", all)
	}
}

// Events still owed a delivery at the front of the feed (an endpoint down
// for longer than the retention) are passed over, not stopped at: the
// purge looked at the limit oldest events only, so that many owed ones
// stopped every purge behind them.
func TestThePurgePassesOverWhatIsOwed(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.CreateEndpoint(ctx, "http://127.0.0.1:9/x", []string{webhook.TypeCreated}, "whsec_test"); err != nil {
		t.Fatal(err)
	}
	ev := newEvent(t, s, 20)
	a := takeHold(t, s, ev, 1, time.Minute)
	b := takeHold(t, s, ev, 1, time.Minute)
	publishAll(t, s) // a's and b's created: owed to the endpoint, at the front
	for _, h := range []uuid.UUID{a.ID, b.ID} {
		if out, err := s.Confirm(ctx, h, nil, noRender); err != nil || out.Err != nil {
			t.Fatalf("confirm: %v %v", err, out.Err)
		}
	}
	takeHold(t, s, ev, 1, time.Minute) // the newest, kept
	publishAll(t, s)
	if n, err := s.PurgeOutbox(ctx, -time.Hour, 2); err != nil || n != 2 {
		t.Fatalf("purge of 2 behind 2 owed: %d, %v; want the 2 confirms", n, err)
	}
	left := feed(t, s, 0)
	if len(left) != 3 || len(kinds(left, a.ID)) != 1 || len(kinds(left, b.ID)) != 1 ||
		left[0].Type != webhook.TypeCreated || left[1].Type != webhook.TypeCreated {
		t.Fatalf("after the purge the feed has %d events, a's %v, b's %v; want the owed created and the newest", len(left), kinds(left, a.ID), kinds(left, b.ID))
	}
}

// deliveredEvent publishes two holds' created events to a new endpoint and
// delivers the first: an event the purge may take (given a negative
// retention), with the newest, which it keeps, after it. It answers the
// endpoint, the first event's delivery and position.
func deliveredEvent(t *testing.T, s *store.Store) (ep webhook.Endpoint, delivery, pos int64) {
	t.Helper()
	eps, claims, ev := claimedEvent(t, s, 1)
	ep, claim := eps[0], claims[0]
	if _, err := s.RecordAttempts(context.Background(), []webhook.Result{{DeliveryID: claim.DeliveryID, EndpointID: ep.ID,
		Attempt: claim.Attempt, StatusCode: 200, Delivered: true}}, time.Second, time.Hour); err != nil {
		t.Fatal(err)
	}
	takeHold(t, s, ev, 1, time.Minute)
	publishAll(t, s)
	return ep, claim.DeliveryID, claim.Event.Pos
}

// claimedEvent publishes a hold's created event to n new endpoints and
// claims its deliveries: the endpoints, the claims (one an endpoint) and
// the hold's event.
func claimedEvent(t *testing.T, s *store.Store, n int) ([]webhook.Endpoint, []webhook.Claim, int64) {
	t.Helper()
	ctx := context.Background()
	eps := make([]webhook.Endpoint, n)
	for i := range eps {
		var err error
		if eps[i], err = s.CreateEndpoint(ctx, fmt.Sprintf("http://127.0.0.1:9/%d", i), []string{}, "whsec_test"); err != nil {
			t.Fatal(err)
		}
	}
	ev := newEvent(t, s, 10)
	takeHold(t, s, ev, 1, time.Minute)
	publishAll(t, s)
	claims, err := s.ClaimDeliveries(ctx, 10, 10, nil, time.Minute)
	if err != nil || len(claims) != n {
		t.Fatalf("claim: %v %v, want one delivery to each of %d endpoints", claims, err, n)
	}
	return eps, claims, ev
}

// orphans counts deliveries due whose event is gone: each was locked by
// every claim and never sent.
func orphans(t *testing.T, s *store.Store) int {
	t.Helper()
	var n int
	if err := s.DB().GetContext(context.Background(), &n, `SELECT count(*) FROM webhook_deliveries d
		WHERE d.next_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.pos = d.pos)`); err != nil {
		t.Fatal(err)
	}
	return n
}

// A replay of an event the purge is deleting: the purge read the event's
// deliveries before the replay's was there, so it deleted the event under
// the new delivery, which stayed due with no event. The replay now waits
// for the purge's lock on the event, then finds nothing to replay. Here
// the purge is done by hand, as PurgeOutbox does it: lock, then delete.
func TestAReplayWaitsForThePurgeOfItsEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ep, delivery, pos := deliveredEvent(t, s)
	purge, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer purge.Rollback()
	var owed bool
	if err := purge.GetContext(ctx, &owed, `SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE pos = $1 AND next_at IS NOT NULL)
		FROM outbox WHERE pos = $1 FOR UPDATE`, pos); err != nil || owed {
		t.Fatalf("the purge's look: owed %v, %v", owed, err)
	}
	replayed := make(chan error, 1)
	go func() {
		_, err := s.ReplayDelivery(ctx, ep.ID, delivery)
		replayed <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := purge.ExecContext(ctx, `DELETE FROM webhook_deliveries WHERE pos = $1`, pos); err != nil {
		t.Fatal(err)
	}
	if _, err := purge.ExecContext(ctx, `DELETE FROM outbox WHERE pos = $1`, pos); err != nil {
		t.Fatal(err)
	}
	if err := purge.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-replayed; !errors.Is(err, webhook.ErrDeliveryNotFound) {
		t.Fatalf("a replay of an event purged meanwhile: %v, want %v", err, webhook.ErrDeliveryNotFound)
	}
	if n := orphans(t, s); n != 0 {
		t.Fatalf("%d deliveries due of no event", n)
	}
}

// An event a replay is making a delivery of (its lock held here, as the
// replay's transaction holds it) is passed over by the purge, which takes
// it once the replay's delivery is done; a purge never waits on it.
func TestThePurgePassesOverAnEventBeingReplayed(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, _, pos := deliveredEvent(t, s)
	replay, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Rollback()
	if _, err := replay.ExecContext(ctx, `SELECT 1 FROM outbox WHERE pos = $1 FOR KEY SHARE`, pos); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := s.PurgeOutbox(pctx, -time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("a purge with the only old event being replayed: %d, %v; want 0 at once", n, err)
	}
	if err := replay.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PurgeOutbox(ctx, -time.Hour, 100); err != nil || n != 1 {
		t.Fatalf("the purge after the replay let go: %d, %v; want the event", n, err)
	}
}

// planWork sums the rows every node of an EXPLAIN ANALYZE (FORMAT JSON)
// plan produced over all its loops: the work a statement did, without a
// clock.
func planWork(t *testing.T, raw []byte) int64 {
	t.Helper()
	var plans []struct {
		Plan json.RawMessage `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("plan %s: %v", raw, err)
	}
	var walk func(raw json.RawMessage) int64
	walk = func(raw json.RawMessage) int64 {
		var n struct {
			Rows  float64           `json:"Actual Rows"`
			Loops float64           `json:"Actual Loops"`
			Heap  float64           `json:"Heap Fetches"`
			Plans []json.RawMessage `json:"Plans"`
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		sum := int64(n.Rows*n.Loops + n.Heap)
		for _, p := range n.Plans {
			sum += walk(p)
		}
		return sum
	}
	return walk(plans[0].Plan)
}

// The publisher's numbering stays linear in its batch when the outbox's
// statistics are stale (analyzed while it was small, as early in a sale):
// with them the planner ran the numbering once per row of the batch, 2.9 s
// for a batch of 2,000. Read by the rows the plan produced, not a clock.
func TestPublishingStaysLinearOnStaleStatistics(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 1_000_000)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.DB().ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	// Statistics of an outbox of a few events; then a sale's worth, 500
	// of them not yet published, written the way the triggers write them.
	takeHold(t, s, ev, 1, time.Minute)
	publishAll(t, s)
	exec(`ALTER TABLE outbox SET (autovacuum_enabled = false)`)
	exec(`ANALYZE outbox`)
	exec(`INSERT INTO outbox (pos, type, sequence, booking_id, hold_id, event_id, user_email, quantity, total_amount, status)
		SELECT 1000 + g, 'hold.created', 1, 1, gen_random_uuid(), $1, 'a@example.com', 1, 1, 'pending' FROM generate_series(1, 20000) g`, ev)
	exec(`INSERT INTO outbox (type, sequence, booking_id, hold_id, event_id, user_email, quantity, total_amount, status)
		SELECT 'hold.created', 1, 1, gen_random_uuid(), $1, 'a@example.com', 1, 1, 'pending' FROM generate_series(1, 500) g`, ev)
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var batch []int64
	if err := tx.SelectContext(ctx, &batch, store.QPublishBatch, 2000); err != nil || len(batch) != 500 {
		t.Fatalf("the batch: %d events, %v; want 500", len(batch), err)
	}
	if _, err := tx.ExecContext(ctx, store.QPublishPlan); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := tx.QueryRowxContext(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) `+store.QPublish, pq.Array(batch)).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if work := planWork(t, raw); work > 20*500 {
		t.Fatalf("publishing 500 events produced %d rows in its plan, want it linear in the batch (at most %d):\n%s", work, 20*500, raw)
	}
}

// The publisher turns sequential scans off, which makes the cost of any
// plan with one (the webhook endpoints', always) ten billion: past
// PostgreSQL's jit_above_cost, so every round compiled its plan with LLVM
// first, about half a second of the database's CPU for an update of a
// thousand rows that takes ten milliseconds. The pool's sessions run with
// JIT off, which no statement of ours repays.
func TestThePublisherIsNeverCompiled(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var jit string
	if err := tx.GetContext(ctx, &jit, `SHOW jit`); err != nil || jit != "off" {
		t.Fatalf("jit = %q (%v), want off", jit, err)
	}
	if _, err := tx.ExecContext(ctx, store.PublishStatements[0]); err != nil {
		t.Fatal(err)
	}
	var plan []string
	if err := tx.SelectContext(ctx, &plan, `EXPLAIN `+store.PublishStatements[1], pq.Array([]int64{1, 2, 3})); err != nil {
		t.Fatal(err)
	}
	for _, line := range plan {
		if strings.Contains(line, "JIT") {
			t.Fatalf("the publisher's plan is compiled:\n%s", strings.Join(plan, "\n"))
		}
	}
}

// Each published event leaves a dead entry in outbox_unpublished until a
// vacuum. The round's read of what is left must pass over them, not fetch
// each from the heap again every round: after a sale's worth of events it
// read 100,000 dead rows (9.6 ms) to find nothing, over and over.
func TestAPublishRoundPassesOverWhatWasPublished(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ev := newEvent(t, s, 1_000_000)
	ctx := context.Background()
	const events = 20_000
	for range events / 2000 {
		if _, err := s.DB().ExecContext(ctx, `INSERT INTO bookings (event_id, user_email, quantity, total_amount, booking_status, expires_at)
			SELECT $1, 'b' || g || '@example.com', 1, 1, 'pending', now() + interval '10 minutes' FROM generate_series(1, 2000) g`, ev); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := s.Publish(ctx, 500)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	// A round marks an entry dead only once no snapshot can see its row
	// (an autovacuum's analyze may hold one back a while: on a machine
	// running every package's tests it held back 6,000 of them past
	// 200 ms), so the rounds' latest entries may still be read for a
	// while; but a later round passes over them. Before, every round read
	// every entry, however long it waited.
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(200 * time.Millisecond)
		if _, err := s.Publish(ctx, 500); err != nil {
			t.Fatal(err)
		}
		heap, text := heapReads(t, s, store.PublishStatements[0], store.PublishBatchQuery, 1000)
		if strings.Contains(text, "Bitmap") {
			t.Fatalf("the round's read is a bitmap scan, which fetches every entry:\n%s", text)
		}
		if heap <= events/4 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %d events published, the round's read still fetched %d from the heap 10 s on:\n%s", events, heap, text)
		}
	}
}

// heapReads runs query (after setting, in one transaction) under EXPLAIN
// ANALYZE and answers its plan and the rows its index scans fetched from
// the heap. (A bitmap scan fetches every entry it finds: its callers
// refuse one by name.)
func heapReads(t *testing.T, s *store.Store, setting, query string, args ...any) (int, string) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB().BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, setting); err != nil {
		t.Fatal(err)
	}
	var plan []string
	if err := tx.SelectContext(ctx, &plan, `EXPLAIN (ANALYZE, BUFFERS) `+query, args...); err != nil {
		t.Fatal(err)
	}
	heap := 0
	for _, line := range plan {
		if _, after, ok := strings.Cut(line, "Heap Fetches: "); ok {
			var n int
			fmt.Sscan(after, &n)
			heap += n
		}
	}
	return heap, strings.Join(plan, "\n")
}

// TestTheLastRetryIsMadeAtTheDeadline: with delays that double, the retry
// after 45 h of a 72 h window would come at 91 h; it comes at 72 h instead,
// and only an attempt that fails then gives the delivery up. The first
// retry comes within the base, never after it.
func TestTheLastRetryIsMadeAtTheDeadline(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	eps, claims, _ := claimedEvent(t, s, 2)
	const base, window = 10 * time.Second, 72 * time.Hour
	record := func(c webhook.Claim, ep webhook.Endpoint, attempt int) string {
		t.Helper()
		out, err := s.RecordAttempts(ctx, []webhook.Result{{DeliveryID: c.DeliveryID, EndpointID: ep.ID, Attempt: attempt, StatusCode: 500}}, base, window)
		if err != nil {
			t.Fatal(err)
		}
		return out[c.DeliveryID]
	}
	var early time.Duration
	if got := record(claims[0], eps[0], claims[0].Attempt); got != webhook.OutcomeRetry {
		t.Fatalf("the first attempt failed: %q, want a retry", got)
	}
	if err := s.DB().QueryRowContext(ctx, `SELECT (extract(epoch FROM next_at - clock_timestamp()) * 1e6)::bigint FROM webhook_deliveries WHERE id = $1`,
		claims[0].DeliveryID).Scan(&early); err != nil {
		t.Fatal(err)
	}
	if early *= time.Microsecond; early > base {
		t.Fatalf("the first retry is due in %s, want within the base, %s", early, base)
	}
	// The second delivery, 16 attempts made and 45 h 36 m old.
	other := claims[1].DeliveryID
	if _, err := s.DB().ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = 16, created_at = clock_timestamp() - interval '45 hours 36 minutes' WHERE id = $1`, other); err != nil {
		t.Fatal(err)
	}
	if got := record(claims[1], eps[1], 16); got != webhook.OutcomeRetry {
		t.Fatalf("attempt 16, 26 h before the deadline: %q, want a retry", got)
	}
	var atDeadline bool
	if err := s.DB().QueryRowContext(ctx, `SELECT next_at = created_at + interval '72 hours' FROM webhook_deliveries WHERE id = $1`, other).Scan(&atDeadline); err != nil {
		t.Fatal(err)
	}
	if !atDeadline {
		t.Fatal("the retry after attempt 16 is not due at the deadline")
	}
	// That retry, made at the deadline, fails: given up.
	if _, err := s.DB().ExecContext(ctx, `UPDATE webhook_deliveries SET attempts = 17, created_at = clock_timestamp() - interval '72 hours' WHERE id = $1`, other); err != nil {
		t.Fatal(err)
	}
	if got := record(claims[1], eps[1], 17); got != webhook.OutcomeFailed {
		t.Fatalf("the attempt at the deadline failed: %q, want the delivery failed", got)
	}
}

// TestA410GivesUpAndNamesEveryDeliveryOfItsEndpoint: the deliveries a 410
// gives up with their endpoint are answered too, so each is counted.
func TestA410GivesUpAndNamesEveryDeliveryOfItsEndpoint(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ep, err := s.CreateEndpoint(ctx, "http://127.0.0.1:9/gone", []string{}, "whsec_test")
	if err != nil {
		t.Fatal(err)
	}
	ev := newEvent(t, s, 10)
	for range 3 {
		takeHold(t, s, ev, 1, time.Minute)
	}
	publishAll(t, s)
	claims, err := s.ClaimDeliveries(ctx, 10, 1, nil, time.Minute)
	if err != nil || len(claims) != 1 {
		t.Fatalf("claim: %v %v, want one of the three", claims, err)
	}
	out, err := s.RecordAttempts(ctx, []webhook.Result{{DeliveryID: claims[0].DeliveryID, EndpointID: ep.ID, Attempt: claims[0].Attempt, StatusCode: 410}}, time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	disabled := 0
	for _, o := range out {
		if o == webhook.OutcomeDisabled {
			disabled++
		}
	}
	if len(out) != 3 || disabled != 3 {
		t.Fatalf("outcomes %v, want the three deliveries disabled", out)
	}
}

// TestThePurgeLetsPublishingGoOn: a backlog of old events is purged a
// batch a round, and an event written meanwhile is published between its
// batches, not after the last of them.
func TestThePurgeLetsPublishingGoOn(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	ev := newEvent(t, s, 10)
	const old = 50_001 // ten of the publisher's batches
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO outbox (pos, type, sequence, at, booking_id, hold_id, event_id, user_email, quantity, total_amount, status)
		SELECT g, 'hold.created', 1, now() - interval '2 days', 0, gen_random_uuid(), $1, 'old@example.com', 1, 0, 'pending'
		FROM generate_series(1, $2::int) g`, ev, old); err != nil {
		t.Fatal(err)
	}
	left := func() int {
		var n int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE user_email = 'old@example.com'`).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
	p := webhook.NewPublisher(s, 10*time.Millisecond, slog.New(slog.DiscardHandler))
	p.Retention = time.Hour
	seen := make(chan int, 1)
	p.Published = func() {
		select {
		case seen <- left():
		default:
		}
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx)
	for deadline := time.Now().Add(30 * time.Second); left() == old; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the purge did not begin")
		}
	}
	takeHold(t, s, ev, 1, time.Minute)
	select {
	case n := <-seen:
		if n <= 1 {
			t.Fatalf("the new event was published once the purge was over (%d old events left), not between its batches", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the new event was not published")
	}
}
