package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/holdfast/holdfast/queue"
)

// shownPlace is what the buyer's page shows, read from the page itself.
type shownPlace struct {
	Kind     string `json:"kind"`
	Title    string `json:"title"`
	Position string `json:"position"`
	Ahead    string `json:"ahead"`
	Wait     string `json:"wait"`
	// Refresh is the content of the page's <meta http-equiv="refresh">.
	Refresh     string `json:"refresh"`
	RefreshText string `json:"refresh_text"`
	PassLeft    string `json:"pass_left"`
	Pass        string `json:"pass"`
	// CopyShown: the script ran (it shows the copy button) under the
	// page's policy.
	CopyShown bool   `json:"copy_shown"`
	Loads     int    `json:"loads"`
	Text      string `json:"text"`
}

const readPlacePage = `(() => {
	const text = (id) => { const el = document.getElementById(id); return el ? el.textContent.trim() : ''; };
	const meta = document.querySelector('meta[http-equiv="refresh"]');
	const copy = document.getElementById('copy');
	return {
		kind: document.querySelector('main').dataset.kind,
		title: text('title'),
		position: text('position'),
		ahead: text('ahead'),
		wait: text('wait'),
		refresh: meta ? meta.content : '',
		refresh_text: text('refresh'),
		pass_left: text('pass-left'),
		pass: document.getElementById('pass') ? document.getElementById('pass').value : '',
		copy_shown: !!copy && !copy.hidden,
		loads: performance.getEntriesByType('resource').length,
		text: document.body.innerText,
	};
})()`

// waitPlacePage reads the page until ok accepts what it shows. The test
// never reloads it while it waits: the page's own refresh brings changes.
func waitPlacePage(t *testing.T, ctx context.Context, what string, within time.Duration, ok func(shownPlace) bool) shownPlace {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		// A read that meets the page mid-refresh fails; the next one
		// reads the new page.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := chromedp.Run(rctx, chromedp.Evaluate[shownPlace](readPlacePage))
		cancel()
		if err == nil && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the buyer's page did not show %s within %v; it shows %+v (last read error: %v)", what, within, s, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// joinQueue joins ev's queue as email.
func (ts *testServer) joinQueue(ev int64, email string) placeBody {
	ts.t.Helper()
	res := ts.do("POST", fmt.Sprintf("/events/%d/queue", ev), `{"user_email":"`+email+`"}`)
	var p placeBody
	res.json(ts.t, &p)
	if res.Status != http.StatusCreated {
		ts.t.Fatalf("join as %s: %d %s", email, res.Status, res.Body)
	}
	return p
}

// poll reads a place through the API.
func (ts *testServer) poll(id string) placeBody {
	ts.t.Helper()
	res := ts.do("GET", "/queue/"+id, nil)
	var p placeBody
	res.json(ts.t, &p)
	if res.Status != http.StatusOK {
		ts.t.Fatalf("poll %s: %d %s", id, res.Status, res.Body)
	}
	return p
}

// screenshot saves the page as name in $HOLDFAST_SCREENSHOT_DIR, when set
// (docs/ keeps the ones this test makes).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := browserStep(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	dir := os.Getenv("HOLDFAST_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	if len(png) > 200<<10 {
		t.Fatalf("the screenshot %s is %d KB, over the 200 KB a committed image may take", name, len(png)>>10)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatalf("HOLDFAST_SCREENSHOT_DIR: %v", err)
	}
	t.Logf("screenshot %s: %d KB", name, len(png)>>10)
}

// TestQueuePageInBrowser follows a buyer through the waiting room on the
// buyer's page in a real browser: waiting with the people ahead and the
// page's own refresh, moving up as others leave, then its turn with the
// pass and its time left counting down, the pass (as the page shows it)
// taking a hold, and the place done; and a place that left.
func TestQueuePageInBrowser(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken })
	ev := ts.queuedEvent(1, "")
	ts.nameEvent(ev, "Aurora Tour · Oslo Spektrum")
	const ahead = 250
	var others []placeBody
	for i := range ahead {
		others = append(others, ts.joinQueue(ev, fmt.Sprintf("fan%d@example.com", i)))
	}
	mine := ts.joinQueue(ev, "ada@example.com")
	if mine.Position == nil || *mine.Position != ahead+1 {
		t.Fatalf("joined at %v, want %d", mine.Position, ahead+1)
	}

	ctx := newBrowser(t)
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// A style or script the policy refused is a console error.
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	browserStep(t, ctx, "a phone's width", chromedp.EmulateViewport(560, 400))
	browserStep(t, ctx, "open the page", chromedp.Navigate(ts.srv.URL+"/queue/"+mine.ID+"/page"))

	wantRefresh := strconv.Itoa(*ts.poll(mine.ID).PollAfterSeconds)
	waiting := waitPlacePage(t, ctx, "the place waiting", 10*time.Second, func(s shownPlace) bool { return s.Kind == "waiting" })
	if waiting.Position != "#251" || waiting.Ahead != "250 people" || waiting.Wait != "about 5 minutes" {
		t.Errorf("waiting: position %q, ahead %q, wait %q; want #251, 250 people, about 5 minutes at 1 a second", waiting.Position, waiting.Ahead, waiting.Wait)
	}
	if waiting.Refresh != wantRefresh || waiting.RefreshText != "This page refreshes itself every "+wantRefresh+" s." {
		t.Errorf("waiting: refresh %q (%q), want poll_after_seconds %s", waiting.Refresh, waiting.RefreshText, wantRefresh)
	}
	if !strings.Contains(waiting.Text, "Aurora Tour · Oslo Spektrum") {
		t.Errorf("waiting: no event name in %q", waiting.Text)
	}
	if waiting.Loads != 0 {
		t.Errorf("the page loaded %d resources, want none", waiting.Loads)
	}
	screenshot(t, ctx, "queue-page-waiting.png")

	// All but one of the others leave; then the last one, and the page
	// follows on its own refresh (a second, so near the front).
	for _, p := range others[1:] {
		if res := ts.do("DELETE", "/queue/"+p.ID, nil); res.Status != http.StatusOK {
			t.Fatalf("leave: %d %s", res.Status, res.Body)
		}
	}
	browserStep(t, ctx, "reload", chromedp.Reload())
	second := waitPlacePage(t, ctx, "the place second in line", 10*time.Second, func(s shownPlace) bool { return s.Position == "#2" })
	if second.Ahead != "1 person" || second.Refresh != "1" || second.Wait != "under a minute" {
		t.Errorf("second in line: ahead %q, wait %q, refresh %q; want 1 person, under a minute, 1", second.Ahead, second.Wait, second.Refresh)
	}
	left := others[0]
	if res := ts.do("DELETE", "/queue/"+left.ID, nil); res.Status != http.StatusOK {
		t.Fatalf("leave: %d %s", res.Status, res.Body)
	}
	front := waitPlacePage(t, ctx, "the place first in line, by its own refresh", 5*time.Second, func(s shownPlace) bool { return s.Position == "#1" })
	if front.Ahead != "nobody" {
		t.Errorf("first in line: ahead %q, want nobody", front.Ahead)
	}

	// Admission, one a second: the page shows the turn within its refresh.
	deadline := time.Now().Add(10 * time.Second)
	for ts.poll(mine.ID).Status != string(queue.StatusAdmitted) {
		if time.Now().After(deadline) {
			t.Fatalf("not admitted within 10s: %+v", ts.poll(mine.ID))
		}
		ts.app.admitter.Run(context.Background())
		time.Sleep(100 * time.Millisecond)
	}
	admitted := ts.poll(mine.ID)
	turn := waitPlacePage(t, ctx, "the turn", 10*time.Second, func(s shownPlace) bool { return s.Kind == "admitted" })
	if turn.Title != "It's your turn" || admitted.Pass == nil || turn.Pass != *admitted.Pass || !turn.CopyShown {
		t.Fatalf("the turn: title %q, pass %q (copy button %v); want the API's pass %v", turn.Title, turn.Pass, turn.CopyShown, admitted.Pass)
	}
	left0, ok := minutesSeconds(turn.PassLeft)
	if !ok || left0 <= 9*60 || left0 > 10*60 {
		t.Errorf("a fresh pass shows %q left, want just under the 10m default", turn.PassLeft)
	}
	if turn.Refresh != "30" {
		t.Errorf("the turn refreshes every %q s, want 30 (poll_after_seconds)", turn.Refresh)
	}
	ticked := waitPlacePage(t, ctx, "the time left counting down", 10*time.Second, func(s shownPlace) bool {
		n, ok := minutesSeconds(s.PassLeft)
		return ok && n <= left0-2
	})
	screenshot(t, ctx, "queue-page-turn.png")
	t.Logf("the pass shows %s left", ticked.PassLeft)

	// The pass as the page shows it takes a hold; confirmed, the place is
	// done.
	res := ts.do("POST", "/holds", order(ev, "ada@example.com", 2), "Queue-Pass", turn.Pass)
	var h holdBody
	res.json(t, &h)
	if res.Status != http.StatusCreated {
		t.Fatalf("hold with the page's pass: %d %s", res.Status, res.Body)
	}
	ts.confirm(h.ID)
	browserStep(t, ctx, "reload", chromedp.Reload())
	done := waitPlacePage(t, ctx, "the place done", 10*time.Second, func(s shownPlace) bool { return s.Kind == "done" })
	if done.Refresh != "" || strings.Contains(done.Text, turn.Pass) {
		t.Errorf("done: refresh %q, or the pass still shown", done.Refresh)
	}

	// The last tickets go: a place still waiting reads sold out on its
	// page, which stops refreshing (a sold-out crowd must not keep
	// polling) and says a reload finds the place again if tickets come
	// back.
	late := ts.joinQueue(ev, "late@example.com")
	if res := ts.do("PATCH", fmt.Sprintf("/admin/events/%d", ev), `{"total_tickets":2}`, "Authorization", "Bearer "+testToken); res.Status != http.StatusOK {
		t.Fatalf("shrink the event to what is sold: %d %s", res.Status, res.Body)
	}
	ts.app.admitter.Run(context.Background())
	browserStep(t, ctx, "open a place of a sold-out event", chromedp.Navigate(ts.srv.URL+"/queue/"+late.ID+"/page"))
	sold := waitPlacePage(t, ctx, "the place sold out", 10*time.Second, func(s shownPlace) bool { return s.Kind == "sold_out" })
	if sold.Title != "Sold out" || sold.Position != "" || sold.Refresh != "" || !strings.Contains(sold.Text, "Every ticket is sold.") || !strings.Contains(sold.Text, "reload this page") {
		t.Errorf("sold out: title %q, position %q, refresh %q, text %q; want Sold out, no position, no refresh, the reload note", sold.Title, sold.Position, sold.Refresh, sold.Text)
	}
	screenshot(t, ctx, "queue-page-sold-out.png")
	noSecrets(t, "a sold-out place's page", sold.Text)

	browserStep(t, ctx, "open a left place", chromedp.Navigate(ts.srv.URL+"/queue/"+left.ID+"/page"))
	gone := waitPlacePage(t, ctx, "the place left", 10*time.Second, func(s shownPlace) bool { return s.Kind == "left" })
	if gone.Title != "You left the line" || gone.Refresh != "" {
		t.Errorf("left: title %q, refresh %q; want no refresh", gone.Title, gone.Refresh)
	}
	noSecrets(t, "a left place's page", gone.Text)

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(problems, "\n"))
	}
}

// TestQueuePageAnswers checks the page's statuses and headers over HTTP;
// the harness checks each against the OpenAPI document.
func TestQueuePageAnswers(t *testing.T) {
	t.Parallel()
	redis := testenvPrivateRedis(t)
	ts := newTestServer(t, func(c *config) { c.AdminToken = testToken; c.RedisURL = redis.URL() })
	ev := ts.queuedEvent(10, "")
	p := ts.joinQueue(ev, "ada@example.com")
	unknown, _ := queue.NewPlaceID(ev)
	html := func(what, path string, status int, want string) response {
		t.Helper()
		res := ts.do("GET", path, nil)
		if res.Status != status || res.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
			res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") ||
			!strings.Contains(string(res.Body), want) {
			t.Errorf("%s: %d %v\n%s\nwant %d text/html, no-store, a policy, and %q", what, res.Status, res.Header, res.Body, status, want)
		}
		return res
	}
	html("a waiting place", "/queue/"+p.ID+"/page", 200, "#1<")
	html("a malformed id", "/queue/nope/page", 400, "This link is not a place in line")
	html("an unknown place", "/queue/"+unknown+"/page", 404, "No such place in line")
	if err := redis.Stop(); err != nil {
		t.Fatal(err)
	}
	res := html("Redis down", "/queue/"+p.ID+"/page", 503, `<meta http-equiv="refresh" content="1">`)
	if res.Header.Get("Retry-After") != "1" {
		t.Errorf("Redis down: Retry-After %q, want 1", res.Header.Get("Retry-After"))
	}
	// The status page goes on, its queue unavailable, many readers at once.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range ts.feed("").Events {
				if e.ID == ev && (e.Queue == nil || e.Queue.State != "unavailable" || e.Queue.Waiting != nil || e.Queue.AdmitPerSecond != 10) {
					t.Errorf("with Redis down the feed shows the queue as %+v, want unavailable at 10/s, no counts", e.Queue)
				}
			}
		}()
	}
	wg.Wait()
}
