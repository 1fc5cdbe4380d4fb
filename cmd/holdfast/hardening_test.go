package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
)

var methodLabel = regexp.MustCompile(`method="([^"]*)"`)

// requestSeries returns the request-duration series in /metrics and the
// method labels they carry.
func (ts *testServer) requestSeries() (n int, methods map[string]bool) {
	ts.t.Helper()
	methods = map[string]bool{}
	for name := range ts.scrape() {
		if strings.HasPrefix(name, "holdfast_http_request_duration_seconds_count{") {
			n++
			methods[methodLabel.FindStringSubmatch(name)[1]] = true
		}
	}
	return n, methods
}

// No request can create a time series: made-up methods and paths land
// under fixed labels, and the 404 and 405 answers do not echo them back.
func TestMadeUpMethodsAndPathsCreateNoSeries(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ts.do("GET", "/nowhere", nil)
	ts.do("BREW", "/events", nil)
	before, _ := ts.requestSeries()
	for i := 0; i < 100; i++ {
		ts.do(fmt.Sprintf("MADEUP%d", i), fmt.Sprintf("/nowhere/%d", i), nil)
		ts.do("GET", fmt.Sprintf("/nowhere/%d", i), nil)
		ts.do(fmt.Sprintf("X-%d", i), "/events", nil)
		ts.do(fmt.Sprintf("Y%d", i), fmt.Sprintf("/events/%d", i+1), nil)
	}
	after, methods := ts.requestSeries()
	// The loop may add GET /metrics and the routes above under "other";
	// a label per request would add hundreds.
	if after-before > 4 {
		t.Errorf("%d made-up requests added %d series (from %d to %d)", 400, after-before, before, after)
	}
	known := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true, "other": true}
	for m := range methods {
		if !known[m] {
			t.Errorf("method label %q is not from the fixed set", m)
		}
	}

	big := strings.Repeat("M", 1<<20-8192)
	for _, tc := range []struct{ method, path string }{
		{big, "/nowhere"},
		{big, "/events"},
		{"GET", "/" + strings.Repeat("p", 1<<20-8192)},
		{"DELETE", "/events/" + strings.Repeat("9", 1<<20-8192) + "x"},
	} {
		res := ts.do(tc.method, tc.path, nil)
		if res.Status != 404 && res.Status != 405 {
			t.Errorf("a %d-byte method and %d-byte path: status %d, want 404 or 405", len(tc.method), len(tc.path), res.Status)
		}
		if len(res.Body) > 256 {
			t.Errorf("a %d-byte method and %d-byte path: a %d-byte answer echoes the input", len(tc.method), len(tc.path), len(res.Body))
		}
	}
	if after2, _ := ts.requestSeries(); after2-after > 2 {
		t.Errorf("four huge requests added %d series", after2-after)
	}
}

// A route that takes a JSON body refuses any other Content-Type before it
// does anything: a browser's "simple" cross-site form post cannot take a
// hold, even one whose form field reads as valid JSON.
func TestABodyThatIsNotJSONIs415(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.newEvent(10, true)
	// What a text/plain form with the field name `{"event_id":N,...,"user_email":"a`
	// and the value `b@example.com"}` sends: a valid order.
	formJSON := fmt.Sprintf(`{"event_id":%d,"quantity":1,"user_email":"a=b@example.com"}`, ev)
	admin := `{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`
	auth := "Bearer " + testToken
	routes := []struct{ method, path, body string }{
		{"POST", "/holds", formJSON},
		{"POST", "/book/safe", formJSON},
		{"POST", "/book/unsafe", formJSON},
		{"POST", "/admin/events", admin},
		{"PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"name":"renamed"}`},
	}
	for _, rt := range routes {
		for _, ct := range []string{"", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
			"multipart/form-data; boundary=x", "text/json", "application/jsonp", "application/json+x", "application/json; charset=latin1", "application/json;;"} {
			res := ts.do(rt.method, rt.path, rt.body, "Content-Type", ct, "Authorization", auth)
			expectError(t, fmt.Sprintf("%s %s as %q", rt.method, rt.path, ct), res, http.StatusUnsupportedMediaType, "unsupported_media_type")
		}
	}
	if got := ts.available(ev); got != 10 {
		t.Fatalf("stock = %d after the refused posts, want 10", got)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;charset=\"UTF-8\""} {
		if res := ts.do("POST", "/holds", order(ev, "ct@example.com", 1), "Content-Type", ct); res.Status != 201 {
			t.Errorf("POST /holds as %q: %d %s", ct, res.Status, res.Body)
		}
	}
	// Routes without a body take none, whatever Content-Type says.
	h := ts.mustHold(ev, 1)
	if res := ts.do("POST", "/holds/"+h.ID+"/confirm", nil, "Content-Type", "text/plain"); res.Status != 200 {
		t.Fatalf("confirm: %d %s", res.Status, res.Body)
	}
	h = ts.mustHold(ev, 1)
	if res := ts.do("DELETE", "/holds/"+h.ID, nil, "Content-Type", ""); res.Status != 200 {
		t.Fatalf("release: %d %s", res.Status, res.Body)
	}
}

// waitForWindowStart sleeps until just after the start of the next Unix
// second, so that a burst of requests lands in one rate-limit window.
func waitForWindowStart() time.Time {
	now := time.Now()
	next := now.Truncate(time.Second).Add(time.Second + 20*time.Millisecond)
	time.Sleep(next.Sub(now))
	return time.Now()
}

// inOneWindow runs burst until it runs within one Unix second (a loaded
// machine may push it over the edge), at most five times, and fails the
// test with burst's error from a run that did.
func inOneWindow(t *testing.T, burst func() error) {
	t.Helper()
	for try := 0; try < 5; try++ {
		start := waitForWindowStart()
		err := burst()
		if time.Now().Unix() == start.Unix() {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Logf("the burst straddled a second (%v); again", err)
	}
	t.Fatal("no burst ran within one second in five tries")
}

// startServe runs serve, the real listener and http.Server, on a free port
// until the test ends, and returns its address.
func startServe(t *testing.T, edit func(*config)) string {
	t.Helper()
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = testenv.DatabaseURL(t)
	cfg.RedisURL, cfg.RedisPrefix = testenv.Redis(t)
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.validate(true); err != nil {
		t.Fatalf("test config: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	logs := &testenv.LogBuffer{}
	go func() { done <- serve(ctx, cfg, newLogger(logs, "debug"), func(a string) { addrc <- a }) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	select {
	case addr := <-addrc:
		return addr
	case err := <-done:
		t.Fatalf("serve: %v", err)
		return ""
	}
}

// keepAlive is one raw client connection that sends requests one at a time.
type keepAlive struct {
	net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{Conn: c, r: bufio.NewReader(c)}
}

// get sends GET path and waits up to wait for the answer's status.
func (k *keepAlive) get(path string, wait time.Duration) (int, error) {
	if _, err := fmt.Fprintf(k, "GET %s HTTP/1.1\r\nHost: holdfast\r\n\r\n", path); err != nil {
		return 0, err
	}
	return k.read(wait)
}

func (k *keepAlive) read(wait time.Duration) (int, error) {
	_ = k.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(k.r, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// While --max-connections connections are open, one more is not served;
// once one closes, it is.
func TestConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	addr := startServe(t, func(c *config) { c.MaxConns = 3 })
	var open []*keepAlive
	for i := 0; i < 3; i++ {
		k := dialKeepAlive(t, addr)
		if st, err := k.get("/health", 5*time.Second); err != nil || st != 200 {
			t.Fatalf("connection %d: %d %v", i+1, st, err)
		}
		open = append(open, k)
	}
	extra := dialKeepAlive(t, addr)
	if st, err := extra.get("/health", 700*time.Millisecond); err == nil {
		t.Fatalf("a fourth connection was served (%d) while three were open", st)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("a fourth connection: %v, want no answer yet", err)
	}
	open[0].Close()
	if st, err := extra.read(5 * time.Second); err != nil || st != 200 {
		t.Fatalf("the fourth connection once one closed: %d %v", st, err)
	}
	// The others stay served.
	if st, err := open[1].get("/health", 5*time.Second); err != nil || st != 200 {
		t.Fatalf("an open connection: %d %v", st, err)
	}
}

// An idle keep-alive connection is closed after the idle timeout.
func TestIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	addr := startServe(t, func(c *config) { c.IdleTimeout = 300 * time.Millisecond })
	k := dialKeepAlive(t, addr)
	if st, err := k.get("/health", 5*time.Second); err != nil || st != 200 {
		t.Fatalf("first request: %d %v", st, err)
	}
	start := time.Now()
	_ = k.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := k.r.Read(make([]byte, 1))
	if err != io.EOF || time.Since(start) > 3*time.Second {
		t.Fatalf("idle connection: read %d, %v after %s, want it closed by the server after 300ms", n, err, time.Since(start))
	}
	if def := defaultConfig().IdleTimeout; def != 30*time.Second {
		t.Fatalf("default idle timeout %s, want 30s", def)
	}
}

// An Idempotency-Key that is blank or given twice is refused, not taken as
// no key: the client meant one and would get a second effect on a retry.
func TestABlankOrRepeatedIdempotencyKeyIsA400(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ev := ts.newEvent(10, true)
	h := ts.mustHold(ev, 1)
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"blank", []string{"Idempotency-Key", "   "}},
		{"empty", []string{"Idempotency-Key", ""}},
		{"tab", []string{"Idempotency-Key", "\t"}},
		{"twice", []string{"Idempotency-Key", "k1", "Idempotency-Key", "k2"}},
		{"twice the same", []string{"Idempotency-Key", "k1", "Idempotency-Key", "k1"}},
	} {
		for _, path := range []string{"/holds", "/book/safe"} {
			expectError(t, tc.name+" on "+path, ts.do("POST", path, order(ev, "k@example.com", 1), tc.header...), 400, "invalid_request")
		}
		expectError(t, tc.name+" on confirm", ts.do("POST", "/holds/"+h.ID+"/confirm", nil, tc.header...), 400, "invalid_request")
	}
	if got := ts.available(ev); got != 9 {
		t.Fatalf("stock = %d, want 9 (only the first hold)", got)
	}
	var got holdBody
	ts.do("GET", "/holds/"+h.ID, nil).json(t, &got)
	if got.Status != "pending" {
		t.Fatalf("hold %s after refused confirms, want pending", got.Status)
	}
}

// A query that does not parse is refused, not read as if the bad part were
// absent.
func TestAMalformedEventsQueryIsA400(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	ts.newEvent(1, true)
	for _, q := range []string{"after=1;x", "limit=1;x", "after=1&after=2", "limit=1&limit=2", "after=", "limit=",
		"after=%zz", "after=+1", "after=1x", "limit=-1", "after=-1", "limit=01x"} {
		expectError(t, "/events?"+q, ts.do("GET", "/events?"+q, nil), 400, "invalid_request")
	}
	for _, q := range []string{"", "after=0", "limit=1", "limit=500&after=1", "other=x"} {
		if res := ts.do("GET", "/events?"+q, nil); res.Status != 200 {
			t.Errorf("/events?%s: %d %s", q, res.Status, res.Body)
		}
	}
}

// Every list endpoint reads its paging parameters the same way: one value
// of digits in range, from a query that parses.
func TestEveryListRefusesTheSameMalformedPaging(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, webhookConfig)
	ts.newEvent(1, true)
	hook := ts.register(newReceiver(t, nil).srv.URL)
	lists := map[string][]string{
		"/status.json":   {"limit", "offset"},
		"/admin/changes": {"limit", "after"},
		fmt.Sprintf("/admin/webhooks/%d/deliveries", hook.ID): {"limit"},
	}
	for path, params := range lists {
		for _, p := range params {
			for _, v := range []string{p + "=1;x", p + "=1&" + p + "=2", p + "=", p + "=+1", p + "=-1", p + "=1x", p + "=%zz", p + "=99999999999999999999"} {
				expectError(t, path+"?"+v, ts.do("GET", path+"?"+v, nil, adminAuth...), 400, "invalid_request")
			}
			if res := ts.do("GET", path+"?"+p+"=1", nil, adminAuth...); res.Status != 200 {
				t.Errorf("%s?%s=1: %d %s", path, p, res.Status, res.Body)
			}
		}
	}
}

// Control characters in an event's name or description would reach a
// terminal through `holdfast check` and logs: refused. A description may
// hold line breaks and tabs.
func TestAdminRefusesControlCharacters(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	auth := []string{"Authorization", "Bearer " + testToken}
	create := func(name, desc string) response {
		b, _ := json.Marshal(map[string]any{"name": name, "description": desc, "event_date": "2027-07-01T18:00:00Z",
			"total_tickets": 10, "ticket_price": "1.00"})
		return ts.do("POST", "/admin/events", string(b), auth...)
	}
	for _, bad := range []string{"a\x1b[2Jb", "bell\a", "line\nbreak", "tab\there", "c\rr", "del\x7f", "n\u0085el", "csi\u009b31m"} {
		expectError(t, fmt.Sprintf("name %q", bad), create(bad, ""), 400, "invalid_request")
		expectError(t, fmt.Sprintf("description %q", bad), create("ok", bad+"\x1b"), 400, "invalid_request")
	}
	res := create("Night Market ✨", "Stalls\n\tand music")
	var ev struct {
		ID          int64  `json:"id"`
		Description string `json:"description"`
	}
	res.json(t, &ev)
	if res.Status != 201 || ev.Description != "Stalls\n\tand music" {
		t.Fatalf("a description with a line break and a tab: %d %s", res.Status, res.Body)
	}
	expectError(t, "patch name", ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev.ID), `{"name":"x\u001by"}`, auth...), 400, "invalid_request")
}

// With --rate-limit 5, exactly five writes pass in one second and the
// sixth is refused: a limit at twice its rate would let ten through.
func TestRateLimitIsExact(t *testing.T) {
	t.Parallel()
	withRedisUpAndDown(t, func(c *config) { c.RateLimit = 5 }, func(t *testing.T, ts *testServer, _ bool) {
		ev := ts.newEvent(100, true)
		n := 0
		inOneWindow(t, func() error {
			var got []int
			for i := 0; i < 7; i++ {
				n++
				got = append(got, ts.do("POST", "/holds", order(ev, fmt.Sprintf("x%d@example.com", n), 1)).Status)
			}
			want := []int{201, 201, 201, 201, 201, 429, 429}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("seven writes in one second: %v, want %v", got, want)
			}
			return nil
		})
	})
}

// Wrong or missing admin tokens are limited per client address even with
// --rate-limit off, and logged without the token; over the limit even the
// right token is refused, so the answers cannot tell a brute force which
// guess was right.
func TestAdminFailuresAreLimitedAndLogged(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	body := `{"name":"x","event_date":"2027-07-01T18:00:00Z","total_tickets":10,"ticket_price":"1.00"}`
	guess := func(i int) []string {
		if i%3 == 0 {
			return nil // no token at all
		}
		return []string{"Authorization", fmt.Sprintf("Bearer guess-%d-secret-xxxxxxxx", i)}
	}
	inOneWindow(t, func() error {
		for i := 0; i < adminFailuresPerSecond; i++ {
			if res := ts.do("POST", "/admin/events", body, guess(i)...); res.Status != 401 {
				return fmt.Errorf("failure %d: %d %s, want 401", i+1, res.Status, res.Body)
			}
		}
		res := ts.do("POST", "/admin/events", body, guess(1)...)
		if res.Status != 429 || res.code() != "busy" || res.Header.Get("Retry-After") == "" {
			return fmt.Errorf("failure %d: %d %s, want 429 busy with Retry-After", adminFailuresPerSecond+1, res.Status, res.Body)
		}
		if res := ts.do("POST", "/admin/events", body, "Authorization", "Bearer "+testToken); res.Status != 429 {
			return fmt.Errorf("the right token over the limit: %d, want 429", res.Status)
		}
		return nil
	})
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	if res := ts.do("POST", "/admin/events", body, "Authorization", "Bearer "+testToken); res.Status != 201 {
		t.Fatalf("the right token the next second: %d %s", res.Status, res.Body)
	}
	logs := ts.log.String()
	if strings.Contains(logs, "guess-") {
		t.Errorf("the log holds a token sent:\n%s", logs)
	}
	var failures int
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "admin") && strings.Contains(line, "client=127.0.0.1") {
			failures++
		}
	}
	if failures < adminFailuresPerSecond {
		t.Errorf("%d warnings with the client address, want one per failure:\n%s", failures, logs)
	}
}

// A client that used up its failures this second, then a burst of
// guesses at once, some right: none is judged, so none gets in. The limit
// counted a failure after judging it, so every guess of a burst that came
// in before the first failure over the limit was counted was judged (up
// to 182 in a second against 10), and a right one among them got in.
func TestABurstOfGuessesPastTheLimitIsNotJudged(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.newEvent(10, true)
	// Connections of their own, opened before the burst, so the guesses
	// land together.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	defer client.CloseIdleConnections()
	patch := func(token string) int {
		req, _ := http.NewRequest("PATCH", fmt.Sprintf("%s/admin/events/%d", ts.srv.URL, ev), strings.NewReader(`{"name":"y"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := client.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	inOneWindow(t, func() error {
		for i := 0; i < adminFailuresPerSecond; i++ {
			if st := patch(fmt.Sprintf("guess-%d-secret-xxxxxxxx", i)); st != 401 {
				return fmt.Errorf("failure %d: %d, want 401", i+1, st)
			}
		}
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg, warm sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < 100; i++ {
			wg.Add(1)
			warm.Add(1)
			go func() {
				defer wg.Done()
				if res, err := client.Get(ts.srv.URL + "/health"); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				warm.Done()
				token := fmt.Sprintf("guess-x%d-secret-xxxxxxxx", i)
				if i%2 == 1 {
					token = testToken
				}
				<-start
				st := patch(token)
				mu.Lock()
				statuses[st]++
				mu.Unlock()
			}()
		}
		warm.Wait()
		close(start)
		wg.Wait()
		if statuses[429] != 100 {
			return fmt.Errorf("a burst of 100 guesses, half right, after %d failures: %v; want all 429, none judged", adminFailuresPerSecond, statuses)
		}
		return nil
	})
}

// With --rate-limit on, an admin failure counts as a hit against it.
func TestAdminFailuresCountAgainstTheRateLimit(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) {
		c.AdminToken = testToken
		c.RateLimit = 3
	})
	ev := ts.newEvent(10, true)
	inOneWindow(t, func() error {
		for i := 0; i < 3; i++ {
			if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"name":"y"}`, "Authorization", "Bearer nope"); res.Status != 401 {
				return fmt.Errorf("failure %d: %d, want 401", i+1, res.Status)
			}
		}
		if res := ts.do("POST", "/holds", order(ev, "a@example.com", 1)); res.Status != 429 {
			return fmt.Errorf("a write after three failures at --rate-limit 3: %d, want 429", res.Status)
		}
		return nil
	})
}

// The Bearer scheme is case-insensitive (RFC 7235); the token is not, and
// must match whole.
func TestAdminTokenScheme(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.newEvent(10, true)
	patch := func(auth string) int {
		return ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"name":"y"}`, "Authorization", auth).Status
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER " + testToken, "bEaReR " + testToken, "Bearer   " + testToken} {
		if st := patch(auth); st != 200 {
			t.Errorf("%q: %d, want 200", auth, st)
		}
	}
	for _, auth := range []string{"Basic " + testToken, "Bearer" + testToken, "Bearer " + testToken[:len(testToken)-1],
		"Bearer " + testToken + "x", "Bearer " + strings.ToUpper(testToken), "Bearer", "Bearer ", testToken, "Bearer " + testToken + " x"} {
		if st := patch(auth); st != 401 {
			t.Errorf("%q: %d, want 401", auth, st)
		}
	}
}
