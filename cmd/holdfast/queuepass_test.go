package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/holdfast/holdfast/internal/pass"
	"github.com/holdfast/holdfast/internal/testenv"
)

// newServerWithoutRedis is a test server whose Redis was stopped after it
// started: what works here needs PostgreSQL alone.
func newServerWithoutRedis(t *testing.T) *testServer {
	t.Helper()
	redis := testenv.PrivateRedis(t)
	ts := newTestServer(t, func(c *config) { c.RedisURL = redis.URL() })
	if err := redis.Stop(); err != nil {
		t.Fatal(err)
	}
	return ts
}

// queue gives an event a waiting room.
func (ts *testServer) queue(ev int64) {
	ts.t.Helper()
	if _, err := ts.db().ExecContext(context.Background(), `UPDATE events SET queue_admit_per_second = 50, queue_pass_ttl_seconds = 600 WHERE id = $1`, ev); err != nil {
		ts.t.Fatal(err)
	}
}

// pass signs a pass for place, as the queue does when it admits it.
func (ts *testServer) pass(ev int64, place, email string, ttl time.Duration) string {
	ts.t.Helper()
	tok, err := ts.app.passes.Sign(pass.Claims{EventID: ev, PlaceID: place, Email: email, Cap: 10, ExpiresAt: time.Now().Add(ttl)})
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok
}

// wantCode checks a response's status and, for an error, its code.
func wantCode(t *testing.T, what string, res response, status int, code string) {
	t.Helper()
	if res.Status != status {
		t.Errorf("%s: status %d, want %d: %s", what, res.Status, status, res.Body)
		return
	}
	if code != "" {
		if _, got := res.errorBody(t); got != code {
			t.Errorf("%s: code %q, want %q", what, got, code)
		}
	}
}

func orderBody(ev int64, email string) map[string]any {
	return map[string]any{"event_id": ev, "user_email": email, "quantity": 1}
}

// TestAQueuedEventNeedsAPassWithoutRedis runs every answer a pass can get
// from POST /holds and POST /book/safe with Redis down: checking a pass
// takes no Redis.
func TestAQueuedEventNeedsAPassWithoutRedis(t *testing.T) {
	t.Parallel()
	ts := newServerWithoutRedis(t)
	ev, other, open := ts.newEvent(10, true), ts.newEvent(10, true), ts.newEvent(10, true)
	ts.queue(ev)
	ts.queue(other)
	const email = "buyer@example.com"

	// An edge proxy's view: the public keys, from the real server.
	keysRes := ts.do(http.MethodGet, "/queue/keys", nil)
	wantCode(t, "GET /queue/keys", keysRes, http.StatusOK, "")
	if cc := keysRes.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("GET /queue/keys: Cache-Control %q, want a max-age", cc)
	}
	var set pass.JWKS
	keysRes.json(t, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("GET /queue/keys: %d keys, want 1", len(set.Keys))
	}
	pub, err := set.Keys[0].PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	forged := func(method jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"aud": itoa(ev), "sub": "forged", "email": email, "cap": 10,
			"exp": time.Now().Add(time.Minute).Unix()})
		tok.Header["kid"] = set.Keys[0].Kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	refusals := []struct {
		name string
		pass string // "" sends no header
		code string
	}{
		{"no pass", "", "queue_required"},
		{"garbage", "not-a-pass", "pass_invalid"},
		{"another event's pass", ts.pass(other, "p-other", email, time.Minute), "pass_invalid"},
		{"another email's pass", ts.pass(ev, "p-else", "someone@example.com", time.Minute), "pass_invalid"},
		{"alg none", forged(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), "pass_invalid"},
		{"HS256 keyed with the public key", forged(jwt.SigningMethodHS256, []byte(pub)), "pass_invalid"},
		{"expired", ts.pass(ev, "p-old", email, -2*time.Second), "pass_expired"},
	}
	for _, path := range []string{"/holds", "/book/safe"} {
		for _, tc := range refusals {
			var header []string
			if tc.pass != "" {
				header = []string{pass.Header, tc.pass}
			}
			wantCode(t, path+" with "+tc.name, ts.do(http.MethodPost, path, orderBody(ev, email), header...), http.StatusForbidden, tc.code)
		}
	}
	if got := ts.available(ev); got != 10 {
		t.Fatalf("refused requests took tickets: %d left, want 10", got)
	}

	// A good pass holds; once its hold is confirmed, the pass is used.
	good := ts.pass(ev, "p-1", email, time.Minute)
	res := ts.do(http.MethodPost, "/holds", orderBody(ev, email), pass.Header, good)
	wantCode(t, "POST /holds with a good pass", res, http.StatusCreated, "")
	var h struct {
		ID string `json:"id"`
	}
	res.json(t, &h)
	wantCode(t, "POST /holds a second time with the pass", ts.do(http.MethodPost, "/holds", orderBody(ev, email), pass.Header, good), http.StatusCreated, "")
	wantCode(t, "confirm", ts.do(http.MethodPost, "/holds/"+h.ID+"/confirm", nil), http.StatusOK, "")
	wantCode(t, "POST /holds with a used pass", ts.do(http.MethodPost, "/holds", orderBody(ev, email), pass.Header, good), http.StatusForbidden, "pass_used")
	wantCode(t, "POST /book/safe with a used pass", ts.do(http.MethodPost, "/book/safe", orderBody(ev, email), pass.Header, good), http.StatusForbidden, "pass_used")

	// /book/safe confirms at once: its pass is used by its own booking.
	booker := ts.pass(ev, "p-2", "booker@example.com", time.Minute)
	wantCode(t, "POST /book/safe with a good pass", ts.do(http.MethodPost, "/book/safe", orderBody(ev, "booker@example.com"), pass.Header, booker), http.StatusOK, "")
	wantCode(t, "POST /book/safe again", ts.do(http.MethodPost, "/book/safe", orderBody(ev, "booker@example.com"), pass.Header, booker), http.StatusForbidden, "pass_used")

	// A refusal is not kept for the idempotency key: the client who comes
	// back with its pass is served.
	keyed := []string{"Idempotency-Key", "k-1"}
	wantCode(t, "keyed, no pass", ts.do(http.MethodPost, "/holds", orderBody(ev, "keyed@example.com"), keyed...), http.StatusForbidden, "queue_required")
	wantCode(t, "keyed, with its pass", ts.do(http.MethodPost, "/holds", orderBody(ev, "keyed@example.com"),
		append(keyed, pass.Header, ts.pass(ev, "p-3", "keyed@example.com", time.Minute))...), http.StatusCreated, "")

	// An event without a queue needs no pass, and ignores a bad one.
	wantCode(t, "no queue, no pass", ts.do(http.MethodPost, "/holds", orderBody(open, email)), http.StatusCreated, "")
	wantCode(t, "no queue, a bad pass", ts.do(http.MethodPost, "/holds", orderBody(open, email), pass.Header, "garbage"), http.StatusCreated, "")

	if out, ok := ts.check(ev, other, open); !ok {
		t.Errorf("holdfast check:\n%s", out)
	}
}

// TestPassKeysRotate rotates the key with `holdfast pass-keys rotate`: a
// pass of the old key still takes a hold, and new passes carry the new
// key, which GET /queue/keys publishes next to the old one.
func TestPassKeysRotate(t *testing.T) {
	t.Parallel()
	ts := newServerWithoutRedis(t)
	ev := ts.newEvent(10, true)
	ts.queue(ev)
	const email = "buyer@example.com"
	old := ts.pass(ev, "p-old", email, time.Minute)

	var out, errOut bytes.Buffer
	args := []string{"pass-keys", "rotate", "--database-url", ts.cfg.DatabaseURL, "--publish", "0s", "--grace", "1h"}
	if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("pass-keys rotate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "added key") {
		t.Errorf("pass-keys rotate said %q", out.String())
	}
	// What every instance does within its refresh (30 s).
	if err := ts.app.passes.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	fresh := ts.pass(ev, "p-new", email, time.Minute)
	if kid(t, fresh) == kid(t, old) {
		t.Errorf("after rotation passes are still signed by the old key %s", kid(t, old))
	}
	var set pass.JWKS
	ts.do(http.MethodGet, "/queue/keys", nil).json(t, &set)
	if len(set.Keys) != 2 {
		t.Errorf("GET /queue/keys after rotation: %d keys, want the old and the new", len(set.Keys))
	}
	wantCode(t, "a pass of the old key", ts.do(http.MethodPost, "/holds", orderBody(ev, email), pass.Header, old), http.StatusCreated, "")
	wantCode(t, "a pass of the new key", ts.do(http.MethodPost, "/holds", orderBody(ev, email), pass.Header, fresh), http.StatusCreated, "")

	var errs bytes.Buffer
	if err := run(context.Background(), []string{"pass-keys", "rotate", "--database-url", ts.cfg.DatabaseURL, "--grace", "-1s"},
		func(string) string { return "" }, &out, &errs); err == nil {
		t.Error("pass-keys rotate took a negative grace")
	}
}

// A rotation never retires keys before the passes they signed expire: its
// grace is raised to the longest pass_ttl of an event, unless forced.
func TestAPassKeyRotationOutlastsTheLongestPass(t *testing.T) {
	t.Parallel()
	ts := newServerWithoutRedis(t)
	ev := ts.newEvent(10, true)
	if _, err := ts.db().ExecContext(context.Background(), `UPDATE events SET queue_admit_per_second = 50, queue_pass_ttl_seconds = 86400 WHERE id = $1`, ev); err != nil {
		t.Fatal(err)
	}
	retires := func() time.Duration {
		t.Helper()
		var secs float64
		if err := ts.db().QueryRowContext(context.Background(), `SELECT extract(epoch FROM max(retired_at) - now()) FROM pass_keys WHERE retired_at IS NOT NULL`).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		return time.Duration(secs * float64(time.Second))
	}
	rotate := func(args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"pass-keys", "rotate", "--database-url", ts.cfg.DatabaseURL, "--publish", "0s"}, args...)
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("pass-keys rotate: %v\n%s", err, errOut.String())
		}
	}
	rotate("--grace", "1h")
	if d := retires(); d < 23*time.Hour {
		t.Fatalf("with a pass_ttl of 24 h the old key retires in %s", d.Round(time.Minute))
	}
	// After a leak: forced, the old keys go in a minute.
	rotate("--grace", "1m", "--force")
	if d := retires(); d > 2*time.Minute {
		t.Fatalf("forced to a minute, the old keys retire in %s", d.Round(time.Minute))
	}
}

func kid(t *testing.T, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	raw, err := jwt.NewParser().DecodeSegment(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestManyBuyersWithAndWithoutPasses hammers a queued event with buyers,
// half of them admitted, from many goroutines while the key is rotated
// under them, with Redis up and down: only buyers with a pass get tickets,
// every booking of the event records its place, nothing oversells, and
// each used pass takes no more holds.
func TestManyBuyersWithAndWithoutPasses(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, nil, func(t *testing.T, ts *testServer, _ bool) {
		const buyers, tickets = 60, 40
		ev := ts.newEvent(tickets, true)
		ts.queue(ev)
		passes := make([]string, buyers)
		for i := range buyers {
			if i%2 == 0 {
				passes[i] = ts.pass(ev, fmt.Sprintf("place-%d", i), fmt.Sprintf("b%d@example.com", i), time.Minute)
			}
		}
		stop := make(chan struct{})
		var rotations sync.WaitGroup
		rotations.Add(1)
		go func() {
			defer rotations.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := pass.Rotate(context.Background(), ts.app.store, 0, time.Hour); err != nil {
					t.Errorf("rotate: %v", err)
					return
				}
				if err := ts.app.passes.Refresh(context.Background()); err != nil {
					t.Errorf("refresh: %v", err)
					return
				}
			}
		}()
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[string]int{}
		for i := range buyers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				email := fmt.Sprintf("b%d@example.com", i)
				var header []string
				if passes[i] != "" {
					header = []string{pass.Header, passes[i]}
				}
				for range 2 {
					res := ts.do(http.MethodPost, "/holds", orderBody(ev, email), header...)
					code := res.code()
					if res.Status == http.StatusCreated {
						code = "created"
						var h struct {
							ID string `json:"id"`
						}
						_ = json.Unmarshal(res.Body, &h)
						ts.do(http.MethodPost, "/holds/"+h.ID+"/confirm", nil)
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
					if passes[i] == "" && res.Status != http.StatusForbidden {
						t.Errorf("buyer %d without a pass: %d %s", i, res.Status, res.Body)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		rotations.Wait()
		// 30 buyers with a pass, each confirming its first hold: 30
		// tickets, and each second try is pass_used.
		if codes["created"] != buyers/2 || codes["pass_used"] != buyers/2 || codes["queue_required"] != buyers {
			t.Errorf("answers %v, want %d created, %d pass_used, %d queue_required", codes, buyers/2, buyers/2, buyers)
		}
		var unplaced, places int
		if err := ts.db().QueryRowContext(context.Background(), `SELECT count(*) FILTER (WHERE queue_place IS NULL),
			count(DISTINCT queue_place) FROM bookings WHERE event_id = $1`, ev).Scan(&unplaced, &places); err != nil {
			t.Fatal(err)
		}
		if unplaced != 0 || places != buyers/2 {
			t.Errorf("%d bookings without a place and %d places, want 0 and %d", unplaced, places, buyers/2)
		}
		if got := ts.available(ev); got != tickets-buyers/2 {
			t.Errorf("%d tickets left, want %d", got, tickets-buyers/2)
		}
		if out, ok := ts.check(ev); !ok {
			t.Errorf("holdfast check:\n%s", out)
		}
	})
}
