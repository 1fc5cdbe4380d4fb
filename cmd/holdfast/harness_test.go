package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jmoiron/sqlx"

	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/internal/testenv"
)

func TestMain(m *testing.M) {
	registerBodyDecoders()
	testenv.Main(m)
}

// testServer is the real service on a test database and Redis prefix,
// served by httptest. Every answer it gives is checked against the OpenAPI
// document (apiCheck): an undocumented status or a body that does not
// match fails the test that asked.
type testServer struct {
	t   *testing.T
	app *app
	srv *httptest.Server
	cfg config
	log *testenv.LogBuffer
}

// newTestServer starts the service with the test defaults changed by edit.
func newTestServer(t *testing.T, edit func(*config)) *testServer {
	t.Helper()
	cfg := defaultConfig()
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL, cfg.RedisPrefix = testenv.Redis(t)
	cfg.UnsafeDemo = true
	cfg.LogLevel = "debug"
	// Every test request comes from 127.0.0.1; the tests of the
	// per-client cap set it.
	cfg.ClientCap = 0
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.validate(true); err != nil {
		t.Fatalf("test config: %v", err)
	}
	logs := &testenv.LogBuffer{}
	a, err := newApp(context.Background(), cfg, newLogger(logs, cfg.LogLevel))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	routes, ok := a.handler.(chi.Routes)
	if !ok {
		t.Fatalf("the app's handler is a %T, not a chi router", a.handler)
	}
	srv := httptest.NewServer(newAPICheck(t, routes).handler(t, a.handler))
	ts := &testServer{t: t, app: a, srv: srv, cfg: cfg, log: logs}
	t.Cleanup(func() {
		srv.Close()
		a.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return ts
}

func (ts *testServer) db() *sqlx.DB { return ts.app.db }

// response is what a request got back.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON (%v): %s", r.Status, err, r.Body)
	}
}

// errorBody decodes the contract's error body and fails unless it has both
// fields.
func (r response) errorBody(t *testing.T) (msg, code string) {
	t.Helper()
	var body struct {
		Error *string `json:"error"`
		Code  *string `json:"code"`
	}
	r.json(t, &body)
	if body.Error == nil || body.Code == nil || *body.Error == "" || *body.Code == "" {
		t.Fatalf("error body lacks error or code: %s", r.Body)
	}
	return *body.Error, *body.Code
}

var testClient = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 512},
}

// do sends a request; body may be a string (sent as is) or any value
// (sent as JSON). A request with a body says it is application/json unless
// header sets Content-Type; set to "", none is sent. header is name, value
// pairs; a name given twice is sent twice.
func (ts *testServer) do(method, path string, body any, header ...string) response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			ts.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.srv.URL+path, rd)
	if err != nil {
		ts.t.Fatalf("request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	given := map[string]bool{}
	for i := 0; i+1 < len(header); i += 2 {
		// A header named twice is sent twice.
		if given[header[i]] {
			req.Header.Add(header[i], header[i+1])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
		given[header[i]] = true
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Del("Content-Type")
	}
	res, err := testClient.Do(req)
	if err != nil {
		ts.t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: raw}
}

// newEvent inserts an event the way an operator would, with plain SQL.
func (ts *testServer) newEvent(tickets int, guard bool) int64 {
	ts.t.Helper()
	var id int64
	err := ts.db().QueryRowContext(context.Background(), `
		INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price, oversell_guard)
		VALUES ('Test Event', 'made by a test', '2030-01-01T20:00:00Z', $1, $1, 25.50, $2) RETURNING id`,
		tickets, guard).Scan(&id)
	if err != nil {
		ts.t.Fatalf("insert event: %v", err)
	}
	return id
}

func (ts *testServer) available(eventID int64) int {
	ts.t.Helper()
	var n int
	if err := ts.db().GetContext(context.Background(), &n, `SELECT available_tickets FROM events WHERE id = $1`, eventID); err != nil {
		ts.t.Fatalf("read stock: %v", err)
	}
	return n
}

// check runs `holdfast check` for the events against the test database and
// returns its output and whether it passed.
func (ts *testServer) check(events ...int64) (string, bool) {
	ts.t.Helper()
	args := []string{"check", "--database-url", ts.cfg.DatabaseURL}
	for _, id := range events {
		args = append(args, "--event", itoa(id))
	}
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	if err != nil {
		if _, ok := err.(exitError); !ok {
			ts.t.Fatalf("check: %v\n%s", err, errOut.String())
		}
	}
	return out.String(), err == nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func testenvPrivateRedis(t *testing.T) *servers.Redis { return testenv.PrivateRedis(t) }

// withRedisUpAndDown runs f as two parallel subtests, each with a server on
// a Redis of its own: one where Redis is up, one where it was stopped after
// the server started.
func withRedisUpAndDown(t *testing.T, edit func(*config), f func(t *testing.T, ts *testServer, redisUp bool)) {
	for _, redisUp := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_up=%v", redisUp), func(t *testing.T) {
			t.Parallel()
			redis := testenv.PrivateRedis(t)
			ts := newTestServer(t, func(c *config) {
				c.RedisURL = redis.URL()
				if edit != nil {
					edit(c)
				}
			})
			if !redisUp {
				if err := redis.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			f(t, ts, redisUp)
		})
	}
}

// code returns the error code of an error body, or "" if the body is not
// one. Unlike errorBody it never stops the test, so goroutines may call it.
func (r response) code() string {
	var body struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(r.Body, &body)
	return body.Code
}
