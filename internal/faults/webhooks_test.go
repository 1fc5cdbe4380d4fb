package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/webhook/signature"
)

// adminToken is the instances' --admin-token.
const adminToken = "faults-admin-token-0123456789"

// hooks is a webhook receiver that every scenario of TestFaults delivers
// to while its fault is in force: it answers 500 to about one attempt in
// ten and, to about one event in fifty, first hangs past the 10 s timeout,
// so that an instance killed, paused or cut off from PostgreSQL is likely
// to be mid-delivery. verify then requires that every committed change of
// a hold was delivered (at least once) and that nothing else was: no event
// for a change that rolled back, none twice under two ids.
type hooks struct {
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    map[string]hookEvent // by event id
	tries  map[string]int
	bad    int
	hung   int
	failed int
}

type hookEvent struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Sequence int    `json:"sequence"`
	Data     struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"data"`
}

// startHooks starts the receiver and registers it through instance a.
func startHooks(t *testing.T, c *cluster) *hooks {
	t.Helper()
	h := &hooks{got: map[string]hookEvent{}, tries: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	body := strings.NewReader(fmt.Sprintf(`{"url": %q}`, h.srv.URL+"/hook"))
	req, _ := http.NewRequest("POST", c.insts[0].base+"/admin/webhooks", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e struct {
		Secret string `json:"secret"`
	}
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated || json.Unmarshal(raw, &e) != nil || e.Secret == "" {
		t.Fatalf("register the receiver: %d %s", res.StatusCode, raw)
	}
	h.secret = e.Secret
	return h
}

func (h *hooks) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var ev hookEvent
	if signature.Verify(body, r.Header.Get(signature.Header), h.secret, signature.DefaultTolerance, time.Now()) != nil ||
		json.Unmarshal(body, &ev) != nil || ev.ID == "" {
		h.mu.Lock()
		h.bad++
		h.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.tries[ev.ID]++
	first := h.tries[ev.ID] == 1
	h.mu.Unlock()
	switch n := rand.IntN(100); {
	case first && n < 2:
		h.mu.Lock()
		h.hung++
		h.mu.Unlock()
		select {
		case <-r.Context().Done():
		case <-time.After(11 * time.Second):
		}
		// Never a 2xx, even to a sender that was stopped (SIGSTOP) past
		// its own timeout and reads this late answer.
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case n < 12:
		h.mu.Lock()
		h.failed++
		h.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.mu.Lock()
	h.got[ev.ID] = ev
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// verify waits for the outbox to be published and every delivery over,
// then compares what arrived with what the database committed: each
// hold's changes 1..change_seq, once each.
func (h *hooks) verify(t *testing.T, c *cluster) {
	c.ensure(t)
	db := c.openDB(t)
	ctx := context.Background()
	// Settled: no hold left pending (the last ones lapse and are swept),
	// every event published, every delivery over, and no change since the
	// last look.
	deadline := time.Now().Add(90 * time.Second)
	last := int64(-1)
	for {
		var live, unpublished, pending int
		var changes int64
		err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM bookings WHERE booking_status = 'pending'),
			(SELECT count(*) FROM outbox WHERE pos IS NULL),
			(SELECT count(*) FROM webhook_deliveries WHERE outcome IS NULL),
			(SELECT coalesce(sum(change_seq), 0) FROM bookings)`).Scan(&live, &unpublished, &pending, &changes)
		if err == nil && live == 0 && unpublished == 0 && pending == 0 && changes == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d holds pending, %d events unpublished, %d deliveries not over (%v)", live, unpublished, pending, err)
		}
		last = changes
		time.Sleep(500 * time.Millisecond)
	}
	var failed int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE outcome <> 'delivered'`).Scan(&failed); err != nil {
		t.Fatal(err)
	}
	if failed > 0 {
		t.Errorf("%d deliveries given up", failed)
	}
	// What committed: every hold's changes, and its status now.
	want := map[string]string{} // "hold/sequence" -> "" (last: its status)
	rows, err := db.QueryContext(ctx, `SELECT hold_id, change_seq,
		CASE WHEN booking_status = 'failed' THEN failure_reason ELSE booking_status END FROM bookings`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, status string
		var seq int
		if err := rows.Scan(&id, &seq, &status); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= seq; i++ {
			want[fmt.Sprintf("%s/%d", id, i)] = ""
		}
		want[fmt.Sprintf("%s/%d", id, seq)] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]string{} // "hold/sequence" -> event id
	invented, twice, wrong := 0, 0, 0
	for id, ev := range h.got {
		k := fmt.Sprintf("%s/%d", ev.Data.ID, ev.Sequence)
		status, ok := want[k]
		switch {
		case !ok:
			invented++
			if invented <= 5 {
				t.Logf("invented: %s %s %s", id, ev.Type, k)
			}
		case seen[k] != "":
			twice++
		case status != "" && status != ev.Data.Status:
			wrong++
			t.Logf("hold %s's last event says %s, the database %s", ev.Data.ID, ev.Data.Status, status)
		}
		seen[k] = id
	}
	lost := 0
	for k := range want {
		if seen[k] == "" {
			lost++
			if lost <= 5 {
				t.Logf("lost: %s", k)
			}
		}
	}
	redelivered := 0
	for _, n := range h.tries {
		redelivered += n - 1
	}
	fmt.Printf("faults: webhooks: changes=%d delivered=%d lost=%d invented=%d twice=%d wrong=%d (attempts answered 500: %d, hung: %d, redelivered: %d, bad signatures: %d)\n",
		len(want), len(h.got), lost, invented, twice, wrong, h.failed, h.hung, redelivered, h.bad)
	if lost+invented+twice+wrong+h.bad > 0 {
		t.Errorf("webhooks: lost %d, invented %d, one change under two ids %d, wrong status %d, bad signatures %d", lost, invented, twice, wrong, h.bad)
	}
	h.verifyFeed(t, c, want)
}

// verifyFeed reads the whole change feed through instance b: every change
// once.
func (h *hooks) verifyFeed(t *testing.T, c *cluster, want map[string]string) {
	seen := map[string]bool{}
	ids := map[string]bool{}
	next := "0"
	for {
		req, _ := http.NewRequest("GET", c.insts[len(c.insts)-1].base+"/admin/changes?limit=1000&after="+next, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Changes []hookEvent `json:"changes"`
			Next    string      `json:"next"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("changes: %d %v", res.StatusCode, err)
		}
		if len(page.Changes) == 0 {
			break
		}
		for _, ev := range page.Changes {
			k := fmt.Sprintf("%s/%d", ev.Data.ID, ev.Sequence)
			if seen[k] || ids[ev.ID] {
				t.Fatalf("the feed has %s twice", k)
			}
			if _, ok := want[k]; !ok {
				t.Fatalf("the feed has %s, a change that never committed", k)
			}
			seen[k], ids[ev.ID] = true, true
		}
		next = page.Next
	}
	if len(seen) != len(want) {
		t.Fatalf("the feed has %d changes, the database %d", len(seen), len(want))
	}
}
