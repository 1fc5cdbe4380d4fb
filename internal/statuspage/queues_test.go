package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/queue"
)

// fakeQueues answers each event's queue from a map, or its error.
type fakeQueues struct {
	mu     sync.Mutex
	states map[int64]queue.QueueState
	errs   map[int64]error
	asked  []int64
}

func (f *fakeQueues) State(_ context.Context, id int64) (queue.QueueState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, id)
	if err := f.errs[id]; err != nil {
		return queue.QueueState{}, err
	}
	return f.states[id], nil
}

// feedQueues serves the feed at each of the given times and returns the
// queues of its events, by event id, as JSON maps.
func feedQueues(t *testing.T, src Source, qs Queues, at ...time.Time) []map[int64]map[string]any {
	t.Helper()
	i := 0
	clock := func() time.Time { return at[i] }
	h := feedHandler(src, qs, discard(), clock)
	var out []map[int64]map[string]any
	for i = range at {
		rec := httptestGet(h, "/status.json")
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "@") {
			t.Errorf("the feed holds an @: %s", rec.Body)
		}
		var body struct {
			Events []struct {
				ID    int64          `json:"id"`
				Queue map[string]any `json:"queue"`
			} `json:"events"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		m := map[int64]map[string]any{}
		for _, e := range body.Events {
			m[e.ID] = e.Queue
		}
		out = append(out, m)
	}
	return out
}

func TestFeedShowsQueues(t *testing.T) {
	t.Parallel()
	src := &fakeSource{events: []EventStatus{
		{ID: 1, Name: "no queue", Total: 10, Available: 10},
		{ID: 2, Name: "open", Total: 10, Available: 4, AdmitPerSecond: 50},
		{ID: 3, Name: "sold out", Total: 10, AdmitPerSecond: 20},
		{ID: 4, Name: "redis down", Total: 10, Available: 10, AdmitPerSecond: 5},
		{ID: 5, Name: "queue taken off", Total: 10, Available: 10, AdmitPerSecond: 5},
	}}
	qs := &fakeQueues{
		states: map[int64]queue.QueueState{
			2: {EventID: 2, State: queue.StateOpen, Waiting: 300, Admitted: 100, AdmitPerSecond: 50},
			3: {EventID: 3, State: queue.StateSoldOut, Waiting: 0, Admitted: 40, AdmitPerSecond: 20},
		},
		errs: map[int64]error{4: queue.ErrUnavailable, 5: queue.ErrNoQueue},
	}
	got := feedQueues(t, src, qs, now)[0]
	if got[1] != nil || got[5] != nil {
		t.Errorf("events without a queue show %v and %v, want null", got[1], got[5])
	}
	want := map[int64]string{
		2: `{"admit_per_second":50,"admitted":100,"admitted_per_second":null,"state":"open","waiting":300}`,
		3: `{"admit_per_second":20,"admitted":40,"admitted_per_second":null,"state":"sold_out","waiting":0}`,
		4: `{"admit_per_second":5,"admitted":null,"admitted_per_second":null,"state":"unavailable","waiting":null}`,
	}
	for id, w := range want {
		b, _ := json.Marshal(got[id])
		if string(b) != w {
			t.Errorf("event %d queue = %s, want %s", id, b, w)
		}
	}
	for _, id := range qs.asked {
		if id == 1 {
			t.Errorf("the feed read the queue of an event without one")
		}
	}
}

// TestFeedMeasuresAdmissions: the pace is the admitted counter's over the
// last seconds, as the feed is read.
func TestFeedMeasuresAdmissions(t *testing.T) {
	t.Parallel()
	src := &fakeSource{events: []EventStatus{{ID: 2, Total: 10, AdmitPerSecond: 50}}}
	qs := &countingQueues{}
	var at []time.Time
	for i := range 12 {
		at = append(at, now.Add(time.Duration(i)*time.Second))
	}
	// 30 a second for the first 6 s, then none.
	qs.admitted = func(i int) int64 { return int64(30 * min(i, 6)) }
	pages := feedQueues(t, src, qs, at...)
	rate := func(i int) any { return pages[i][2]["admitted_per_second"] }
	if rate(0) != nil {
		t.Errorf("first reading: %v, want null (nothing to measure from)", rate(0))
	}
	for i, want := range map[int]float64{1: 30, 5: 30, 8: 18, 11: 0} {
		if rate(i) != want {
			t.Errorf("after %d s: %v admitted a second, want %v", i, rate(i), want)
		}
	}
}

// countingQueues answers an admitted counter that grows with each read.
type countingQueues struct {
	mu       sync.Mutex
	reads    int
	admitted func(i int) int64
}

func (c *countingQueues) State(_ context.Context, id int64) (queue.QueueState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.admitted(c.reads)
	c.reads++
	return queue.QueueState{EventID: id, State: queue.StateOpen, Admitted: n, AdmitPerSecond: 50}, nil
}

func TestMeter(t *testing.T) {
	t.Parallel()
	m := newMeter()
	if _, ok := m.rate(1, now, 0); ok {
		t.Error("one reading measured a rate")
	}
	if _, ok := m.rate(1, now.Add(500*time.Millisecond), 5); ok {
		t.Error("readings half a second apart measured a rate")
	}
	if r, ok := m.rate(1, now.Add(2*time.Second), 20); !ok || r != 10 {
		t.Errorf("rate = %v, %v; want 10", r, ok)
	}
	// A reading a racing reader took a moment earlier is left out.
	if r, ok := m.rate(1, now.Add(2*time.Second+time.Millisecond), 19); !ok || r != 10 {
		t.Errorf("after a raced reading: rate = %v, %v; want 10", r, ok)
	}
	if r, ok := m.rate(1, now.Add(time.Second), 30); !ok || r != 10 {
		t.Errorf("after a reading stamped before the last: rate = %v, %v; want 10", r, ok)
	}
	// A counter that goes back for a second starts again.
	if _, ok := m.rate(1, now.Add(3*time.Second+time.Millisecond), 2); ok {
		t.Error("a counter that went back measured a rate")
	}
	// Many readers a second keep few readings.
	for i := range 1000 {
		m.rate(2, now.Add(time.Duration(i)*time.Millisecond*10), int64(i))
	}
	m.mu.Lock()
	n := len(m.series[2])
	m.mu.Unlock()
	if n > 30 {
		t.Errorf("%d readings kept for 10 s of reads every 10 ms, want about 4 a second over 5 s", n)
	}
	// A queue nobody reads is forgotten.
	m.rate(3, now.Add(10*time.Minute), 0)
	m.mu.Lock()
	_, kept := m.series[1]
	m.mu.Unlock()
	if kept {
		t.Error("a queue nobody read for minutes kept its readings")
	}
}

func TestFeedQueuesStayQuick(t *testing.T) {
	t.Parallel()
	var events []EventStatus
	for i := range 40 {
		events = append(events, EventStatus{ID: int64(i + 1), AdmitPerSecond: 5})
	}
	start := time.Now()
	got := feedQueues(t, &fakeSource{events: events}, slowQueues{}, now)[0]
	if d := time.Since(start); d > 3*queueTimeout {
		t.Errorf("40 queues that never answer took %v, want about %v", d, queueTimeout)
	}
	if got[1]["state"] != QueueUnavailable {
		t.Errorf("a queue that never answers shows %v, want unavailable", got[1])
	}
}

// slowQueues answers only when the context ends.
type slowQueues struct{}

func (slowQueues) State(ctx context.Context, _ int64) (queue.QueueState, error) {
	<-ctx.Done()
	return queue.QueueState{}, errors.Join(queue.ErrUnavailable, ctx.Err())
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func httptestGet(h http.Handler, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

// TestFeedManyReaders hammers one feed, and so its meter, from many
// goroutines: the race detector watches, and every answer measures a pace
// once readings span a second.
func TestFeedManyReaders(t *testing.T) {
	t.Parallel()
	src := fixedSource{{ID: 1, AdmitPerSecond: 5}, {ID: 2, AdmitPerSecond: 5}}
	qs := &countingQueues{admitted: func(i int) int64 { return int64(i) }}
	var (
		mu    sync.Mutex
		clock = now
	)
	h := feedHandler(src, qs, discard(), func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Millisecond)
		return clock
	})
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if rec := httptestGet(h, "/status.json"); rec.Code != 200 {
					t.Errorf("status %d", rec.Code)
					return
				}
			}
		}()
	}
	wg.Wait()
	rec := httptestGet(h, "/status.json")
	if !strings.Contains(rec.Body.String(), `"admitted_per_second":`) || strings.Contains(rec.Body.String(), `"admitted_per_second":null`) {
		t.Errorf("after 3.2 s of readings the pace is not measured: %s", rec.Body)
	}
}

// fixedSource answers the same events to any number of goroutines.
type fixedSource []EventStatus

func (f fixedSource) StatusEvents(context.Context, int, int) ([]EventStatus, error) { return f, nil }
func (f fixedSource) LatestHolds(context.Context, int) ([]HoldStatus, error)        { return nil, nil }
