package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/queue"
)

// testSigner signs passes with a key of its own: a real Ed25519
// signature over the claims, standing in for internal/pass's JWTs.
type testSigner struct{ priv ed25519.PrivateKey }

func newTestSigner(t *testing.T) testSigner {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testSigner{priv}
}

func (s testSigner) Sign(c pass.Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(body) + "." + enc.EncodeToString(ed25519.Sign(s.priv, body)), nil
}

type placeBody struct {
	ID               string  `json:"id"`
	EventID          int64   `json:"event_id"`
	Status           string  `json:"status"`
	Position         *int64  `json:"position"`
	JoinedAt         string  `json:"joined_at"`
	Pass             *string `json:"pass"`
	PassExpiresAt    *string `json:"pass_expires_at"`
	PollAfterSeconds *int    `json:"poll_after_seconds"`
}

type eventBody struct {
	ID        int64   `json:"id"`
	OnSaleAt  *string `json:"on_sale_at"`
	OffSaleAt *string `json:"off_sale_at"`
	Queue     *struct {
		AdmitPerSecond int    `json:"admit_per_second"`
		PassTTL        string `json:"pass_ttl"`
	} `json:"queue"`
}

func TestSaleWindowsThroughTheAPI(t *testing.T) {
	t.Parallel()
	forBothPaths(t, func(t *testing.T, batch bool) {
		ts := newTestServer(t, func(c *config) { c.AdminToken = testToken; c.Batch = batch })
		auth := []string{"Authorization", "Bearer " + testToken}
		soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		res := ts.do("POST", "/admin/events", `{"name":"Sale","event_date":"2030-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00","on_sale_at":"`+soon+`"}`, auth...)
		var ev eventBody
		res.json(t, &ev)
		if res.Status != 201 || ev.OnSaleAt == nil || *ev.OnSaleAt != soon || ev.OffSaleAt != nil || ev.Queue != nil {
			t.Fatalf("create: %d %s", res.Status, res.Body)
		}
		holdBoth := func(what string, status int, code string) {
			t.Helper()
			for i, key := range []string{"", "k-" + strings.ReplaceAll(what, " ", "-")} {
				h := []string{}
				if key != "" {
					h = []string{"Idempotency-Key", key}
				}
				res := ts.do("POST", "/holds", order(ev.ID, fmt.Sprintf("b%d@example.com", i), 1), h...)
				book := ts.do("POST", "/book/safe", order(ev.ID, fmt.Sprintf("c%d@example.com", i), 1), h...)
				if code == "" {
					if res.Status != 201 || book.Status != 200 {
						t.Fatalf("%s: hold %d %s, book %d %s; want both taken", what, res.Status, res.Body, book.Status, book.Body)
					}
					continue
				}
				expectError(t, what+" hold", res, status, code)
				expectError(t, what+" book", book, status, code)
			}
		}
		holdBoth("before on_sale_at", 403, "not_on_sale")
		if got := ts.available(ev.ID); got != 10 {
			t.Fatalf("stock %d after refusals, want 10", got)
		}
		patch := func(body string) response {
			return ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev.ID), body, auth...)
		}
		res = patch(`{"on_sale_at":null}`)
		res.json(t, &ev)
		if res.Status != 200 || ev.OnSaleAt != nil {
			t.Fatalf("clear on_sale_at: %d %s", res.Status, res.Body)
		}
		holdBoth("on sale", 0, "")
		past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		res = patch(`{"off_sale_at":"` + past + `"}`)
		if res.Status != 200 {
			t.Fatalf("close: %d %s", res.Status, res.Body)
		}
		holdBoth("after off_sale_at", 403, "sale_closed")
		expectError(t, "window ends before it starts", patch(`{"on_sale_at":"`+soon+`"}`), 400, "invalid_request")
		for _, bad := range []string{
			`{"on_sale_at":"tomorrow"}`, `{"on_sale_at":12}`, `{"on_sale_at":"2030-01-01T00:00:00Z","off_sale_at":"2029-01-01T00:00:00Z"}`,
			`{"queue":{"admit_per_second":0}}`, `{"queue":{"admit_per_second":1.5}}`, `{"queue":{"pass_ttl":"5s"}}`,
			`{"queue":{"pass_ttl":"1500ms"}}`, `{"queue":{"pass_ttl":"25h"}}`, `{"queue":{"other":1}}`, `{"queue":7}`,
		} {
			expectError(t, "patch "+bad, patch(bad), 400, "invalid_request")
		}
		res = patch(`{"queue":{}}`)
		res.json(t, &ev)
		if res.Status != 200 || ev.Queue == nil || ev.Queue.AdmitPerSecond != 50 || ev.Queue.PassTTL != "10m" {
			t.Fatalf("queue defaults: %d %s", res.Status, res.Body)
		}
		res = patch(`{"queue":{"admit_per_second":7,"pass_ttl":"90s"}}`)
		res.json(t, &ev)
		if res.Status != 200 || ev.Queue == nil || ev.Queue.AdmitPerSecond != 7 || ev.Queue.PassTTL != "90s" {
			t.Fatalf("queue: %d %s", res.Status, res.Body)
		}
		res = patch(`{"queue":null}`)
		res.json(t, &ev)
		if res.Status != 200 || ev.Queue != nil {
			t.Fatalf("clear queue: %d %s", res.Status, res.Body)
		}
	})
}

// queuedEvent makes an event with a queue through the admin API.
func (ts *testServer) queuedEvent(rate int, onSale string) int64 {
	ts.t.Helper()
	body := fmt.Sprintf(`{"name":"Queued","event_date":"2030-07-01T18:00:00Z","total_tickets":100,"ticket_price":"1.00","queue":{"admit_per_second":%d}`, rate)
	if onSale != "" {
		body += `,"on_sale_at":"` + onSale + `"`
	}
	res := ts.do("POST", "/admin/events", body+"}", "Authorization", "Bearer "+testToken)
	var ev eventBody
	res.json(ts.t, &ev)
	if res.Status != 201 || ev.Queue == nil {
		ts.t.Fatalf("create queued event: %d %s", res.Status, res.Body)
	}
	return ev.ID
}

func TestWaitingRoomThroughTheAPI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ts.app.queue.Signer = newTestSigner(t)
	ev := ts.queuedEvent(1000, "")
	path := fmt.Sprintf("/events/%d/queue", ev)

	res := ts.do("POST", path, `{"user_email":"a@example.com"}`)
	var p placeBody
	res.json(t, &p)
	if res.Status != 201 || p.Status != "waiting" || p.Position == nil || *p.Position != 1 || p.EventID != ev ||
		p.Pass != nil || p.PollAfterSeconds == nil || *p.PollAfterSeconds != 1 || p.JoinedAt == "" {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	res = ts.do("POST", path, `{"user_email":"A@example.com"}`)
	var again placeBody
	res.json(t, &again)
	if res.Status != 200 || again.ID != p.ID {
		t.Fatalf("join again: %d %s, want 200 and place %s", res.Status, res.Body, p.ID)
	}
	var st queue.QueueState
	res = ts.do("GET", path, nil)
	res.json(t, &st)
	if res.Status != 200 || st.State != queue.StateOpen || st.Waiting != 1 || st.AdmitPerSecond != 1000 || st.EventID != ev {
		t.Fatalf("state: %d %s", res.Status, res.Body)
	}

	time.Sleep(20 * time.Millisecond)
	ts.app.admitter.Run(context.Background())
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if res.Status != 200 || p.Status != "admitted" || p.Pass == nil || p.PassExpiresAt == nil || p.Position != nil {
		t.Fatalf("poll after a step: %d %s", res.Status, res.Body)
	}
	// It carries the pass: no cache may keep it.
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("poll's Cache-Control %q, want no-store", cc)
	}
	res = ts.do("DELETE", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if res.Status != 200 || p.Status != "left" || p.Pass != nil {
		t.Fatalf("leave: %d %s", res.Status, res.Body)
	}

	plain := ts.newEvent(10, true)
	expectError(t, "join without a queue", ts.do("POST", fmt.Sprintf("/events/%d/queue", plain), `{"user_email":"a@example.com"}`), 404, "not_found")
	expectError(t, "state without a queue", ts.do("GET", fmt.Sprintf("/events/%d/queue", plain), nil), 404, "not_found")
	expectError(t, "join no event", ts.do("POST", "/events/99999999/queue", `{"user_email":"a@example.com"}`), 404, "not_found")
	expectError(t, "join bad event id", ts.do("POST", "/events/x/queue", `{"user_email":"a@example.com"}`), 400, "invalid_request")
	for _, bad := range []string{`{}`, `{"user_email":"nope"}`, `{"user_email":"a@example.com","x":1}`, `[]`, ``, `{"user_email":null}`} {
		expectError(t, "join "+bad, ts.do("POST", path, bad), 400, "invalid_request")
	}
	expectError(t, "poll malformed", ts.do("GET", "/queue/nope", nil), 400, "invalid_request")
	expectError(t, "leave malformed", ts.do("DELETE", "/queue/1-xyz", nil), 400, "invalid_request")
	unknown, _ := queue.NewPlaceID(ev)
	expectError(t, "poll unknown", ts.do("GET", "/queue/"+unknown, nil), 404, "not_found")
	res = ts.do("GET", path, nil)
	res.json(t, &st)
	if st.Waiting != 0 || st.Admitted != 1 {
		t.Fatalf("state after: %s", res.Body)
	}
	// The metrics count what happened.
	metrics := string(ts.do("GET", "/metrics", nil).Body)
	for _, want := range []string{`holdfast_queue_joins_total{outcome="new"} 1`, `holdfast_queue_joins_total{outcome="existing"} 1`,
		`holdfast_queue_polls_total{outcome="admitted"} 1`, `holdfast_queue_admitted_total 1`, `holdfast_queue_admission_lag_seconds_count 1`,
		`holdfast_queue_time_in_queue_seconds_count 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestAPassTakesHoldsForTheEmailItJoinedWith joins with an address in
// decomposed form: the place's pass names it as the hold rules store it,
// so the buyer's hold with the very bytes it joined with is taken.
func TestAPassTakesHoldsForTheEmailItJoinedWith(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.queuedEvent(1000, "")
	const nfd = "e\u0301te\u0301@example.com"
	p := ts.admittedPlace(ev, nfd)
	res := ts.do("POST", "/holds", map[string]any{"event_id": ev, "user_email": nfd, "quantity": 1}, "Queue-Pass", *p.Pass)
	if res.Status != 201 {
		t.Fatalf("hold with the email the place joined with: %d %s", res.Status, res.Body)
	}
}

// admittedPlace joins email to ev's queue (of a high rate), runs an
// admission step and answers the place, admitted with its pass.
func (ts *testServer) admittedPlace(ev int64, email string) placeBody {
	ts.t.Helper()
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), map[string]any{"user_email": email})
	var p placeBody
	res.json(ts.t, &p)
	if res.Status != 201 {
		ts.t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	time.Sleep(20 * time.Millisecond) // credit
	ts.app.admitter.Run(context.Background())
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(ts.t, &p)
	if p.Pass == nil {
		ts.t.Fatalf("not admitted: %d %s", res.Status, res.Body)
	}
	return p
}

// A booking with a pass (POST /book/safe) is a confirmed purchase, as a
// confirmed hold is: its place reads done, and its email may join again.
func TestABookingWithAPassMakesItsPlaceDone(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.queuedEvent(1000, "")
	const email = "safe@example.com"
	p := ts.admittedPlace(ev, email)
	res := ts.do("POST", "/book/safe", map[string]any{"event_id": ev, "user_email": email, "quantity": 1}, "Queue-Pass", *p.Pass)
	if res.Status != 200 {
		t.Fatalf("book/safe with a pass: %d %s", res.Status, res.Body)
	}
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if p.Status != "done" || p.Pass != nil {
		t.Fatalf("the place after its booking: %s, want done without its pass", res.Body)
	}
	if res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), map[string]any{"user_email": email}); res.Status != 201 {
		t.Fatalf("join again after buying: %d, want a new place", res.Status)
	}
}

func TestThePreQueueThroughTheAPI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	onSale := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	ev := ts.queuedEvent(5, onSale)
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"a@example.com"}`)
	var p placeBody
	res.json(t, &p)
	if res.Status != 201 || p.Status != "waiting" || p.Position != nil || p.PollAfterSeconds == nil || *p.PollAfterSeconds != 30 {
		t.Fatalf("pre-queue join: %d %s", res.Status, res.Body)
	}
	var st queue.QueueState
	res = ts.do("GET", fmt.Sprintf("/events/%d/queue", ev), nil)
	res.json(t, &st)
	if st.State != queue.StatePreQueue || st.Waiting != 1 || st.OnSaleAt == nil {
		t.Fatalf("state: %s", res.Body)
	}
	// Holds are refused before on_sale_at, queue or not.
	expectError(t, "hold", ts.do("POST", "/holds", order(ev, "a@example.com", 1)), 403, "not_on_sale")
}

func TestWaitingRoomWithRedisDownIs503(t *testing.T) {
	t.Parallel()
	redis := testenvPrivateRedis(t)
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken; c.RedisURL = redis.URL() })
	ev := ts.queuedEvent(10, "")
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"a@example.com"}`)
	var p placeBody
	res.json(t, &p)
	if res.Status != 201 {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	if err := redis.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"b@example.com"}`},
		{"GET", fmt.Sprintf("/events/%d/queue", ev), ""},
		{"GET", "/queue/" + p.ID, ""},
		{"DELETE", "/queue/" + p.ID, ""},
	} {
		var body any
		if r.body != "" {
			body = r.body
		}
		res := ts.do(r.method, r.path, body)
		expectError(t, r.method+" "+r.path, res, http.StatusServiceUnavailable, "unavailable")
		if res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
		}
	}
	// Bad input is still bad input.
	expectError(t, "bad email", ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"x"}`), 400, "invalid_request")
}

// TestTheServiceRunsOnARedisCluster starts the whole service on a
// redis+cluster:// URL: the event locks, the rate limit and the waiting
// room all work through go-redis's cluster client.
func TestTheServiceRunsOnARedisCluster(t *testing.T) {
	t.Parallel()
	clusterURL, prefix := testenv.RedisCluster(t)
	ts := newTestServer(t, func(c *config) {
		c.AdminToken = testToken
		c.RedisURL, c.RedisPrefix = clusterURL, prefix
		c.RateLimit = 1000
	})
	ts.app.queue.Signer = newTestSigner(t)
	if err := ts.app.locks.Up(context.Background()); err != nil {
		t.Fatalf("redis cluster not up for the locks: %v", err)
	}
	ev := ts.queuedEvent(1000, "")
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"a@example.com"}`)
	var p placeBody
	res.json(t, &p)
	if res.Status != 201 {
		t.Fatalf("join: %d %s", res.Status, res.Body)
	}
	time.Sleep(20 * time.Millisecond)
	ts.app.admitter.Run(context.Background())
	res = ts.do("GET", "/queue/"+p.ID, nil)
	res.json(t, &p)
	if p.Status != "admitted" || p.Pass == nil {
		t.Fatalf("poll: %d %s", res.Status, res.Body)
	}
	plain := ts.newEvent(10, true)
	ts.mustHold(plain, 1)
	if res := ts.do("POST", "/book/safe", order(plain, "b@example.com", 1)); res.Status != 200 {
		t.Fatalf("book: %d %s", res.Status, res.Body)
	}
	var ready struct{ Redis string }
	ts.do("GET", "/ready", nil).json(t, &ready)
	if ready.Redis != "ok" {
		t.Fatalf("ready: redis %q, want ok", ready.Redis)
	}
}
