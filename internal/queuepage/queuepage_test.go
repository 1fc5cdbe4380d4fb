package queuepage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/holdfast/holdfast/queue"
	"github.com/holdfast/holdfast/sale"
)

// fakePlaces answers one place and one event.
type fakePlaces struct {
	place    queue.Place
	err      error
	event    sale.Event
	eventErr error
}

func (f fakePlaces) Get(context.Context, string) (queue.Place, error) { return f.place, f.err }
func (f fakePlaces) Event(context.Context, int64) (sale.Event, error) {
	return f.event, f.eventErr
}

var at = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

const placeID = "7-0123456789abcdef0123456789abcdef"

func ptr[T any](v T) *T { return &v }

// get serves the page for f at the fixed clock.
func get(t *testing.T, f fakePlaces) (*http.Response, string) {
	t.Helper()
	p, err := builtPage()
	if err != nil {
		t.Fatal(err)
	}
	return getFrom(t, p, f)
}

// getFrom is get with page p.
func getFrom(t *testing.T, p page, f fakePlaces) (*http.Response, string) {
	t.Helper()
	r := chi.NewRouter()
	r.Method(http.MethodGet, "/queue/{place_id}/page", handler(p, f, slog.New(slog.DiscardHandler), func() time.Time { return at }))
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/queue/"+placeID+"/page", nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

func queued(name string, rate int) sale.Event {
	return sale.Event{ID: 7, Name: name, Queue: &sale.QueueSettings{AdmitPerSecond: rate}}
}

var refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="(\d+)">`)

func TestPageOfEachStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		place   queue.Place
		event   sale.Event
		refresh string // "": no refresh
		want    []string
		not     []string
	}{
		{
			name:    "waiting",
			place:   queue.Place{EventID: 7, Status: queue.StatusWaiting, Position: ptr(int64(12345)), PollAfterSeconds: ptr(12)},
			event:   queued("Aurora Tour", 50),
			refresh: "12",
			want:    []string{"You&#39;re in line", "#12,345", "12,344 people", "about 5 minutes", "50 admitted a second", "refreshes itself every 12 s", "Aurora Tour"},
			not:     []string{"Queue-Pass:"},
		},
		{
			name:    "first in line",
			place:   queue.Place{EventID: 7, Status: queue.StatusWaiting, Position: ptr(int64(1)), PollAfterSeconds: ptr(1)},
			event:   queued("A", 10),
			refresh: "1",
			want:    []string{"#1<", "nobody", "under a minute"},
		},
		{
			name:    "pre-queue",
			place:   queue.Place{EventID: 7, Status: queue.StatusWaiting, PollAfterSeconds: ptr(30)},
			event:   sale.Event{ID: 7, Name: "A", OnSaleAt: ptr(at.Add(90 * time.Minute)), Queue: &sale.QueueSettings{AdmitPerSecond: 5}},
			refresh: "30",
			want:    []string{"The sale opens in", `data-seconds="5400"`, "1:30:00", "Tue 1 Jan 2030, 13:30 UTC", "drawn at random"},
		},
		{
			name: "admitted",
			place: queue.Place{EventID: 7, Status: queue.StatusAdmitted, Pass: ptr("eyJhbGciOiJFZERTQSJ9.e30.c2ln"),
				PassExpiresAt: ptr(at.Add(9*time.Minute + 30*time.Second)), PollAfterSeconds: ptr(30)},
			event:   queued("A", 10),
			refresh: "30",
			want:    []string{"It&#39;s your turn", "9:30", `data-seconds="570"`, ">eyJhbGciOiJFZERTQSJ9.e30.c2ln</textarea>", "Queue-Pass", "POST /holds", `"event_id": 7`},
		},
		{
			name:    "admitted, pass not signed yet",
			place:   queue.Place{EventID: 7, Status: queue.StatusAdmitted, PassExpiresAt: ptr(at.Add(time.Minute)), PollAfterSeconds: ptr(30)},
			event:   queued("A", 10),
			refresh: "1",
			want:    []string{"It&#39;s your turn"},
		},
		{name: "sold out", place: queue.Place{EventID: 7, Status: queue.StatusSoldOut}, event: queued("A", 10), want: []string{"Sold out", "Every ticket is sold"}},
		{name: "done", place: queue.Place{EventID: 7, Status: queue.StatusDone}, event: queued("A", 10), want: []string{"You&#39;re done", "confirmed"}},
		{name: "left", place: queue.Place{EventID: 7, Status: queue.StatusLeft}, event: queued("A", 10), want: []string{"You left the line"}},
		{name: "expired", place: queue.Place{EventID: 7, Status: queue.StatusExpired}, event: queued("A", 10), want: []string{"Your pass ran out"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, fakePlaces{place: tc.place, event: tc.event})
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			m := refreshRE.FindStringSubmatch(body)
			switch {
			case tc.refresh == "" && m != nil:
				t.Errorf("refreshes every %s s, want no refresh: nothing will change", m[1])
			case tc.refresh != "" && (m == nil || m[1] != tc.refresh):
				t.Errorf("refresh %v, want %s", m, tc.refresh)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("the page lacks %q:\n%s", w, body)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("the page shows %q", n)
				}
			}
			if !strings.Contains(body, `data-kind="`) {
				t.Errorf("no kind on the card")
			}
		})
	}
}

// checkHeaders reports each header of res that is not as want says ("":
// absent).
func checkHeaders(t *testing.T, what string, res *http.Response, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got := res.Header.Get(k); got != w {
			t.Errorf("%s: %s = %q, want %q", what, k, got, w)
		}
	}
}

// TestPageHeadersAndPolicy: never cached, no Referer, and a policy whose
// hashes are those of the inline style and script actually served.
func TestPageHeadersAndPolicy(t *testing.T) {
	t.Parallel()
	res, body := get(t, fakePlaces{place: queue.Place{EventID: 7, Status: queue.StatusWaiting, Position: ptr(int64(3)), PollAfterSeconds: ptr(1)}, event: queued("A", 1)})
	checkHeaders(t, "the page", res, map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	})
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("policy %q lacks %q", csp, want)
		}
	}
	for _, tag := range []string{"style", "script"} {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		all := re.FindAllStringSubmatch(body, -1)
		if len(all) != 1 {
			t.Fatalf("%d inline %s elements, want 1", len(all), tag)
		}
		sum := sha256.Sum256([]byte(all[0][1]))
		want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, want) {
			t.Errorf("policy %q does not allow the %s served (%s)", csp, tag, want)
		}
	}
	if strings.Contains(body, "src=\"http") || strings.Contains(body, "href=\"http") || strings.Contains(body, "//") && strings.Contains(body, "src=\"//") {
		t.Errorf("the page loads something from elsewhere")
	}
}

// A page that fails to render is a plain 500, with the page's own
// headers still: it names a buyer's place, so no copy is kept of it and
// no referrer sent from it, and the place's error's Retry-After is not
// its own.
func TestAPageThatFailsToRenderKeepsItsHeaders(t *testing.T) {
	t.Parallel()
	p, err := buildPage(cssTag+jsTag+"{{.Title.Missing}}", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]fakePlaces{
		"a place":       {place: queue.Place{EventID: 7, Status: queue.StatusWaiting, Position: ptr(int64(3))}, event: queued("A", 1)},
		"a place's 503": {err: sale.ErrUnavailable},
	} {
		res, _ := getFrom(t, p, f)
		if res.StatusCode != http.StatusInternalServerError {
			t.Errorf("%s: status %d, want 500", name, res.StatusCode)
		}
		checkHeaders(t, name, res, map[string]string{
			"Cache-Control":          "no-store",
			"X-Content-Type-Options": "nosniff",
			"Referrer-Policy":        "no-referrer",
			"Retry-After":            "",
		})
	}
}

// TestPageEscapes: a name and a pass with markup show as text.
func TestPageEscapes(t *testing.T) {
	t.Parallel()
	const evil = `<img src=x onerror=alert(1)>"'&`
	_, body := get(t, fakePlaces{
		place: queue.Place{EventID: 7, Status: queue.StatusAdmitted, Pass: ptr(evil + "</textarea><script>alert(2)</script>"),
			PassExpiresAt: ptr(at.Add(time.Minute)), PollAfterSeconds: ptr(30)},
		event: queued(evil, 10),
	})
	if strings.Contains(body, "<img") || strings.Contains(body, "<script>alert") || strings.Contains(body, "</textarea><") {
		t.Errorf("markup from the name or the pass reached the page as markup:\n%s", body)
	}
	if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;&#34;&#39;&amp;") {
		t.Errorf("the name is not shown escaped:\n%s", body)
	}
}

func TestPageOfErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		status int
		retry  string
		want   string
	}{
		{"bad id", queue.ErrBadPlaceID, 400, "", "This link is not a place in line"},
		{"unknown", queue.ErrPlaceNotFound, 404, "", "No such place in line"},
		{"redis down", queue.ErrUnavailable, 503, "1", "unavailable for a moment"},
		{"a fault", errors.New("boom"), 500, "", "Something went wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, body := get(t, fakePlaces{err: tc.err})
			if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
				t.Errorf("status %d %s, want %d text/html", res.StatusCode, res.Header.Get("Content-Type"), tc.status)
			}
			if got := res.Header.Get("Retry-After"); got != tc.retry {
				t.Errorf("Retry-After %q, want %q", got, tc.retry)
			}
			if !strings.Contains(body, tc.want) || strings.Contains(body, "boom") {
				t.Errorf("the page lacks %q or shows the fault:\n%s", tc.want, body)
			}
			if m := refreshRE.FindStringSubmatch(body); (m != nil) != (tc.status >= 500) {
				t.Errorf("refresh %v on a %d", m, tc.status)
			}
		})
	}
}

// TestPageWithoutItsEvent: a place whose event cannot be read still shows,
// by the event's id and at the default pace.
func TestPageWithoutItsEvent(t *testing.T) {
	t.Parallel()
	res, body := get(t, fakePlaces{
		place:    queue.Place{EventID: 7, Status: queue.StatusWaiting, Position: ptr(int64(100)), PollAfterSeconds: ptr(1)},
		eventErr: sale.ErrEventNotFound,
	})
	if res.StatusCode != 200 || !strings.Contains(body, "Event #7") || !strings.Contains(body, "50 admitted a second") {
		t.Errorf("%d:\n%s", res.StatusCode, body)
	}
}

func TestWaitWords(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "under a minute", 59 * time.Second: "under a minute", time.Minute: "about 1 minute",
		61 * time.Second: "about 2 minutes", 90 * time.Minute: "about 1 h 30 min",
	} {
		if got := wait(d); got != want {
			t.Errorf("wait(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBuildPageRefusesMismatchedFiles(t *testing.T) {
	t.Parallel()
	for name, files := range map[string][3]string{
		"no stylesheet tag":    {jsTag, "", ""},
		"no script tag":        {cssTag, "", ""},
		"script closes itself": {cssTag + jsTag, "", "x = '</SCRIPT>'"},
		"style closes itself":  {cssTag + jsTag, "</style>", ""},
		"action in the script": {cssTag + jsTag, "", "x = '{{.Pass}}'"},
		"template that fails":  {cssTag + jsTag + "{{if}}", "", ""},
	} {
		if _, err := buildPage(files[0], files[1], files[2]); err == nil {
			t.Errorf("%s: built", name)
		}
	}
	if _, err := builtPage(); err != nil {
		t.Fatalf("the embedded page: %v", err)
	}
}
