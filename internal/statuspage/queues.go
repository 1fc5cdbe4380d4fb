package statuspage

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/holdfast/holdfast/queue"
)

// Queues is what the feed reads of the events' waiting rooms: queue.Service.
type Queues interface {
	// State reads an event's queue as a whole: its state, how many wait
	// and how many were admitted so far. queue.ErrNoQueue when the event
	// has none.
	State(ctx context.Context, eventID int64) (queue.QueueState, error)
}

// QueueUnavailable is the state the feed shows for a queue it cannot read:
// Redis, which holds the queues, is down or slow. Sales of events without a
// queue go on, and so does the page.
const QueueUnavailable = "unavailable"

// Reading the queues of one page of events: a few at a time, and never
// for longer than the feed may take.
const (
	queueReaders = 8
	queueTimeout = time.Second
)

// queueJSON is an event's waiting room on the feed: counts, never a place.
type queueJSON struct {
	// State is the queue's: pre_queue, open, sold_out or closed; or
	// unavailable, with the counts null.
	State    string `json:"state"`
	Waiting  *int64 `json:"waiting"`
	Admitted *int64 `json:"admitted"`
	// AdmitPerSecond is the configured pace, the most it may admit.
	AdmitPerSecond int `json:"admit_per_second"`
	// AdmittedPerSecond is the pace measured from the admitted counter
	// over about the last meterWindow; null until two readings a second
	// apart.
	AdmittedPerSecond *float64 `json:"admitted_per_second"`
}

// readQueues reads the queue of each of events that has one, into out (by
// index), a few at a time.
func readQueues(ctx context.Context, qs Queues, m *meter, log *slog.Logger, events []EventStatus, at func() time.Time) []*queueJSON {
	out := make([]*queueJSON, len(events))
	if qs == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, queueTimeout)
	defer cancel()
	var wg sync.WaitGroup
	slots := make(chan struct{}, queueReaders)
	for i, e := range events {
		if e.AdmitPerSecond == 0 {
			continue
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			out[i] = readQueue(ctx, qs, m, log, e, at)
		}()
	}
	wg.Wait()
	return out
}

func readQueue(ctx context.Context, qs Queues, m *meter, log *slog.Logger, e EventStatus, at func() time.Time) *queueJSON {
	st, err := qs.State(ctx, e.ID)
	switch {
	case errors.Is(err, queue.ErrNoQueue):
		// Its queue was taken off since the events were read.
		return nil
	case err != nil:
		if !errors.Is(err, queue.ErrUnavailable) && ctx.Err() == nil {
			log.WarnContext(ctx, "statuspage: read a queue", "event", e.ID, "err", err)
		}
		return &queueJSON{State: QueueUnavailable, AdmitPerSecond: e.AdmitPerSecond}
	}
	q := &queueJSON{State: string(st.State), Waiting: &st.Waiting, Admitted: &st.Admitted, AdmitPerSecond: st.AdmitPerSecond}
	if r, ok := m.rate(e.ID, at(), st.Admitted); ok {
		r = math.Round(r*10) / 10
		q.AdmittedPerSecond = &r
	}
	return q
}

// meterWindow is about how far back the measured pace looks, and
// meterMinGap the least time two readings must span to measure it.
const (
	meterWindow = 5 * time.Second
	meterMinGap = time.Second
	// meterKeep is how long a queue nobody reads keeps its readings.
	meterKeep = time.Minute
)

// meter measures each queue's admissions a second from its admitted
// counter, which every instance shares, as the feed reads it: no
// background work, and the same figure on every instance within the
// readings' timing.
type meter struct {
	mu     sync.Mutex
	series map[int64][]reading
	swept  time.Time
}

type reading struct {
	at time.Time
	n  int64
}

func newMeter() *meter { return &meter{series: map[int64][]reading{}} }

// rate records that event id had admitted n places at at, and returns the
// admissions a second since the newest reading at least meterWindow old (or
// the oldest kept): ok false until the readings span meterMinGap.
func (m *meter) rate(id int64, at time.Time, n int64) (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if at.Sub(m.swept) > meterKeep {
		for k, s := range m.series {
			if at.Sub(s[len(s)-1].at) > meterKeep {
				delete(m.series, k)
			}
		}
		m.swept = at
	}
	s := m.series[id]
	if len(s) > 0 {
		last := s[len(s)-1]
		switch {
		case at.Before(last.at) || (n < last.n && at.Sub(last.at) < meterMinGap):
			// Two readers raced: this reading was taken before the
			// last one kept, or with the counter a moment earlier.
			// Measure without it.
			return m.measured(s, last.at, last.n)
		case n < last.n:
			// The counter went back for a second: the queue's keys
			// were lost. Start again.
			s = nil
		}
	}
	switch {
	case len(s) > 1 && at.Sub(s[len(s)-2].at) < meterMinGap/4:
		// Many readers: keep a reading every quarter second at most.
		s = s[:len(s)-1]
	}
	s = append(s, reading{at: at, n: n})
	for len(s) > 1 && !s[1].at.After(at.Add(-meterWindow)) {
		s = s[1:]
	}
	m.series[id] = s
	return m.measured(s, at, n)
}

// measured is the pace from the first of s to a reading of n at at.
func (m *meter) measured(s []reading, at time.Time, n int64) (float64, bool) {
	base := s[0]
	span := at.Sub(base.at)
	if span < meterMinGap {
		return 0, false
	}
	return float64(n-base.n) / span.Seconds(), true
}
