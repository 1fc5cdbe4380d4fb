package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchToken is the batched server's --admin-token.
const benchToken = "bench-admin-token-0123456789"

// outboxTriggers are the triggers of schema/014 that write the outbox; the
// benchmark turns them off (ALTER TABLE ... DISABLE TRIGGER, between runs)
// to measure holds without the outbox on the same server in the same run.
var outboxTriggers = []string{"outbox_insert", "outbox_update", "bookings_count_change"}

func (e *env) outbox(on bool) error {
	verb := "DISABLE"
	if on {
		verb = "ENABLE"
	}
	var acts []string
	for _, t := range outboxTriggers {
		acts = append(acts, verb+" TRIGGER "+t)
	}
	_, err := e.db.Exec(`ALTER TABLE bookings ` + strings.Join(acts, ", "))
	return err
}

// lagReceiver is a webhook receiver that records, for every event, how
// long after its change it arrived.
type lagReceiver struct {
	mu   sync.Mutex
	lags []time.Duration
}

func (l *lagReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		CreatedAt time.Time `json:"created_at"`
	}
	body, _ := io.ReadAll(r.Body)
	if json.Unmarshal(body, &ev) == nil {
		d := time.Since(ev.CreatedAt)
		l.mu.Lock()
		l.lags = append(l.lags, d)
		l.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (l *lagReceiver) take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lags
	l.lags = nil
	slices.Sort(out)
	return out
}

func (e *env) admin(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, e.batched.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw, nil
}

// BenchmarkOutbox is POST /holds (batched, 64 clients) three ways, twice
// each, alternating, on fresh events: the outbox's triggers off; on; on
// with one webhook endpoint taking every event. Then the delivery lag
// (from the change, by the database's clock, to the receiver) of the
// events of the webhook runs, once every one has arrived.
func BenchmarkOutbox(b *testing.B) {
	lr := &lagReceiver{}
	rcv := httptest.NewServer(lr)
	defer rcv.Close()
	defer func() { _ = e.outbox(true) }()

	const clients = 64
	const (
		off = iota
		on
		hooked
	)
	names := []string{"POST /holds, outbox off", "POST /holds, outbox on", "POST /holds, outbox on + 1 webhook"}
	rates := map[int][]float64{}
	var lags []time.Duration
	var drains []time.Duration
	for round := 0; round < 2; round++ {
		for _, mode := range []int{off, on, hooked} {
			if err := e.outbox(mode != off); err != nil {
				b.Fatal(err)
			}
			ev, err := e.event(100_000_000)
			if err != nil {
				b.Fatal(err)
			}
			var endpoint int64
			if mode == hooked {
				status, raw, err := e.admin("POST", "/admin/webhooks", fmt.Sprintf(`{"url": %q}`, rcv.URL))
				if err != nil || status != http.StatusCreated {
					b.Fatalf("register the receiver: %d %s %v", status, raw, err)
				}
				var ep struct {
					ID int64 `json:"id"`
				}
				_ = json.Unmarshal(raw, &ep)
				endpoint = ep.ID
			}
			r := e.measure(names[mode], e.batched, clients, func(c, i int) (string, string, []byte) {
				return "POST", "/holds", holdBody(ev, c, i)
			}, 0)
			e.record(b, r)
			rates[mode] = append(rates[mode], r.rate())
			if mode != hooked {
				continue
			}
			// Every event of the run delivered before the next run starts.
			end := time.Now()
			want := r.OK
			got := lr.take()
			for len(got) < want && time.Since(end) < 3*time.Minute {
				time.Sleep(50 * time.Millisecond)
				got = append(got, lr.take()...)
			}
			drains = append(drains, time.Since(end))
			if _, _, err := e.admin("DELETE", fmt.Sprintf("/admin/webhooks/%d", endpoint), ""); err != nil {
				b.Fatal(err)
			}
			if len(got) < want {
				b.Fatalf("%d of %d events delivered three minutes after the run", len(got), want)
			}
			lags = append(lags, got...)
		}
	}
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[min(len(lags)-1, int(float64(len(lags))*p))] }
	mean := func(xs []float64) float64 {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	e.note("outbox: holds/s (64 clients, batched) with the outbox off %.0f %v, on %.0f %v: x %.2f; on with one webhook taking every event %.0f %v: x %.2f\n"+
		"  delivery lag of the webhook runs' %d events: p50 %s, p99 %s, max %s; the last delivered %v after the load stopped",
		mean(rates[off]), rounded(rates[off]), mean(rates[on]), rounded(rates[on]), mean(rates[on])/mean(rates[off]),
		mean(rates[hooked]), rounded(rates[hooked]), mean(rates[hooked])/mean(rates[off]),
		len(lags), pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond), roundedD(drains))
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x + 0.5)
	}
	return out
}

func roundedD(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}
