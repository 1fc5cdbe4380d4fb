package main

import (
	"context"
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

	"github.com/holdfast/holdfast/webhook/signature"
)

// webhookConfig is the server of the webhook tests: the admin token,
// endpoints on 127.0.0.1 allowed, short delays.
func webhookConfig(c *config) {
	c.AdminToken = testToken
	c.TicketCap = 0
	c.Webhook.AllowPrivate = true
	c.Webhook.RetryBase = 50 * time.Millisecond
	c.Webhook.Poll = 20 * time.Millisecond
	c.Webhook.Timeout = 2 * time.Second
	c.Webhook.Lease = 5 * time.Second
}

var adminAuth = []string{"Authorization", "Bearer " + testToken}

// startOutbox runs the publisher and the deliverer, as serve does.
func (ts *testServer) startOutbox() {
	ts.t.Helper()
	for _, w := range []interface {
		Start(context.Context) error
		Stop(context.Context) error
	}{ts.app.publisher, ts.app.deliverer} {
		if err := w.Start(context.Background()); err != nil {
			ts.t.Fatal(err)
		}
		ts.t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = w.Stop(ctx)
		})
	}
}

type changeBody struct {
	ID        string   `json:"id"`
	Type      string   `json:"type"`
	CreatedAt string   `json:"created_at"`
	Sequence  int      `json:"sequence"`
	Data      holdBody `json:"data"`
}

type endpointBody struct {
	ID      int64    `json:"id"`
	URL     string   `json:"url"`
	Types   []string `json:"types"`
	Secret  string   `json:"secret"`
	Enabled bool     `json:"enabled"`
}

type attemptBody struct {
	DeliveryID int64  `json:"delivery_id"`
	EventID    string `json:"event_id"`
	Type       string `json:"type"`
	Attempt    int    `json:"attempt"`
	StatusCode *int   `json:"status_code"`
	Delivered  bool   `json:"delivered"`
}

// receiver is a webhook receiver: answer decides each answer (to the n-th
// request of one event, from 1); it keeps every request that verified with one of its
// secrets.
type receiver struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	secrets []string
	seen    map[string]int
	got     []changeBody
	headers []string
	answer  func(n int, w http.ResponseWriter)
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter)) *receiver {
	rc := &receiver{t: t, answer: answer, seen: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		ok := false
		for _, s := range rc.secrets {
			if signature.Verify(body, r.Header.Get(signature.Header), s, signature.DefaultTolerance, time.Now()) == nil {
				ok = true
			}
		}
		if !ok {
			rc.mu.Unlock()
			t.Errorf("a delivery did not verify: %s %s", r.Header.Get(signature.Header), body)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var ev changeBody
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("delivery body: %v", err)
		}
		rc.headers = append(rc.headers, r.Header.Get(signature.Header))
		rc.seen[ev.ID]++
		n := rc.seen[ev.ID]
		answer := rc.answer
		rc.mu.Unlock()
		rec := httptest.NewRecorder()
		if answer != nil {
			answer(n, rec)
		}
		if rec.Code >= 200 && rec.Code < 300 {
			rc.mu.Lock()
			rc.got = append(rc.got, ev)
			rc.mu.Unlock()
		}
		w.WriteHeader(rec.Code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setSecrets(s ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = s
}

// wait waits until the receiver accepted n events.
func (rc *receiver) wait(n int, within time.Duration) []changeBody {
	rc.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rc.mu.Lock()
		got := slices.Clone(rc.got)
		rc.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("the receiver accepted %d events in %s, want %d: %+v", len(got), within, n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (ts *testServer) register(url string, types ...string) endpointBody {
	ts.t.Helper()
	if types == nil {
		types = []string{}
	}
	res := ts.do("POST", "/admin/webhooks", map[string]any{"url": url, "types": types}, adminAuth...)
	if res.Status != http.StatusCreated {
		ts.t.Fatalf("register %s: %d %s", url, res.Status, res.Body)
	}
	var e endpointBody
	res.json(ts.t, &e)
	if !strings.HasPrefix(e.Secret, "whsec_") || !e.Enabled {
		ts.t.Fatalf("new endpoint: %+v", e)
	}
	return e
}

func (ts *testServer) attempts(id int64) []attemptBody {
	ts.t.Helper()
	res := ts.do("GET", fmt.Sprintf("/admin/webhooks/%d/deliveries", id), nil, adminAuth...)
	if res.Status != http.StatusOK {
		ts.t.Fatalf("deliveries: %d %s", res.Status, res.Body)
	}
	var body struct {
		Deliveries []attemptBody `json:"deliveries"`
	}
	res.json(ts.t, &body)
	return body.Deliveries
}

// waitAttempts waits until the endpoint's log has n attempts (the receiver
// sees a delivery before the server logs it).
func (ts *testServer) waitAttempts(id int64, n int) []attemptBody {
	ts.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := ts.attempts(id)
		if len(log) >= n || time.Now().After(deadline) {
			return log
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func summary(evs []changeBody) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s/%d/%s", e.Type, e.Sequence, e.Data.Status)
	}
	return out
}

// A hold's life reaches a receiver, signed, each event with its sequence,
// only the types it asked for; the change feed lists them all in order.
func TestWebhooksDeliverEveryChangeSigned(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, webhookConfig)
	all := newReceiver(t, nil)
	confirms := newReceiver(t, nil)
	ea := ts.register(all.srv.URL)
	all.setSecrets(ea.Secret)
	ec := ts.register(confirms.srv.URL+"/hooks", "hold.confirmed", "hold.cancelled")
	confirms.setSecrets(ec.Secret)
	ts.startOutbox()

	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 2)
	if res := ts.do("POST", "/holds/"+h.ID+"/extend", nil); res.Status != http.StatusOK {
		t.Fatalf("extend: %d %s", res.Status, res.Body)
	}
	ts.confirm(h.ID)
	if res := ts.do("POST", "/holds/"+h.ID+"/cancel", nil, adminAuth...); res.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", res.Status, res.Body)
	}
	got := all.wait(4, 10*time.Second)
	slices.SortFunc(got, func(a, b changeBody) int { return a.Sequence - b.Sequence })
	want := []string{"hold.created/1/pending", "hold.extended/2/pending", "hold.confirmed/3/confirmed", "hold.cancelled/4/cancelled"}
	if s := summary(got); !slices.Equal(s, want) {
		t.Fatalf("delivered %v, want %v", s, want)
	}
	if got[0].Data.ID != h.ID || got[2].Data.ConfirmedAt == nil {
		t.Fatalf("delivered holds: %+v", got)
	}
	conf := confirms.wait(2, 10*time.Second)
	if s := summary(conf); len(s) != 2 || !slices.Contains(s, "hold.confirmed/3/confirmed") || !slices.Contains(s, "hold.cancelled/4/cancelled") {
		t.Fatalf("the endpoint of confirms got %v", s)
	}

	// The feed: every event, in commit order, paged by its cursor.
	var feed []changeBody
	next := "0"
	for i := 0; i < 10; i++ {
		res := ts.do("GET", "/admin/changes?limit=3&after="+next, nil, adminAuth...)
		if res.Status != http.StatusOK {
			t.Fatalf("changes: %d %s", res.Status, res.Body)
		}
		var page struct {
			Changes []changeBody `json:"changes"`
			Next    string       `json:"next"`
		}
		res.json(t, &page)
		if len(page.Changes) == 0 {
			if page.Next != next {
				t.Fatalf("an empty page moved the cursor from %s to %s", next, page.Next)
			}
			break
		}
		feed, next = append(feed, page.Changes...), page.Next
	}
	if s := summary(feed); !slices.Equal(s, want) {
		t.Fatalf("feed %v, want %v", s, want)
	}

	log := ts.waitAttempts(ea.ID, 4)
	ts.waitAttempts(ec.ID, 2)
	if len(log) != 4 || !log[0].Delivered || log[0].StatusCode == nil || *log[0].StatusCode != 200 {
		t.Fatalf("delivery log: %+v", log)
	}
	if m := ts.scrape(); m["holdfast_outbox_events_total"] != 4 || m[`holdfast_webhook_deliveries_total{outcome="delivered"}`] != 6 {
		t.Fatalf("metrics: events %v, delivered %v", m["holdfast_outbox_events_total"], m[`holdfast_webhook_deliveries_total{outcome="delivered"}`])
	}

	for _, c := range []struct{ path, method string }{
		{"/admin/changes?after=x", "GET"}, {"/admin/changes?limit=0", "GET"}, {"/admin/changes?limit=1001", "GET"},
		{"/admin/webhooks/x/deliveries", "GET"}, {"/admin/webhooks/0", "DELETE"},
	} {
		if res := ts.do(c.method, c.path, nil, adminAuth...); res.Status != http.StatusBadRequest {
			t.Errorf("%s %s: %d, want 400", c.method, c.path, res.Status)
		}
	}
	if res := ts.do("GET", "/admin/changes", nil); res.Status != http.StatusUnauthorized {
		t.Errorf("changes without the token: %d", res.Status)
	}
}

// A receiver that answers 500, then hangs past the timeout, gets the event
// again, with growing delays, until it answers 2xx; the log shows each
// attempt. Holds go on meanwhile.
func TestWebhooksRetryAFailingOrHangingReceiver(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		webhookConfig(c)
		c.Webhook.Timeout = 300 * time.Millisecond
	})
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		switch n {
		case 1, 2:
			w.WriteHeader(http.StatusInternalServerError)
		case 3:
			time.Sleep(time.Second) // past the timeout
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	e := ts.register(rc.srv.URL, "hold.created")
	rc.setSecrets(e.Secret)
	ts.startOutbox()
	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 1)
	for i := 0; i < 3; i++ {
		ts.mustHold(ev, 1) // more events while the first is retried
	}
	got := rc.wait(4, 20*time.Second)
	if !slices.ContainsFunc(got, func(e changeBody) bool { return e.Data.ID == h.ID }) {
		t.Fatalf("the first hold's event never delivered: %v", summary(got))
	}
	log := ts.waitAttempts(e.ID, 16)
	var codes []string
	for i := len(log) - 1; i >= 0; i-- {
		a := log[i]
		c := "none"
		if a.StatusCode != nil {
			c = fmt.Sprint(*a.StatusCode)
		}
		codes = append(codes, fmt.Sprintf("%d:%s", a.Attempt, c))
	}
	joined := strings.Join(codes, " ")
	for _, want := range []string{"1:500", "2:500", "3:none"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("log %s lacks %s", joined, want)
		}
	}
	if m := ts.scrape(); m[`holdfast_webhook_deliveries_total{outcome="retried"}`] < 3 {
		t.Fatalf("retried = %v, want at least 3", m[`holdfast_webhook_deliveries_total{outcome="retried"}`])
	}
}

// A delivery still failing when --webhook-retry-for has passed is given
// up, logged and counted failed.
func TestWebhooksGiveUpAfterTheRetryWindow(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		webhookConfig(c)
		c.Webhook.RetryFor = 300 * time.Millisecond
	})
	rc := newReceiver(t, func(int, http.ResponseWriter) {})
	rc.answer = func(_ int, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }
	e := ts.register(rc.srv.URL)
	rc.setSecrets(e.Secret)
	ts.startOutbox()
	ts.mustHold(ts.newEvent(5, true), 1)
	deadline := time.Now().Add(10 * time.Second)
	for ts.scrape()[`holdfast_webhook_deliveries_total{outcome="failed"}`] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("never given up; log %+v", ts.attempts(e.ID))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var outcome string
	if err := ts.db().GetContext(context.Background(), &outcome, `SELECT outcome FROM webhook_deliveries`); err != nil || outcome != "failed" {
		t.Fatalf("delivery outcome %q %v", outcome, err)
	}
	if n := len(ts.attempts(e.ID)); n < 2 {
		t.Fatalf("%d attempts before giving up, want a few", n)
	}
}

// A 410 turns the endpoint off: no more attempts. A replay of the delivery
// turns it on and sends the event again.
func TestWebhooks410TurnsTheEndpointOffAndAReplayBack(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, webhookConfig)
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e := ts.register(rc.srv.URL)
	rc.setSecrets(e.Secret)
	ts.startOutbox()
	ev := ts.newEvent(5, true)
	h := ts.mustHold(ev, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := ts.do("GET", "/admin/webhooks", nil, adminAuth...)
		var list struct {
			Webhooks []endpointBody `json:"webhooks"`
		}
		res.json(t, &list)
		if len(list.Webhooks) == 1 && !list.Webhooks[0].Enabled {
			if list.Webhooks[0].Secret != "" {
				t.Fatal("the list shows the secret")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint is still on after a 410: %s", res.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.release(h.ID) // an event while it is off: never sent
	time.Sleep(300 * time.Millisecond)
	log := ts.attempts(e.ID)
	if len(log) != 1 || log[0].StatusCode == nil || *log[0].StatusCode != 410 {
		t.Fatalf("log after the 410: %+v", log)
	}
	res := ts.do("POST", fmt.Sprintf("/admin/webhooks/%d/deliveries/%d/replay", e.ID, log[0].DeliveryID), nil, adminAuth...)
	if res.Status != http.StatusAccepted {
		t.Fatalf("replay: %d %s", res.Status, res.Body)
	}
	got := rc.wait(1, 10*time.Second)
	if got[0].Type != "hold.created" || got[0].Data.ID != h.ID {
		t.Fatalf("replayed %v", summary(got))
	}
	if res := ts.do("POST", fmt.Sprintf("/admin/webhooks/%d/deliveries/999999/replay", e.ID), nil, adminAuth...); res.Status != http.StatusNotFound {
		t.Fatalf("replay of no delivery: %d", res.Status)
	}
}

// While a secret rotates, each delivery carries both signatures; the
// list, the delete.
func TestWebhookSecretRotationAndDelete(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, webhookConfig)
	rc := newReceiver(t, nil)
	e := ts.register(rc.srv.URL)
	res := ts.do("POST", fmt.Sprintf("/admin/webhooks/%d/rotate", e.ID), nil, adminAuth...)
	if res.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", res.Status, res.Body)
	}
	var rotated endpointBody
	res.json(t, &rotated)
	if rotated.Secret == e.Secret || rotated.Secret == "" {
		t.Fatalf("rotated secret %q", rotated.Secret)
	}
	// Only the old secret: the receiver accepts through it.
	rc.setSecrets(e.Secret)
	ts.startOutbox()
	ts.mustHold(ts.newEvent(5, true), 1)
	rc.wait(1, 10*time.Second)
	rc.mu.Lock()
	header := rc.headers[0]
	rc.mu.Unlock()
	if strings.Count(header, "v1=") != 2 {
		t.Fatalf("signature while rotating: %s, want two v1", header)
	}
	res = ts.do("DELETE", fmt.Sprintf("/admin/webhooks/%d", e.ID), nil, adminAuth...)
	if res.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", res.Status, res.Body)
	}
	if res := ts.do("DELETE", fmt.Sprintf("/admin/webhooks/%d", e.ID), nil, adminAuth...); res.Status != http.StatusNotFound {
		t.Fatalf("delete again: %d", res.Status)
	}
	if res := ts.do("POST", fmt.Sprintf("/admin/webhooks/%d/rotate", e.ID), nil, adminAuth...); res.Status != http.StatusNotFound {
		t.Fatalf("rotate a deleted endpoint: %d", res.Status)
	}
	if res := ts.do("GET", fmt.Sprintf("/admin/webhooks/%d/deliveries", e.ID), nil, adminAuth...); res.Status != http.StatusNotFound {
		t.Fatalf("log of a deleted endpoint: %d", res.Status)
	}
}

// Without --webhook-allow-private, a URL on a loopback, private or
// link-local address is refused, and so are bad URLs and types.
func TestWebhookURLsAreChecked(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	for _, body := range []map[string]any{
		{"url": "http://127.0.0.1:9/x"},
		{"url": "http://localhost/x"},
		{"url": "http://10.1.2.3/x"},
		{"url": "http://192.168.0.1/x"},
		{"url": "http://169.254.169.254/latest/meta-data"},
		{"url": "http://[::1]/x"},
		{"url": "http://[fe80::1]/x"},
		{"url": "http://[::ffff:127.0.0.1]/x"},
		{"url": "ftp://example.com/x"},
		{"url": "example.com/x"},
		{"url": "https://user:pw@example.com/x"},
		{"url": "https://93.184.215.14/x", "types": []string{"hold.nope"}},
		{"url": "https://93.184.215.14/x", "extra": 1},
	} {
		if res := ts.do("POST", "/admin/webhooks", body, adminAuth...); res.Status != http.StatusBadRequest {
			t.Errorf("%v: %d %s, want 400", body, res.Status, res.Body)
		}
	}
	if res := ts.do("POST", "/admin/webhooks", map[string]any{"url": "https://93.184.215.14/x"}, adminAuth...); res.Status != http.StatusCreated {
		t.Errorf("a public address: %d %s", res.Status, res.Body)
	}
	if res := ts.do("POST", "/admin/webhooks", `{"url":"https://93.184.215.14/x"}`, append([]string{"Content-Type", "text/plain"}, adminAuth...)...); res.Status != http.StatusUnsupportedMediaType {
		t.Errorf("a form post: %d", res.Status)
	}
}

// A receiver that never answers in time holds no database connection
// while the deliveries wait on it: holds keep the whole pool. (A worker
// that kept its claim's transaction open across the send would hold one
// connection per attempt, as many as the pool.)
func TestASlowReceiverHoldsNoConnection(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		webhookConfig(c)
		c.DBMaxConns = 8
	})
	stop := make(chan struct{})
	rc := newReceiver(t, func(int, http.ResponseWriter) { <-stop })
	t.Cleanup(func() { close(stop) })
	e := ts.register(rc.srv.URL)
	rc.setSecrets(e.Secret)
	ts.startOutbox()
	ev := ts.newEvent(1000, true)
	for i := 0; i < 40; i++ {
		ts.mustHold(ev, 1)
	}
	// Wait until the receiver holds many deliveries at once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		n := len(rc.headers)
		rc.mu.Unlock()
		if n >= 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d deliveries reached the receiver", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if inUse := ts.db().Stats().InUse; inUse > 4 {
		t.Fatalf("%d connections in use while deliveries wait on the receiver", inUse)
	}
	for i := 0; i < 40; i++ {
		ts.mustHold(ev, 1) // 8 connections are plenty: none is the deliveries'
	}
}

// A receiver that hangs takes a few of an instance's attempts at most:
// another endpoint's deliveries go on meanwhile. (Without the cap per
// endpoint, the hanging one's deliveries fill every slot until the
// timeout, and the other gets nothing in that time.)
func TestAHangingReceiverDoesNotHoldUpAnother(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		webhookConfig(c)
		c.Webhook.Concurrency = 8
		c.Webhook.Timeout = 20 * time.Second
		c.Webhook.Lease = 30 * time.Second
	})
	stop := make(chan struct{})
	hung := newReceiver(t, func(int, http.ResponseWriter) { <-stop })
	t.Cleanup(func() { close(stop) })
	fast := newReceiver(t, nil)
	eh := ts.register(hung.srv.URL)
	hung.setSecrets(eh.Secret)
	ef := ts.register(fast.srv.URL)
	fast.setSecrets(ef.Secret)
	ev := ts.newEvent(1000, true)
	for i := 0; i < 40; i++ {
		ts.mustHold(ev, 1)
	}
	ts.startOutbox()
	fast.wait(40, 10*time.Second) // well within the hanging one's 20 s timeout
	hung.mu.Lock()
	n := len(hung.headers)
	hung.mu.Unlock()
	if n > 4 {
		t.Fatalf("the hanging receiver holds %d attempts at once, want at most 4 of 8", n)
	}
}
