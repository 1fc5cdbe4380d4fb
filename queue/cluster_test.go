package queue_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/store"
)

// TestTheQueueRunsOnARedisCluster runs joins, the shuffle, admission,
// polls and leaves of events whose queues hash to different slots (and so,
// across three masters, different nodes) through go-redis's cluster
// client: every script's keys share one slot, or Redis refuses it.
func TestTheQueueRunsOnARedisCluster(t *testing.T) {
	t.Parallel()
	clusterURL, _ := testenv.RedisCluster(t)
	rdb, err := store.OpenRedis(clusterURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	w := newWorld(t)
	w.rdb = rdb
	a, b := w.instance(), w.instance()
	onSale := time.Now().Add(800 * time.Millisecond)
	var evs []int64
	for i := 0; i < 6; i++ {
		ev := w.event(1000, &onSale, 600)
		evs = append(evs, ev.ID)
		for j := 0; j < 10; j++ {
			p := join(t, []*queue.Service{a, b}[j%2], ev.ID, j)
			if p.Position != nil {
				t.Fatalf("pre-queue place with position %d", *p.Position)
			}
		}
	}
	slots := map[int64]bool{}
	for _, id := range evs {
		n, err := rdb.ClusterKeySlot(context.Background(), w.queues().QueueBase(id)+"meta").Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[n] = true
	}
	if len(slots) < 2 {
		t.Fatalf("the events' queues share one slot; the test proves nothing")
	}
	// The admitter reads every queue's backlog in one pipeline, which the
	// cluster client splits by node.
	backlogs := func(want queue.Backlog) {
		t.Helper()
		got, err := w.queues().Backlogs(context.Background(), evs, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range got {
			if b != want {
				t.Fatalf("event %d's backlog: %+v, want %+v", evs[i], b, want)
			}
		}
	}
	backlogs(queue.Backlog{PreQueue: 10})
	time.Sleep(time.Until(onSale) + 50*time.Millisecond)
	var wg sync.WaitGroup
	for _, svc := range []*queue.Service{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 20; k++ {
				svc2 := svc
				for _, id := range evs {
					ev, _ := w.events.Event(context.Background(), id)
					if _, err := svc2.Step(context.Background(), ev, queue.Unlimited); err != nil {
						t.Error(err)
						return
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	backlogs(queue.Backlog{})
	for _, id := range evs {
		st, err := a.State(context.Background(), id)
		if err != nil || st.Admitted != 10 || st.Waiting != 0 {
			t.Fatalf("event %d: %+v %v, want all 10 admitted", id, st, err)
		}
		p, _, err := b.Join(context.Background(), id, email(0))
		if err != nil || p.Status != queue.StatusAdmitted || p.Pass == nil {
			t.Fatalf("event %d: join again %+v %v, want the admitted place", id, p, err)
		}
		if left, err := a.Leave(context.Background(), p.ID); err != nil || left.Status != queue.StatusLeft {
			t.Fatalf("leave: %+v %v", left, err)
		}
	}
}
