package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
)

// preQueue joins n places to a new queue whose sale opens shortly, waits
// for it to open, and answers the queue's settings and the place ids.
func preQueue(t *testing.T, q *store.Queues, eventID int64, n int) (queue.Settings, []string) {
	t.Helper()
	onSale := time.Now().Add(400 * time.Millisecond)
	ev := queue.Settings{EventID: eventID, OnSaleAt: &onSale, AdmitPerSecond: 1000, PassTTL: time.Minute}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("place%03d", i)
		email := fmt.Sprintf("b%d@example.com", i)
		if _, _, err := q.Join(context.Background(), ev, ids[i], email, email); err != nil {
			t.Fatal(err)
		}
	}
	if time.Now().After(onSale) {
		t.Fatal("the joins outlasted the pre-queue: make the test's on_sale later")
	}
	time.Sleep(time.Until(onSale) + 20*time.Millisecond)
	return ev, ids
}

func position(t *testing.T, q *store.Queues, eventID int64, id string) int64 {
	t.Helper()
	p, _, err := q.Place(context.Background(), eventID, id)
	if err != nil {
		t.Fatalf("place %s: %v", id, err)
	}
	if p.Position == nil {
		return 0
	}
	return *p.Position
}

func newQueues(t *testing.T, part int64) (*store.Queues, *store.Queues) {
	t.Helper()
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	a, b := store.NewQueues(rdb, prefix), store.NewQueues(rdb, prefix)
	a.SetShufflePart(part)
	b.SetShufflePart(part)
	return a, b
}

// A shuffle moves the pre-queue in parts. One whose read missed places
// moves what it has and lets go; until the rest moves nobody is admitted,
// a place that moved counts only moved places ahead, a later join still
// has the whole pre-queue ahead, and a place that leaves is skipped.
func TestTheShuffleMovesThePreQueueInParts(t *testing.T) {
	t.Parallel()
	a, b := newQueues(t, 7)
	ev, ids := preQueue(t, a, 1, 50)
	if got, err := a.PreQueue(context.Background(), ev.EventID); err != nil || !slices.Equal(got, ids) {
		t.Fatalf("pre-queue read in pages of 7: %v %v, want the 50 in arrival order", got, err)
	}
	late := "late"
	if _, _, err := a.Join(context.Background(), ev, late, "late@example.com", "late@example.com"); err != nil {
		t.Fatal(err)
	}
	if p := position(t, a, ev.EventID, late); p != 51 {
		t.Fatalf("a join after on_sale has position %d before the shuffle, want 51", p)
	}
	order := slices.Clone(ids[:40])
	if err := queue.Permute(order); err != nil {
		t.Fatal(err)
	}
	if applied, err := a.Shuffle(context.Background(), ev.EventID, order); applied || !errors.Is(err, queue.ErrStaleShuffle) {
		t.Fatalf("a shuffle that missed 10 places: applied %v, %v; want %v", applied, err, queue.ErrStaleShuffle)
	}
	for i, id := range order {
		if p := position(t, a, ev.EventID, id); p != int64(i+1) {
			t.Fatalf("moved place %d has position %d, want %d", i, p, i+1)
		}
	}
	for _, id := range ids[40:] {
		if p := position(t, a, ev.EventID, id); p != 0 {
			t.Fatalf("a place still to move has position %d, want null", p)
		}
	}
	if p := position(t, a, ev.EventID, late); p != 51 {
		t.Fatalf("mid-shuffle the later join has position %d, want 51", p)
	}
	if res, err := a.Admit(context.Background(), ev, 100, nil); err != nil || len(res.Admitted) != 0 || res.State != queue.StateShuffle {
		t.Fatalf("admission mid-shuffle: %+v %v; want nobody, state shuffle", res, err)
	}
	if _, err := a.Leave(context.Background(), ev.EventID, ids[45]); err != nil {
		t.Fatal(err)
	}
	// Another instance reads the rest and finishes, without waiting out
	// the first one's lease; its stale order still names the place that
	// left, which is skipped.
	rest, err := b.PreQueue(context.Background(), ev.EventID)
	if err != nil || len(rest) != 9 {
		t.Fatalf("the rest: %v %v, want 9 places", rest, err)
	}
	rest = append(rest, ids[45])
	if err := queue.Permute(rest); err != nil {
		t.Fatal(err)
	}
	if applied, err := b.Shuffle(context.Background(), ev.EventID, rest); !applied || err != nil {
		t.Fatalf("the second shuffle: applied %v, %v", applied, err)
	}
	if applied, err := a.Shuffle(context.Background(), ev.EventID, order); applied || err != nil {
		t.Fatalf("a shuffle after it was done: applied %v, %v; want false, nil", applied, err)
	}
	seen := map[int64]bool{}
	for _, id := range append(slices.Clone(ids[:45]), ids[46:]...) {
		p := position(t, a, ev.EventID, id)
		if p < 1 || p > 49 || seen[p] {
			t.Fatalf("after the shuffle place %s has position %d (seen %v)", id, p, seen[p])
		}
		seen[p] = true
	}
	if p := position(t, a, ev.EventID, late); p != 50 {
		t.Fatalf("after the shuffle the later join has position %d, want 50", p)
	}
}

// Two instances shuffle at once: one order lands whole, never a mix of
// the two, and every place gets exactly one turn.
func TestConcurrentShufflesNeverInterleave(t *testing.T) {
	t.Parallel()
	for round := 0; round < 5; round++ {
		a, b := newQueues(t, 5)
		ev, ids := preQueue(t, a, int64(round+1), 120)
		orders := [][]string{slices.Clone(ids), slices.Clone(ids)}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, q := range []*store.Queues{a, b} {
			if err := queue.Permute(orders[i]); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = q.Shuffle(context.Background(), ev.EventID, orders[i])
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		turns := make([]string, len(ids))
		for _, id := range ids {
			p := position(t, a, ev.EventID, id)
			if p < 1 || int(p) > len(ids) || turns[p-1] != "" {
				t.Fatalf("round %d: place %s has position %d", round, id, p)
			}
			turns[p-1] = id
		}
		if !slices.Equal(turns, orders[0]) && !slices.Equal(turns, orders[1]) {
			t.Fatalf("round %d: the turns are neither shuffle's order: two orders interleaved", round)
		}
	}
}

// afterFirst runs fn once, right after the first command named name has
// been answered: something another client does between two of ours.
type afterFirst struct {
	name string
	once sync.Once
	fn   func()
}

func (h *afterFirst) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterFirst) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *afterFirst) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == h.name {
			h.once.Do(h.fn)
		}
		return err
	}
}

// A place that leaves while the pre-queue is read in pages shifts nobody
// past a page's edge: every place is read, in arrival order (the one that
// left too, read before it left: the shuffle skips it).
// (Read by rank, the place at the first page's edge was missed, and the
// shuffle's second read moved it after all the others: the last turn,
// every time, instead of a random one.)
func TestAPreQueueReadMissesNobodyWhenAPlaceLeaves(t *testing.T) {
	t.Parallel()
	url, prefix := testenv.Redis(t)
	rdb, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	q := store.NewQueues(rdb, prefix)
	q.SetShufflePart(10)
	ev, ids := preQueue(t, q, 1, 30)
	rdb.AddHook(&afterFirst{name: "zrange", fn: func() {
		if _, err := q.Leave(context.Background(), ev.EventID, ids[0]); err != nil {
			t.Error(err)
		}
	}})
	got, err := q.PreQueue(context.Background(), ev.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("with the first place leaving after the first page, the read found %d places %v, want all 30 in arrival order", len(got), got)
	}
}
