package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"
)

// form is how long and how hard the suite pushes.
type form struct {
	clients int
	// warm is the load before the fault; total the load around it, at
	// least (a fault that lasts longer makes it longer).
	warm, total time.Duration
	// redisDown, pause and slow are how long Redis stays dead, an
	// instance stopped and Redis slow.
	redisDown, pause, slow time.Duration
	// small and medium are the stock of the events that sell out.
	small, medium int
}

var (
	// shortForm is the default: a few seconds of load around each fault.
	shortForm = form{clients: 24, warm: time.Second, total: 3500 * time.Millisecond,
		redisDown: 2 * time.Second, pause: 4 * time.Second, slow: 3 * time.Second, small: 20, medium: 300}
	// longForm (HOLDFAST_FAULTS=long) runs about fifteen seconds of load
	// per scenario with a bigger crowd.
	longForm = form{clients: 64, warm: 5 * time.Second, total: 15 * time.Second,
		redisDown: 5 * time.Second, pause: 6 * time.Second, slow: 6 * time.Second, small: 50, medium: 3000}
)

// slowRedis is the proxy's delay in slow-redis: more than the lock TTL.
const slowRedis = 2500 * time.Millisecond

// window is when a fault was in force.
type window struct{ from, to time.Time }

// grace is how long after a fault's window its 503s still count as its own:
// requests queued behind it finish late.
const grace = 3 * time.Second

// scenario is one fault. fault injects it while load runs and says what it
// saw; verify, when set, checks what the scenario promises beyond the
// common invariants.
type scenario struct {
	name   string
	fault  func(t *testing.T, c *cluster, f form) (window, string)
	verify func(t *testing.T, c *cluster, recs []record, w window)
}

var scenarios = []scenario{
	{name: "kill-instance", fault: killInstance},
	{name: "kill-redis", fault: killRedis},
	{name: "restart-postgres", fault: restartPostgres},
	{name: "pause-instance", fault: pauseInstance, verify: othersSold},
	{name: "slow-redis", fault: slowRedisAnswers},
}

func TestFaults(t *testing.T) {
	t.Parallel()
	f := shortForm
	if os.Getenv("HOLDFAST_FAULTS") == "long" {
		f = longForm
	}
	c := newCluster(t, 2, clusterOptions{})
	hooks := startHooks(t, c)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) { runScenario(t, c, f, sc) })
	}
	t.Run("webhooks", func(t *testing.T) { hooks.verify(t, c) })
}

func runScenario(t *testing.T, c *cluster, f form, sc scenario) {
	c.ensure(t)
	c.markLogs()
	events := c.newEvents(t, sc.name, []eventSpec{
		{name: "small", stock: f.small, weight: 35},
		{name: "medium", stock: f.medium, weight: 35},
		{name: "large", stock: 1_000_000, weight: 30},
	})
	ld := startLoad(c.insts, events, f.clients)
	finished := false
	defer func() {
		if !finished { // a t.Fatal in the fault: the clients still stop
			ld.finish()
		}
	}()
	began := time.Now()
	time.Sleep(f.warm)
	w, note := sc.fault(t, c, f)
	time.Sleep(max(f.total-time.Since(began), time.Second))
	recs := ld.finish()
	finished = true
	t.Logf("%s: %s; load ran %s", sc.name, note, time.Since(began).Round(100*time.Millisecond))

	// Both instances sell again, before the wait so that the check covers
	// the probes' holds too.
	c.probe(t, events[len(events)-1].id)
	// Every hold taken has lapsed and been swept by now, or check says so.
	time.Sleep(holdTTL + sweepEvery + time.Second + 500*time.Millisecond)

	violations, out := c.check(t)
	if violations > 0 {
		t.Errorf("holdfast check found %d events breaking the invariants:\n%s", violations, out)
	}
	var confirmed, notConfirmed []string
	for _, r := range recs {
		confirmed = append(confirmed, r.confirmed...)
		notConfirmed = append(notConfirmed, r.notConfirmed...)
	}
	lost, phantom := c.compare(t, confirmed, notConfirmed)
	violations += phantom

	counts, line := tally(recs)
	fmt.Printf("faults: %s: answers %s confirmed=%d lost=%d violations=%d\n", sc.name, line, len(confirmed), lost, violations)

	// 5xx: only 503 unavailable, and only the fault's.
	bad, inWindow, outside := serverErrors(recs, w)
	t.Logf("%s: %s", sc.name, breakdown(recs))
	t.Logf("%s: 503 unavailable %d during the fault, %d outside it; %d requests without an answer", sc.name, inWindow, outside, counts["err"])
	if outside > 0 {
		t.Logf("%s: note: %d 503s outside the fault's window (+%s)", sc.name, outside, grace)
	}
	if (sc.name == "kill-redis" || sc.name == "slow-redis") && inWindow+outside > 0 {
		t.Logf("%s: note: the contract says a missing Redis never causes a 5xx, yet %d 503s were answered", sc.name, inWindow+outside)
	}
	if len(bad) > 0 {
		t.Errorf("%s: %d answers the contract does not allow (a 5xx other than 503 unavailable, or a 2xx with a bad body): %s",
			sc.name, len(bad), badCounts(bad))
		var ids []string
		for i, a := range bad {
			if i < 10 {
				t.Logf("%s: %s %d %q on event %d from instance %s at %s (request %s)", sc.name, a.op, a.status, a.code, a.event,
					c.insts[a.inst].name, a.end.Format("15:04:05.000"), a.requestID)
			}
			if a.requestID != "" {
				ids = append(ids, "request_id="+a.requestID)
			}
		}
		for _, l := range c.logLines(ids, 40) {
			t.Log(l)
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d holds told confirmed are not confirmed in the database", sc.name, lost)
	}
	if sc.verify != nil {
		sc.verify(t, c, recs, w)
	}
	if t.Failed() {
		for _, l := range c.logLines([]string{"level=ERROR"}, 30) {
			t.Log(l)
		}
	}
}

// serverErrors sorts the answers the contract's 5xx rule judges. A 503
// whose body has code unavailable is allowed, counted as the fault's when it
// came during the fault's window (or its grace after) and outside it
// otherwise. Any other 5xx (a 500, a 502, a 503 with another code or no
// error body) is bad, and so is a success whose body was not what it must
// be.
func serverErrors(recs []record, w window) (bad []answer, inWindow, outside int) {
	for _, r := range recs {
		for _, a := range r.answers {
			switch {
			case a.status < 500 && a.code != "bad_body":
			case a.status == http.StatusServiceUnavailable && a.code == "unavailable":
				if !a.end.Before(w.from) && !a.start.After(w.to.Add(grace)) {
					inWindow++
				} else {
					outside++
				}
			default:
				bad = append(bad, a)
			}
		}
	}
	return bad, inWindow, outside
}

// badCounts formats bad answers as {500 internal:n 503 "":n ...}.
func badCounts(bad []answer) string {
	n := map[string]int{}
	for _, a := range bad {
		n[fmt.Sprintf("%d %q", a.status, a.code)]++
	}
	keys := slices.Sorted(maps.Keys(n))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, n[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// unavailable reports whether a 5xx answer is the contract's 503: status
// 503 and an error body with code unavailable.
func unavailable(status int, body []byte) bool {
	var e struct {
		Code string `json:"code"`
	}
	return status == http.StatusServiceUnavailable && json.Unmarshal(body, &e) == nil && e.Code == "unavailable"
}

// compare reads the holds' states from the database: lost counts holds told
// confirmed that are not, phantom holds confirmed that a client was told
// are not or never asked to confirm.
func (c *cluster) compare(t *testing.T, confirmed, notConfirmed []string) (lost, phantom int) {
	t.Helper()
	db := c.openDB(t)
	status := map[string]string{}
	all := append(append([]string{}, confirmed...), notConfirmed...)
	for len(all) > 0 {
		n := min(len(all), 5000)
		rows, err := db.QueryContext(context.Background(),
			`SELECT hold_id::text, booking_status FROM bookings WHERE hold_id = ANY($1::uuid[])`, pq.Array(all[:n]))
		if err != nil {
			t.Fatalf("read holds: %v", err)
		}
		for rows.Next() {
			var id, st string
			if err := rows.Scan(&id, &st); err != nil {
				t.Fatal(err)
			}
			status[id] = st
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		all = all[n:]
	}
	for _, id := range confirmed {
		if st := status[id]; st != "confirmed" {
			lost++
			if lost <= 10 {
				t.Errorf("hold %s: told confirmed, in the database %q", id, st)
			}
		}
	}
	for _, id := range notConfirmed {
		if status[id] == "confirmed" {
			phantom++
			if phantom <= 10 {
				t.Errorf("hold %s: confirmed in the database, though its client was told otherwise or never confirmed it", id)
			}
		}
	}
	return lost, phantom
}

// probe requires every instance to sell a hold on ev again, trying for a
// while (an instance may answer 503 once or twice while its pool finds
// fresh connections), and releases it.
func (c *cluster) probe(t *testing.T, ev int64) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, in := range c.insts {
		last := ""
		ok := false
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; i < 100 && time.Now().Before(deadline); i++ {
			body := fmt.Sprintf(`{"event_id":%d,"user_email":"probe-%s-%d@example.com","quantity":1}`, ev, in.name, i)
			res, err := client.Post(in.base+"/holds", "application/json", strings.NewReader(body))
			if err != nil {
				last = err.Error()
				time.Sleep(250 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			last = fmt.Sprintf("%d %s", res.StatusCode, b)
			if res.StatusCode >= 500 && !unavailable(res.StatusCode, b) {
				t.Errorf("instance %s answered a probe %s: only 503 unavailable is allowed", in.name, last)
			}
			if res.StatusCode == http.StatusCreated {
				ok = true
				var h struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(b, &h); err == nil && h.ID != "" {
					if req, err := http.NewRequest(http.MethodDelete, in.base+"/holds/"+h.ID, nil); err == nil {
						if res, err := client.Do(req); err == nil {
							b, _ := io.ReadAll(res.Body)
							res.Body.Close()
							if res.StatusCode >= 500 && !unavailable(res.StatusCode, b) {
								t.Errorf("instance %s answered the release of a probe %d %s: only 503 unavailable is allowed", in.name, res.StatusCode, b)
							}
						}
					}
				}
				if i > 0 {
					t.Logf("instance %s sold again after %d tries", in.name, i+1)
				}
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if !ok {
			t.Errorf("instance %s does not sell again: last answer %s", in.name, last)
		}
	}
}

// killInstance: SIGKILL to instance a mid-load, then a start on its port.
func killInstance(t *testing.T, c *cluster, f form) (window, string) {
	a := c.insts[0]
	from := time.Now()
	a.kill()
	time.Sleep(300 * time.Millisecond)
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	return window{from, to}, fmt.Sprintf("holdfast %s killed (SIGKILL) and answering again after %s", a.name, to.Sub(from).Round(time.Millisecond))
}

// killRedis: SIGKILL to Redis, down a while, then started again (empty).
func killRedis(t *testing.T, c *cluster, f form) (window, string) {
	from := time.Now()
	if err := c.redis.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.redis.Stop() // waits for the killed process to be gone
	time.Sleep(f.redisDown)
	if err := c.redis.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	return window{from, to}, fmt.Sprintf("redis killed (SIGKILL) and back after %s", to.Sub(from).Round(time.Millisecond))
}

// restartPostgres: a fast shutdown, then a start on the same port.
func restartPostgres(t *testing.T, c *cluster, f form) (window, string) {
	from := time.Now()
	if err := c.pg.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(from)
	time.Sleep(500 * time.Millisecond)
	if err := c.pg.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	return window{from, to}, fmt.Sprintf("postgres fast shutdown took %s, accepting again after %s",
		stopped.Round(time.Millisecond), to.Sub(from).Round(time.Millisecond))
}

// pauseInstance stops instance a (SIGSTOP) at a moment PostgreSQL shows it
// holding an event's row lock, keeps it stopped longer than the lock TTL,
// then resumes it (SIGCONT).
func pauseInstance(t *testing.T, c *cluster, f form) (window, string) {
	a := c.insts[0]
	ctx := context.Background()
	db := c.openDB(t)
	held, attempt := 0, 0
	for attempt = 1; attempt <= 100; attempt++ {
		if err := a.signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		n, err := c.holdsRowLock(ctx, db, a)
		if err == nil && n > 0 {
			held = n
			break
		}
		if err := a.signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(5+rand.IntN(25)) * time.Millisecond)
	}
	if held == 0 {
		// It never showed a lock; pause it anyway, under load.
		if err := a.signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	from := time.Now()
	keys, kerr := c.redisLocks()
	time.Sleep(f.pause)
	after, err := c.holdsRowLock(ctx, db, a)
	if err != nil {
		t.Errorf("read locks: %v", err)
	}
	if err := a.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	if held > 0 && after > 0 {
		t.Errorf("instance %s stopped for %s (lock TTL %s) still holds a row lock on events in %d sessions: PostgreSQL did not end them",
			a.name, f.pause, lockTTL, after)
	}
	redis := fmt.Sprintf("%d event locks in Redis", keys)
	if kerr != nil {
		redis = "Redis locks unreadable: " + kerr.Error()
	}
	how := fmt.Sprintf("holding a row lock on events in %d session(s) (stop attempt %d); %s", held, attempt, redis)
	if held == 0 {
		how = fmt.Sprintf("under load but never seen holding a row lock in %d attempts; %s", attempt-1, redis)
	}
	return window{from, to}, fmt.Sprintf("holdfast %s stopped (SIGSTOP) %s; after %s its sessions held %d row locks on events, then SIGCONT",
		a.name, how, f.pause, after)
}

// othersSold requires the instance that was not stopped to have sold
// during the pause.
func othersSold(t *testing.T, c *cluster, recs []record, w window) {
	b := 1
	during, late := 0, 0
	for _, r := range recs {
		for _, a := range r.answers {
			if a.inst != b || a.op != "hold" || a.status != http.StatusCreated {
				continue
			}
			if !a.end.Before(w.from) && !a.end.After(w.to) {
				during++
				if a.start.After(w.from.Add(lockTTL)) {
					late++
				}
			}
		}
	}
	t.Logf("pause-instance: instance %s answered 201 to %d holds during the pause, %d of them asked after the lock TTL had run out",
		c.insts[b].name, during, late)
	if during == 0 {
		t.Errorf("instance %s sold nothing while %s was stopped", c.insts[b].name, c.insts[0].name)
	}
}

// slowRedisAnswers delays every Redis answer by more than the lock TTL for
// a while.
func slowRedisAnswers(t *testing.T, c *cluster, f form) (window, string) {
	from := time.Now()
	c.proxy.SetDelay(slowRedis)
	time.Sleep(f.slow)
	c.proxy.SetDelay(0)
	// Answers already queued arrive up to the delay later.
	to := time.Now().Add(slowRedis)
	return window{from, to}, fmt.Sprintf("redis answers delayed %s for %s", slowRedis, f.slow)
}
