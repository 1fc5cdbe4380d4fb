package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// statusFeed is the body of GET /status.json.
type statusFeed struct {
	GeneratedAt string `json:"generated_at"`
	Events      []struct {
		ID        int64  `json:"id"`
		Name      string `json:"name"`
		Total     int    `json:"total_tickets"`
		Available int    `json:"available_tickets"`
		Held      int    `json:"held_tickets"`
		Confirmed int    `json:"confirmed_tickets"`
		Queue     *struct {
			State             string   `json:"state"`
			Waiting           *int64   `json:"waiting"`
			Admitted          *int64   `json:"admitted"`
			AdmitPerSecond    int      `json:"admit_per_second"`
			AdmittedPerSecond *float64 `json:"admitted_per_second"`
		} `json:"queue"`
	} `json:"events"`
	Holds []struct {
		Tag         string `json:"tag"`
		EventID     int64  `json:"event_id"`
		Quantity    int    `json:"quantity"`
		Status      string `json:"status"`
		CreatedAt   string `json:"created_at"`
		ExpiresAt   string `json:"expires_at"`
		SecondsLeft int    `json:"seconds_left"`
	} `json:"holds"`
}

// nameEvent gives a test event a name to show on the page.
func (ts *testServer) nameEvent(id int64, name string) {
	ts.t.Helper()
	if _, err := ts.db().ExecContext(context.Background(), `UPDATE events SET name = $2 WHERE id = $1`, id, name); err != nil {
		ts.t.Fatalf("name event: %v", err)
	}
}

// confirm confirms a hold through the API and fails the test unless it is.
func (ts *testServer) confirm(id string) {
	ts.t.Helper()
	if res := ts.do("POST", "/holds/"+id+"/confirm", nil); res.Status != http.StatusOK {
		ts.t.Fatalf("confirm %s: %d %s", id, res.Status, res.Body)
	}
}

// release releases a hold through the API and fails the test unless it is.
func (ts *testServer) release(id string) {
	ts.t.Helper()
	if res := ts.do("DELETE", "/holds/"+id, nil); res.Status != http.StatusOK {
		ts.t.Fatalf("release %s: %d %s", id, res.Status, res.Body)
	}
}

// feed reads GET /status.json with query.
func (ts *testServer) feed(query string) statusFeed {
	ts.t.Helper()
	res := ts.do("GET", "/status.json"+query, nil)
	if res.Status != http.StatusOK {
		ts.t.Fatalf("GET /status.json%s: %d %s", query, res.Status, res.Body)
	}
	var f statusFeed
	res.json(ts.t, &f)
	return f
}

// noSecrets fails the test if text holds a buyer's email or a hold's id.
func noSecrets(t *testing.T, what, text string, holds ...holdBody) {
	t.Helper()
	if strings.Contains(text, "@example.com") {
		t.Errorf("%s shows a buyer's email", what)
	}
	for _, h := range holds {
		if strings.Contains(text, h.ID) || strings.Contains(text, strings.ReplaceAll(h.ID, "-", "")) {
			t.Errorf("%s shows hold id %s", what, h.ID)
		}
	}
}

// TestStatusPageFeed checks the feed against the store: busiest first,
// paged, the API's statuses, and nothing a watcher must not see.
func TestStatusPageFeed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, nil)
	quiet := ts.newEvent(10, true)
	busy := ts.newEvent(30, true)
	some := ts.newEvent(20, true)

	confirmed := ts.mustHold(busy, 4)
	ts.confirm(confirmed.ID)
	pending := ts.mustHold(busy, 3)
	released := ts.mustHold(some, 2)
	ts.release(released.ID)
	lapsed := ts.mustHold(some, 1)
	ts.lapse(lapsed.ID) // pending past its expiry: reads expired, held until swept
	all := []holdBody{confirmed, pending, released, lapsed}

	res := ts.do("GET", "/status.json?limit=2", nil)
	noSecrets(t, "the feed", string(res.Body), all...)
	var f statusFeed
	res.json(t, &f)
	if _, err := time.Parse(time.RFC3339, f.GeneratedAt); err != nil || !strings.HasSuffix(f.GeneratedAt, "Z") {
		t.Errorf("generated_at = %q (%v), want RFC 3339 in UTC", f.GeneratedAt, err)
	}
	type counts struct {
		ID                                int64
		Total, Available, Held, Confirmed int
	}
	var got []counts
	for _, e := range f.Events {
		got = append(got, counts{e.ID, e.Total, e.Available, e.Held, e.Confirmed})
	}
	want := []counts{{busy, 30, 23, 3, 4}, {some, 20, 19, 1, 0}}
	if !slices.Equal(got, want) {
		t.Errorf("first page = %+v, want %+v", got, want)
	}
	for _, e := range f.Events {
		if e.Queue != nil {
			t.Errorf("event %d, without a waiting room, shows a queue %+v", e.ID, e.Queue)
		}
	}
	if next := ts.feed("?limit=2&offset=2"); len(next.Events) != 1 || next.Events[0].ID != quiet || next.Events[0].Available != 10 {
		t.Errorf("second page = %+v, want only event %d, untouched", next.Events, quiet)
	}
	if beyond := ts.feed("?offset=50"); len(beyond.Events) != 0 || len(beyond.Holds) != 4 {
		t.Errorf("past the end: %d events, %d holds; want 0 and the 4 holds", len(beyond.Events), len(beyond.Holds))
	}

	// Newest first, with the API's status and a tag that is not the id.
	wantStatus := []string{"expired", "released", "pending", "confirmed"}
	if len(f.Holds) != len(wantStatus) {
		t.Fatalf("%d holds, want %d", len(f.Holds), len(wantStatus))
	}
	tags := map[string]bool{}
	for i, h := range f.Holds {
		src := all[len(all)-1-i]
		if h.Status != wantStatus[i] || h.EventID != src.EventID || h.Quantity != src.Quantity || h.CreatedAt == "" || h.ExpiresAt == "" {
			t.Errorf("hold %d = %+v, want status %s of event %d, quantity %d", i, h, wantStatus[i], src.EventID, src.Quantity)
		}
		if len(h.Tag) != 6 || strings.Trim(h.Tag, "0123456789abcdef") != "" || strings.HasPrefix(src.ID, h.Tag) || tags[h.Tag] {
			t.Errorf("hold %d tag %q: want 6 hex digits, unique, not the start of its id %s", i, h.Tag, src.ID)
		}
		tags[h.Tag] = true
		if wantLeft := h.Status == "pending"; (h.SecondsLeft > 0) != wantLeft || h.SecondsLeft > 600 {
			t.Errorf("hold %d (%s) seconds_left = %d", i, h.Status, h.SecondsLeft)
		}
	}

	expectError(t, "limit 0", ts.do("GET", "/status.json?limit=0", nil), 400, "invalid_request")
	expectError(t, "limit 101", ts.do("GET", "/status.json?limit=101", nil), 400, "invalid_request")
	expectError(t, "negative offset", ts.do("GET", "/status.json?offset=-1", nil), 400, "invalid_request")
	page := ts.do("GET", "/", nil)
	if page.Status != 200 || page.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET /: %d %s", page.Status, page.Header.Get("Content-Type"))
	}
}

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless chromium of the test's own, closed when the
// test ends. It fails the test, never skips it, when chromium is missing.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		found, lookErr := exec.LookPath("chromium")
		if lookErr != nil {
			t.Fatalf("the status page's browser test needs chromium, and there is none at %s or on PATH: run `make deps` (it installs Debian's chromium package)", chromiumPath)
		}
		path = found
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where chromium's sandbox cannot start
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// Containers often have a small /dev/shm; chromium crashes when it
		// fills up.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 860),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for chromium to exit, before its TempDir goes
	})
	// The first Do starts the browser and ties its life to the context it
	// is given, so it gets ctx itself; each step after it has a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// browserStep runs one action with a deadline of its own.
func browserStep[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shownEvent is what the page shows for one event.
type shownEvent struct {
	ID        int64 `json:"id"`
	Confirmed int   `json:"confirmed"`
	Held      int   `json:"held"`
	Available int   `json:"available"`
	Total     int   `json:"total"`
}

// shownQueue is what the page shows of an event's waiting room.
type shownQueue struct {
	ID       int64  `json:"id"`
	Hidden   bool   `json:"hidden"`
	State    string `json:"state"`
	Waiting  string `json:"waiting"`
	Rate     string `json:"rate"`
	Admitted string `json:"admitted"`
	Text     string `json:"text"`
}

// shownHold is one row of the page's latest holds.
type shownHold struct {
	Tag      string `json:"tag"`
	Event    string `json:"event"`
	Quantity string `json:"quantity"`
	Status   string `json:"status"`
	Left     string `json:"left"`
	// EventNodes counts the elements in the event cell: one, its id.
	EventNodes int `json:"event_nodes"`
}

// shownName is an event's name as the page shows it, and how many
// elements its place holds (none: a name is text).
type shownName struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Title    string `json:"title"`
	Elements int    `json:"elements"`
}

// shown is what the page shows, read from its text.
type shown struct {
	Events []shownEvent `json:"events"`
	Queues []shownQueue `json:"queues"`
	Holds  []shownHold  `json:"holds"`
	Names  []shownName  `json:"names"`
	// Injected counts the elements that only markup in a name can have
	// made: any img, and any b reading "bold".
	Injected int    `json:"injected"`
	Live     string `json:"live"`
	Text     string `json:"text"`
	HTML     string `json:"html"`
}

const readPage = `(() => {
	const num = (el) => Number(el.textContent.replace(/[^0-9-]/g, ''));
	const text = (el, sel) => el.querySelector(sel).textContent.trim();
	return {
		events: [...document.querySelectorAll('#events [data-event-id]')].map((li) => ({
			id: Number(li.dataset.eventId),
			confirmed: num(li.querySelector('.confirmed-count')),
			held: num(li.querySelector('.held-count')),
			available: num(li.querySelector('.available-count')),
			total: num(li.querySelector('.total-count')),
		})),
		queues: [...document.querySelectorAll('#events [data-event-id]')].map((li) => {
			const q = li.querySelector('.queue');
			return {
				id: Number(li.dataset.eventId),
				hidden: q.hidden,
				state: text(q, '.queue-state'),
				waiting: text(q, '.queue-waiting-count'),
				rate: text(q, '.queue-rate-count'),
				admitted: text(q, '.queue-admitted-count'),
				text: q.innerText,
			};
		}),
		holds: [...document.querySelectorAll('#holds-body tr.hold')].map((tr) => ({
			tag: text(tr, '.hold-tag'),
			event: text(tr, '.hold-event'),
			quantity: text(tr, '.hold-qty'),
			status: text(tr, '.hold-status'),
			left: text(tr, '.hold-left'),
			event_nodes: tr.querySelector('.hold-event').children.length,
		})),
		names: [...document.querySelectorAll('#events [data-event-id]')].map((li) => ({
			id: Number(li.dataset.eventId),
			name: li.querySelector('.event-name').textContent,
			title: li.querySelector('.event-name').title,
			elements: li.querySelector('.event-name').children.length,
		})),
		injected: document.querySelectorAll('img').length +
			[...document.querySelectorAll('b')].filter((b) => b.textContent === 'bold').length,
		live: document.getElementById('live').dataset.state,
		text: document.body.innerText,
		html: document.documentElement.outerHTML,
	};
})()`

// waitShown reads the page until ok accepts what it shows, for up to 15s.
func waitShown(t *testing.T, ctx context.Context, what string, ok func(shown) bool) shown {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s := browserStep(t, ctx, "read the page", chromedp.Evaluate[shown](readPage))
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			s.HTML = ""
			t.Fatalf("the page did not show %s within 15s; it shows %+v", what, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func queueShown(s shown, id int64) shownQueue {
	for _, q := range s.Queues {
		if q.ID == id {
			return q
		}
	}
	return shownQueue{}
}

func eventShown(s shown, id int64) (shownEvent, bool) {
	for _, e := range s.Events {
		if e.ID == id {
			return e, true
		}
	}
	return shownEvent{}, false
}

// minutesSeconds reads "m:ss" as seconds.
func minutesSeconds(s string) (int, bool) {
	m, sec, ok := strings.Cut(s, ":")
	mi, err1 := strconv.Atoi(m)
	si, err2 := strconv.Atoi(sec)
	return mi*60 + si, ok && err1 == nil && err2 == nil && len(sec) == 2
}

// TestStatusPageInBrowser loads the page in a real browser, sells through
// the API, and watches the page follow.
func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	// One buyer (mustHold's) takes all the holds here; the per-buyer cap
	// has tests of its own.
	ts := newTestServer(t, func(c *config) { c.TicketCap = 0; c.AdminToken = testToken })
	quiet := ts.newEvent(60, true)
	busy := ts.newEvent(40, true)
	some := ts.newEvent(25, true)
	ts.nameEvent(quiet, "Harbour Lights · Sunday matinee")
	ts.nameEvent(busy, "Aurora Tour · Oslo Spektrum")
	// A sale through the waiting room: places wait, then are admitted at
	// 5 a second by the admitter every instance runs.
	queued := ts.queuedEvent(5, "")
	ts.nameEvent(queued, "Midnight Sun Festival · waiting room")
	var places []placeBody
	for i := range 200 {
		places = append(places, ts.joinQueue(queued, fmt.Sprintf("fan%d@example.com", i)))
	}
	// A name that holds markup must show as typed, as text: page.js
	// writing it with innerHTML would make elements of it (and run the
	// img's onerror).
	const markup = `Night Market <b>bold</b> <img src=x onerror=alert(1)>`
	ts.nameEvent(some, markup)

	ctx := newBrowser(t)
	var (
		consoleMu sync.Mutex
		problems  []string
	)
	// A dialog (the alert of an injected onerror) would stall the page:
	// record it and dismiss it.
	err := chromedp.Listen(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			consoleMu.Lock()
			problems = append(problems, "a "+string(d.Type)+" dialog opened: "+d.Message)
			consoleMu.Unlock()
			go func() { _, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{}) }()
		}
	})
	if err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				consoleMu.Lock()
				problems = append(problems, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	browserStep(t, ctx, "open the page", chromedp.Navigate(ts.srv.URL+"/"))
	before := waitShown(t, ctx, "the four events", func(s shown) bool { return len(s.Events) == 4 && s.Live == "ok" })
	if e, _ := eventShown(before, busy); e != (shownEvent{ID: busy, Available: 40, Total: 40}) {
		t.Fatalf("before any sale the page shows %+v for event %d, want 40 of 40 available", e, busy)
	}
	if ids := []int64{before.Events[0].ID, before.Events[1].ID, before.Events[2].ID, before.Events[3].ID}; !slices.Equal(ids, []int64{quiet, busy, some, queued}) {
		t.Fatalf("before any sale the events are in order %v, want by id %v", ids, []int64{quiet, busy, some, queued})
	}
	for _, id := range []int64{quiet, busy, some} {
		if q := queueShown(before, id); !q.Hidden {
			t.Errorf("event %d, without a waiting room, shows a queue: %+v", id, q)
		}
	}
	if q := queueShown(before, queued); q.Hidden || q.State != "queue open" || q.Waiting != "200" || q.Admitted != "0" {
		t.Fatalf("before admissions the queue shows %+v, want open, 200 waiting, 0 admitted", q)
	}

	// Admissions start: the page shows them, and their pace as measured.
	if err := ts.app.admitter.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ts.app.admitter.Stop(context.Background()) })
	admitting := waitShown(t, ctx, "admissions and their pace", func(s shown) bool {
		q := queueShown(s, queued)
		rate, err := strconv.ParseFloat(strings.TrimSuffix(q.Rate, "/s"), 64)
		return err == nil && rate >= 1 && q.Waiting != "200"
	})
	q := queueShown(admitting, queued)
	if rate, _ := strconv.ParseFloat(strings.TrimSuffix(q.Rate, "/s"), 64); rate > 6 || !strings.Contains(q.Text, "at most 5/s") {
		t.Errorf("the queue shows %+v: want at most the configured 5/s, said", q)
	}
	if len(before.Holds) != 0 || !strings.Contains(before.Text, "No holds yet") {
		t.Fatalf("before any sale the page shows holds: %+v", before.Holds)
	}
	i := slices.IndexFunc(before.Names, func(n shownName) bool { return n.ID == some })
	if i < 0 {
		t.Fatalf("the page shows no name for event %d: %+v", some, before.Names)
	}
	if n := before.Names[i]; n.Name != markup || n.Title != markup || n.Elements != 0 {
		t.Errorf("event %d, named %q, is shown as %q (title %q) with %d elements inside: want the name as typed, as text", some, markup, n.Name, n.Title, n.Elements)
	}
	if before.Injected != 0 {
		t.Errorf("the page has %d img or <b>bold</b> elements that only the markup of a name can have made", before.Injected)
	}
	if !strings.Contains(before.Text, markup) {
		t.Errorf("the page's visible text does not hold the name %q as typed", markup)
	}

	// Sell: two confirmed, one released, one left pending on the busy
	// event; one pending and one that ran out on another.
	h1 := ts.mustHold(busy, 3)
	ts.confirm(h1.ID)
	h2 := ts.mustHold(busy, 2)
	ts.release(h2.ID)
	h3 := ts.mustHold(busy, 5)
	h4 := ts.mustHold(busy, 6)
	ts.confirm(h4.ID)
	h5 := ts.mustHold(some, 4)
	h6 := ts.mustHold(some, 1)
	ts.lapse(h6.ID)
	// A confirm that comes too late expires the hold and gives its ticket back.
	expectError(t, "confirm a lapsed hold", ts.do("POST", "/holds/"+h6.ID+"/confirm", nil), 410, "hold_expired")
	holds := []holdBody{h1, h2, h3, h4, h5, h6}

	after := waitShown(t, ctx, "the sale", func(s shown) bool {
		e, _ := eventShown(s, busy)
		return e == shownEvent{ID: busy, Confirmed: 9, Held: 5, Available: 26, Total: 40} && len(s.Holds) == len(holds)
	})
	if e, _ := eventShown(after, some); e != (shownEvent{ID: some, Held: 4, Available: 21, Total: 25}) {
		t.Errorf("the page shows %+v for event %d, want 4 held and 21 available of 25", e, some)
	}
	if ids := []int64{after.Events[0].ID, after.Events[1].ID, after.Events[2].ID, after.Events[3].ID}; !slices.Equal(ids, []int64{busy, some, quiet, queued}) {
		t.Errorf("events in order %v, want busiest first %v", ids, []int64{busy, some, quiet, queued})
	}

	// The latest holds, newest first: each by a tag, never its id or buyer.
	wantStatus := []string{"expired", "pending", "confirmed", "pending", "released", "confirmed"}
	tags := map[string]bool{}
	for i, row := range after.Holds {
		h := holds[len(holds)-1-i]
		if row.Status != wantStatus[i] || row.Quantity != strconv.Itoa(h.Quantity) || !strings.HasPrefix(row.Event, "#"+itoa(h.EventID)) {
			t.Errorf("hold row %d = %+v, want %s, quantity %d, event #%d", i, row, wantStatus[i], h.Quantity, h.EventID)
		}
		if len(row.Tag) != 6 || strings.Trim(row.Tag, "0123456789abcdef") != "" || row.Tag == h.ID || strings.HasPrefix(h.ID, row.Tag) || tags[row.Tag] {
			t.Errorf("hold row %d tag %q: want 6 hex digits, unique, not its id %s", i, row.Tag, h.ID)
		}
		tags[row.Tag] = true
		if _, ok := minutesSeconds(row.Left); ok != (row.Status == "pending") {
			t.Errorf("hold row %d (%s) time left %q", i, row.Status, row.Left)
		}
	}
	if after.Holds[1].Event != "#"+itoa(some)+" "+markup || after.Holds[1].EventNodes != 1 {
		t.Errorf("hold row 1 names its event %q with %d elements, want the event's name as text after its id", after.Holds[1].Event, after.Holds[1].EventNodes)
	}
	if after.Injected != 0 {
		t.Errorf("after the sale the page has %d img or <b>bold</b> elements that only the markup of a name can have made", after.Injected)
	}
	noSecrets(t, "the page's text", after.Text, holds...)
	noSecrets(t, "the page's HTML", after.HTML, holds...)
	for _, p := range places {
		if strings.Contains(after.HTML, p.ID) || strings.Contains(after.HTML, strings.SplitN(p.ID, "-", 2)[1]) {
			t.Fatalf("the page shows place id %s", p.ID)
		}
	}

	// The time left ticks down on its own.
	left0, _ := minutesSeconds(after.Holds[1].Left)
	if left0 <= 9*60 || left0 > 10*60 {
		t.Errorf("a fresh hold shows %q left, want just under the 10m default", after.Holds[1].Left)
	}
	later := waitShown(t, ctx, "the time left counting down", func(s shown) bool {
		left, ok := minutesSeconds(s.Holds[1].Left)
		return ok && left <= left0-2
	})

	png := browserStep(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	path := filepath.Join(t.TempDir(), "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KB; %s left on the newest pending hold)", path, len(png)>>10, later.Holds[1].Left)
	if out := os.Getenv("HOLDFAST_SCREENSHOT_OUT"); out != "" {
		if len(png) > 300<<10 {
			t.Fatalf("the screenshot is %d KB, over the 300 KB a committed image may take", len(png)>>10)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatalf("HOLDFAST_SCREENSHOT_OUT: %v", err)
		}
		t.Logf("screenshot copied to %s", out)
	}

	// The feed says the same, in counts; then the sale closes, and the
	// page says so.
	var fq *struct {
		State             string   `json:"state"`
		Waiting           *int64   `json:"waiting"`
		Admitted          *int64   `json:"admitted"`
		AdmitPerSecond    int      `json:"admit_per_second"`
		AdmittedPerSecond *float64 `json:"admitted_per_second"`
	}
	for _, e := range ts.feed("").Events {
		if e.ID == queued {
			fq = e.Queue
		}
	}
	if fq == nil || fq.State != "open" || fq.Waiting == nil || fq.Admitted == nil || *fq.Waiting+*fq.Admitted != 200 || fq.AdmitPerSecond != 5 || fq.AdmittedPerSecond == nil {
		t.Errorf("the feed shows the queue as %+v, want open with 200 places waiting or admitted, at most 5/s, measured", fq)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	if res := ts.do("PATCH", "/admin/events/"+itoa(queued), `{"off_sale_at":"`+past+`"}`, "Authorization", "Bearer "+testToken); res.Status != 200 {
		t.Fatalf("close the sale: %d %s", res.Status, res.Body)
	}
	waitShown(t, ctx, "the queue closed", func(s shown) bool { return queueShown(s, queued).State == "queue closed" })

	consoleMu.Lock()
	defer consoleMu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(problems, "\n"))
	}
}
