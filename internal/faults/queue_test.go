package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/queue"
)

// queueForm is how long and how hard the waiting room's scenarios push.
type queueForm struct {
	// rate is the queue's admit_per_second; pre the places that join
	// before on_sale_at.
	rate, pre int
	// joinEvery paces the joins after on_sale_at (kill-redis-queued).
	joinEvery time.Duration
	// warm is the sale before the fault, down how long Redis stays dead,
	// after the sale after the fault.
	warm, down, after time.Duration
}

var (
	queueShort = queueForm{rate: 40, pre: 150, joinEvery: 40 * time.Millisecond,
		warm: 2500 * time.Millisecond, down: 2 * time.Second, after: 3 * time.Second}
	queueLong = queueForm{rate: 100, pre: 1500, joinEvery: 15 * time.Millisecond,
		warm: 8 * time.Second, down: 5 * time.Second, after: 10 * time.Second}
)

// TestFaultsQueue breaks the machinery under a sale through the waiting
// room, on a cluster of its own whose Redis keeps an append-only file
// (appendfsync everysec), as a waiting room's Redis must:
//
//   - kill-redis-queued: Redis gets SIGKILL mid-sale and is started again
//     on its append-only file. Passes already given take holds while it is
//     down and after; joins and polls are 503 unavailable while it is down
//     and nothing else; every waiting place keeps its order, and no place
//     joined more than a second before the kill is lost.
//   - kill-instance-queued: one of two instances gets SIGKILL mid-sale; the
//     other goes on admitting at the queue's rate, places that joined
//     through the killed one included.
//
// Both end with `holdfast check` and the holds told confirmed, as
// TestFaults does. HOLDFAST_FAULTS=long runs them longer and harder.
func TestFaultsQueue(t *testing.T) {
	t.Parallel()
	f := queueShort
	if os.Getenv("HOLDFAST_FAULTS") == "long" {
		f = queueLong
	}
	c := newCluster(t, 2, clusterOptions{appendOnly: true})
	t.Run("kill-redis-queued", func(t *testing.T) { queueKillRedis(t, c, f) })
	t.Run("kill-instance-queued", func(t *testing.T) { queueKillInstance(t, c, f) })
}

// queuedEvent inserts an event with a waiting room whose sale opens in
// onSaleIn, and returns its id and on_sale_at.
func (c *cluster) queuedEvent(t *testing.T, name string, stock, rate int, passTTL, onSaleIn time.Duration) (int64, time.Time) {
	t.Helper()
	db := c.openDB(t)
	var id int64
	var on time.Time
	err := db.QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price,
			on_sale_at, queue_admit_per_second, queue_pass_ttl_seconds)
		VALUES ($1, now() + interval '30 days', $2, $2, 25.00, now() + $3 * interval '1 millisecond', $4, $5)
		RETURNING id, on_sale_at`, name, stock, onSaleIn.Milliseconds(), rate, int(passTTL.Seconds())).Scan(&id, &on)
	if err != nil {
		t.Fatalf("insert queued event: %v", err)
	}
	return id, on
}

// qplace is one buyer's place in the waiting room, as the suite saw it.
type qplace struct {
	id, email string
	inst      int       // the instance it joined through
	joined    time.Time // when its join was answered
	mu        sync.Mutex
	admitted  time.Time // when a poll first saw it admitted
	pass      string
}

// qrun is one scenario's traffic on one queued event: every answer, and
// the holds told confirmed and not.
type qrun struct {
	c      *cluster
	ev     int64
	client *http.Client
	tr     *http.Transport

	mu           sync.Mutex
	answers      []answer
	places       []*qplace
	confirmed    []string
	notConfirmed []string
	// grown counts polls that saw a place's position grow.
	grown int
}

func newQRun(c *cluster, ev int64) *qrun {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}
	return &qrun{c: c, ev: ev, tr: tr, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// do sends one request to instance inst and records its answer.
func (q *qrun) do(inst int, op, method, path, body, pass string) (answer, []byte) {
	a := answer{start: time.Now(), inst: inst, op: op, event: q.ev}
	res := send(q.client, &a, method, q.c.insts[inst].base+path, body, "Queue-Pass", pass)
	q.mu.Lock()
	q.answers = append(q.answers, a)
	q.mu.Unlock()
	return a, res
}

// join joins the queue through inst; nil unless the answer was a new place.
func (q *qrun) join(inst int, email string) *qplace {
	a, body := q.do(inst, "join", http.MethodPost, fmt.Sprintf("/events/%d/queue", q.ev), fmt.Sprintf(`{"user_email":%q}`, email), "")
	if a.status != http.StatusCreated {
		return nil
	}
	var p queue.Place
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
		return nil
	}
	qp := &qplace{id: p.ID, email: email, inst: inst, joined: a.end}
	q.mu.Lock()
	q.places = append(q.places, qp)
	q.mu.Unlock()
	return qp
}

// buy takes a hold with p's pass through inst and confirms it; it reports
// whether the hold was made. Each step is retried a few times after a 503
// or no answer, as a buyer's client would.
func (q *qrun) buy(inst int, p *qplace) (held bool) {
	var id string
	for try := 0; try < 10 && id == ""; try++ {
		a, body := q.do(inst, "hold", http.MethodPost, "/holds",
			fmt.Sprintf(`{"event_id":%d,"user_email":%q,"quantity":1}`, q.ev, p.email), p.pass)
		switch {
		case a.status == http.StatusCreated:
			var h struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(body, &h) != nil || h.ID == "" {
				return false
			}
			id = h.ID
		case a.status == 0 || a.status == http.StatusServiceUnavailable:
			time.Sleep(200 * time.Millisecond)
		default:
			return false
		}
	}
	if id == "" {
		return false
	}
	for try := 0; try < 10; try++ {
		a, _ := q.do(inst, "confirm", http.MethodPost, "/holds/"+id+"/confirm", "", "")
		switch {
		case a.status == http.StatusOK:
			q.mu.Lock()
			q.confirmed = append(q.confirmed, id)
			q.mu.Unlock()
			return true
		case a.status == 0 || a.status == http.StatusServiceUnavailable:
			time.Sleep(200 * time.Millisecond)
		default:
			q.mu.Lock()
			q.notConfirmed = append(q.notConfirmed, id)
			q.mu.Unlock()
			return true
		}
	}
	return true // confirm unanswered: the database says what became of it
}

// follow polls p through inst as poll_after_seconds says (at least once a
// second) until it is admitted, then hands it to admitted, or until stop.
// It counts a position that grows.
func (q *qrun) follow(stop <-chan struct{}, inst int, p *qplace, admitted func(*qplace)) {
	last := int64(-1)
	for i := 0; i < 100_000; i++ {
		wait := time.Second
		a, body := q.do(inst, "poll", http.MethodGet, "/queue/"+p.id, "", "")
		if a.status == http.StatusOK {
			var pl queue.Place
			if err := json.Unmarshal(body, &pl); err != nil {
				return
			}
			switch pl.Status {
			case queue.StatusAdmitted:
				if pl.Pass == nil {
					return
				}
				p.mu.Lock()
				p.admitted, p.pass = a.end, *pl.Pass
				p.mu.Unlock()
				admitted(p)
				return
			case queue.StatusWaiting:
				if pl.Position != nil {
					if last >= 0 && *pl.Position > last {
						q.mu.Lock()
						q.grown++
						q.mu.Unlock()
					}
					last = *pl.Position
				}
				if pl.PollAfterSeconds != nil {
					wait = min(wait, time.Duration(*pl.PollAfterSeconds)*time.Second)
				}
			default:
				return
			}
		} else {
			wait = 300 * time.Millisecond
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
	}
}

// joinAll joins n places named prefix-i, alternating between the
// instances, with a few joins in flight at once.
func (q *qrun) joinAll(prefix string, n int, insts []int) []*qplace {
	out := make([]*qplace, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				out[i] = q.join(insts[i%len(insts)], fmt.Sprintf("%s-%d@example.com", prefix, i))
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(out, func(p *qplace) bool { return p == nil })
}

// records is the run's answers in the shape TestFaults judges.
func (q *qrun) records() []record {
	q.mu.Lock()
	defer q.mu.Unlock()
	return []record{{answers: slices.Clone(q.answers), confirmed: slices.Clone(q.confirmed), notConfirmed: slices.Clone(q.notConfirmed)}}
}

// settle waits for every hold to lapse and be swept, then requires what
// every scenario promises: holdfast check consistent, every hold told
// confirmed confirmed, none told otherwise confirmed, and no 5xx but 503
// unavailable.
func (q *qrun) settle(t *testing.T, name string, w window) {
	time.Sleep(holdTTL + sweepEvery + time.Second + 500*time.Millisecond)
	if bad, out := q.c.check(t); bad > 0 {
		t.Errorf("holdfast check found %d events breaking the invariants:\n%s", bad, out)
	}
	recs := q.records()
	lost, phantom := q.c.compare(t, recs[0].confirmed, recs[0].notConfirmed)
	_, line := tally(recs)
	fmt.Printf("faults: %s: answers %s confirmed=%d lost=%d violations=%d\n", name, line, len(recs[0].confirmed), lost, phantom)
	t.Logf("%s: %s", name, breakdown(recs))
	if lost > 0 {
		t.Errorf("%s: %d holds told confirmed are not confirmed in the database", name, lost)
	}
	bad, _, _ := serverErrors(recs, w)
	if len(bad) > 0 {
		t.Errorf("%s: %d answers the contract does not allow (a 5xx other than 503 unavailable): %s", name, len(bad), badCounts(bad))
		var ids []string
		for i, a := range bad {
			if i < 10 {
				t.Logf("%s: %s %d %q from instance %s at %s (request %s)", name, a.op, a.status, a.code,
					q.c.insts[a.inst].name, a.end.Format("15:04:05.000"), a.requestID)
			}
			if a.requestID != "" {
				ids = append(ids, "request_id="+a.requestID)
			}
		}
		for _, l := range q.c.logLines(ids, 40) {
			t.Log(l)
		}
	}
	if t.Failed() {
		// A 503 is logged as a warning, with what failed under it.
		for _, l := range q.c.logLines([]string{"level=ERROR", "level=WARN"}, 40) {
			t.Log(l)
		}
	}
}

// unavailableTime is how long, between from and to, instance inst was
// answering 503 unavailable: the union of those answers' requests, from
// sending to answer.
func unavailableTime(answers []answer, inst int, from, to time.Time) time.Duration {
	var spans [][2]time.Time
	for _, a := range answers {
		if a.inst == inst && a.status == http.StatusServiceUnavailable && a.code == "unavailable" {
			s, e := maxTime(a.start, from), minTime(a.end, to)
			if s.Before(e) {
				spans = append(spans, [2]time.Time{s, e})
			}
		}
	}
	slices.SortFunc(spans, func(x, y [2]time.Time) int { return x[0].Compare(y[0]) })
	var total time.Duration
	var end time.Time
	for _, sp := range spans {
		if sp[0].Before(end) {
			sp[0] = end
		}
		if sp[1].After(sp[0]) {
			total += sp[1].Sub(sp[0])
			end = sp[1]
		}
	}
	return total
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// redisDirect is a client of the cluster's Redis itself, not through the
// proxy: the suite reads the queue's keys with it.
func (c *cluster) redisDirect(t *testing.T) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// queueKey is a key of ev's queue, as store.Queues names it.
func queueKey(ev int64, name string) string {
	return fmt.Sprintf("%squeue:{%d}:%s", redisPrefix, ev, name)
}

// queueKillRedis: Redis killed with SIGKILL mid-sale, down a while, then
// started again on its append-only file.
func queueKillRedis(t *testing.T, c *cluster, f queueForm) {
	const name = "kill-redis-queued"
	c.ensure(t)
	c.markLogs()
	ctx := context.Background()
	ev, onSale := c.queuedEvent(t, name, 1_000_000, f.rate, 2*time.Minute, 1500*time.Millisecond)
	q := newQRun(c, ev)
	defer q.tr.CloseIdleConnections()
	rdb := c.redisDirect(t)
	// Redis must be running when the test ends, even after a failure.
	defer func() {
		if _, err := c.redis.Info("server"); err != nil {
			_ = c.redis.Start(ctx)
		}
	}()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Every third admitted buyer keeps its pass for the outage; the others
	// buy at once.
	saved := make(chan *qplace, 10_000)
	var nAdmitted atomic.Int64
	admitted := func(p *qplace) {
		if nAdmitted.Add(1)%3 == 0 {
			saved <- p
			return
		}
		q.buy(p.inst, p)
	}
	follow := func(p *qplace) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.follow(stop, p.inst, p, admitted)
		}()
	}
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()
	for _, p := range q.joinAll(name+"-pre", f.pre, []int{0, 1}) {
		follow(p)
	}
	// After the pre-queue, one buyer joins every joinEvery, alternating
	// between the instances, until the end.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(f.joinEvery):
			}
			if p := q.join(i%2, fmt.Sprintf("%s-late-%d@example.com", name, i)); p != nil {
				follow(p)
			}
		}
	}()

	time.Sleep(time.Until(onSale.Add(f.warm)))
	before, err := rdb.ZRange(ctx, queueKey(ev, "wait"), 0, -1).Result()
	if err != nil {
		t.Fatalf("read the waiting places: %v", err)
	}
	from := time.Now()
	if err := c.redis.Kill(); err != nil {
		t.Fatal(err)
	}
	// Passes already given take holds while Redis is down.
	usePasses := func(n int) (tried, held int) {
		for ; tried < n; tried++ {
			var p *qplace
			select {
			case p = <-saved:
			default:
				return tried, held
			}
			if q.buy(1-p.inst, p) {
				held++
			}
		}
		return tried, held
	}
	downTried, downHeld := usePasses(5)
	time.Sleep(time.Until(from.Add(f.down)))
	if err := c.redis.Start(ctx); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	after, err := rdb.ZRange(ctx, queueKey(ev, "wait"), 0, -1).Result()
	if err != nil {
		t.Fatalf("read the waiting places after the restart: %v", err)
	}
	upTried, upHeld := usePasses(5)
	time.Sleep(f.after)
	close(stop)
	wg.Wait()
	stopped = true
	t.Logf("%s: redis killed (SIGKILL) at %s and back on its append-only file after %s; %d places waiting before, %d after",
		name, from.Format("15:04:05.000"), to.Sub(from).Round(time.Millisecond), len(before), len(after))

	if downTried == 0 || upTried == 0 {
		t.Errorf("%s: no admitted pass was kept for the outage (%d tried while down, %d after): the sale admitted too few", name, downTried, upTried)
	}
	if downHeld != downTried || upHeld != upTried {
		t.Errorf("%s: passes given before the kill took %d of %d holds while Redis was down and %d of %d after; want all",
			name, downHeld, downTried, upHeld, upTried)
	}
	t.Logf("%s: passes given before the kill took %d of %d holds while Redis was down, %d of %d after", name, downHeld, downTried, upHeld, upTried)

	// Joins and polls while Redis was down: 503 unavailable, nothing else.
	// Start returns a few milliseconds after Redis answers again, so the
	// window's last 200 ms are left out.
	var downAnswers, downOK int
	q.mu.Lock()
	for _, a := range q.answers {
		if (a.op != "join" && a.op != "poll") || a.start.Before(from) || a.end.After(to.Add(-200*time.Millisecond)) {
			continue
		}
		downAnswers++
		if a.status == http.StatusServiceUnavailable && a.code == "unavailable" {
			downOK++
		} else if downAnswers-downOK <= 5 {
			t.Errorf("%s: %s while Redis was down answered %d %q, want 503 unavailable", name, a.op, a.status, a.code)
		}
	}
	q.mu.Unlock()
	if downAnswers == 0 {
		t.Errorf("%s: no join or poll was sent while Redis was down", name)
	}
	t.Logf("%s: %d of %d joins and polls while Redis was down answered 503 unavailable", name, downOK, downAnswers)

	// Every waiting place keeps its order: the places waiting both before
	// and after are in the same relative order.
	inAfter := make(map[string]bool, len(after))
	for _, id := range after {
		inAfter[id] = true
	}
	inBefore := make(map[string]bool, len(before))
	for _, id := range before {
		inBefore[id] = true
	}
	common1 := slices.DeleteFunc(slices.Clone(before), func(id string) bool { return !inAfter[id] })
	common2 := slices.DeleteFunc(slices.Clone(after), func(id string) bool { return !inBefore[id] })
	if !slices.Equal(common1, common2) {
		moved := 0
		for i := range min(len(common1), len(common2)) {
			if common1[i] != common2[i] {
				moved++
			}
		}
		t.Errorf("%s: the %d places waiting before and after the restart are not in the same order (%d of them moved)", name, len(common1), moved)
	}
	// A place waiting before and not after must have been admitted since
	// (admission goes on at once), never lost; but for one that joined in
	// the kill's last second, which the append-only file may not have
	// kept (counted below with the others of that second).
	q.mu.Lock()
	places := slices.Clone(q.places)
	q.mu.Unlock()
	joinedAt := make(map[string]time.Time, len(places))
	for _, p := range places {
		joinedAt[p.id] = p.joined
	}
	gone := 0
	for _, id := range before {
		if inAfter[id] {
			continue
		}
		st, err := rdb.HGet(ctx, queueKey(ev, "p:"+id), "status").Result()
		if err == redis.Nil && joinedAt[id].After(from.Add(-time.Second)) {
			continue
		}
		if err != nil || st == string(queue.StatusWaiting) {
			gone++
			if gone <= 5 {
				t.Errorf("%s: place %s was waiting before the kill and is not in the queue after the restart (status %q, %v)", name, id, st, err)
			}
		}
	}
	// Every place whose join was answered more than a second before the
	// kill is still there (appendfsync everysec loses at most the last
	// second); the last second's losses are counted.
	var lostOld, lostLastSecond, readmitted int
	for _, p := range places {
		if !p.joined.Before(from) {
			continue
		}
		st, err := rdb.HGet(ctx, queueKey(ev, "p:"+p.id), "status").Result()
		switch {
		case err == redis.Nil && p.joined.After(from.Add(-time.Second)):
			lostLastSecond++
		case err != nil:
			lostOld++
			if lostOld <= 5 {
				t.Errorf("%s: place %s, joined %s before the kill, is gone after the restart: %v", name, p.id, from.Sub(p.joined).Round(time.Millisecond), err)
			}
		case st == string(queue.StatusWaiting):
			p.mu.Lock()
			seen := p.admitted
			p.mu.Unlock()
			if !seen.IsZero() && seen.Before(from) {
				readmitted++
			}
		}
	}
	t.Logf("%s: order kept for %d places waiting across the restart; %d joined before the kill, %d of them lost from its last second, %d older lost; %d admitted before the kill waiting again",
		name, len(common1), len(places), lostLastSecond, lostOld, readmitted)
	q.mu.Lock()
	grown := q.grown
	q.mu.Unlock()
	if grown > 0 {
		t.Errorf("%s: %d polls saw a place's position grow", name, grown)
	}
	// Admission went on after the restart.
	since := 0
	for _, p := range places {
		p.mu.Lock()
		if p.admitted.After(to) {
			since++
		}
		p.mu.Unlock()
	}
	if since == 0 && len(after) > 0 {
		t.Errorf("%s: no place was admitted after the restart though %d were waiting", name, len(after))
	}
	t.Logf("%s: %d places admitted after the restart", name, since)
	q.settle(t, name, window{from, to})
}

// queueKillInstance: two instances on one queued event, one killed with
// SIGKILL mid-sale; the admission rate must not change.
func queueKillInstance(t *testing.T, c *cluster, f queueForm) {
	const name = "kill-instance-queued"
	c.ensure(t)
	c.markLogs()
	// Enough places that the queue never runs dry.
	n := f.rate*int((f.warm+f.after+3*time.Second)/time.Second) + f.rate
	ev, onSale := c.queuedEvent(t, name, 1_000_000, f.rate, 2*time.Minute, time.Second+time.Duration(n)*time.Second/400)
	q := newQRun(c, ev)
	defer q.tr.CloseIdleConnections()
	places := q.joinAll(name, n, []int{0, 1})
	if len(places) < n*9/10 {
		t.Fatalf("%s: only %d of %d joins succeeded", name, len(places), n)
	}

	// Every buyer polls and buys through instance b, which lives on.
	const b = 1
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var afterKill atomic.Int64
	var killedAt atomic.Int64
	for _, p := range places {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.follow(stop, b, p, func(p *qplace) {
				if k := killedAt.Load(); k > 0 && p.inst != b && p.admitted.UnixNano() > k {
					afterKill.Add(1)
				}
				q.buy(b, p)
			})
		}()
	}
	// The queue's admitted count, read through b every 100 ms.
	type sample struct {
		at       time.Time
		admitted int64
	}
	var mu sync.Mutex
	var samples []sample
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			t0 := time.Now()
			a, body := q.do(b, "state", http.MethodGet, fmt.Sprintf("/events/%d/queue", ev), "", "")
			var st queue.QueueState
			if a.status == http.StatusOK && json.Unmarshal(body, &st) == nil {
				mu.Lock()
				// The read happened between sending and answering.
				samples = append(samples, sample{t0.Add(a.end.Sub(t0) / 2), st.Admitted})
				mu.Unlock()
			}
		}
	}()
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			wg.Wait()
		}
	}()

	time.Sleep(time.Until(onSale.Add(f.warm)))
	from := time.Now()
	killedAt.Store(from.UnixNano())
	c.insts[0].kill()
	to := time.Now()
	time.Sleep(f.after)
	close(stop)
	wg.Wait()
	stopped = true

	// The rate before the kill (from a second after the sale opened, once
	// the first steps are past) and after it.
	mu.Lock()
	ss := slices.Clone(samples)
	mu.Unlock()
	first, k := -1, -1
	for i, s := range ss {
		if first < 0 && s.at.After(onSale.Add(time.Second)) {
			first = i
		}
		if s.at.Before(from) {
			k = i
		}
	}
	if first < 0 || k <= first || k >= len(ss)-1 {
		t.Fatalf("%s: too few samples of the queue's state (%d; first %d, kill at %d)", name, len(ss), first, k)
	}
	last := len(ss) - 1
	rate := func(i, j int) (n int64, d time.Duration) {
		return ss[j].admitted - ss[i].admitted, ss[j].at.Sub(ss[i].at)
	}
	nBefore, dBefore := rate(first, k)
	nAfter, dAfter := rate(k, last)
	// The allowance: a burst (half a second's worth), a step's worth (the
	// admitter runs every 150 ms) and one place of rounding.
	allow := float64(f.rate)/2 + float64(f.rate)*queue.AdmitEvery.Seconds() + 1
	// A machine so busy that this sampler stalls past a burst's time stalls
	// the admitters too, and a step that comes later than that drops the
	// credit past its burst: what such stalls cost may be missing, and is
	// said. Too many admissions are never allowed for.
	stalled := func(i, j int) time.Duration {
		var d time.Duration
		for x := i + 1; x <= j; x++ {
			d += max(0, ss[x].at.Sub(ss[x-1].at)-500*time.Millisecond)
		}
		return d
	}
	// Likewise the time b told its buyers the waiting room was
	// unavailable (its Redis calls failing: a machine so busy that they
	// time out, or Redis stalled on its append-only file): the contract
	// allows those 503s, and b's admission steps failed alike.
	q.mu.Lock()
	answers := slices.Clone(q.answers)
	q.mu.Unlock()
	unavailable := func(i, j int) time.Duration { return unavailableTime(answers, b, ss[i].at, ss[j].at) }
	for _, w := range []struct {
		what        string
		n           int64
		d           time.Duration
		stall, down time.Duration
	}{{"before the kill", nBefore, dBefore, stalled(first, k), unavailable(first, k)}, {"after the kill", nAfter, dAfter, stalled(k, last), unavailable(k, last)}} {
		want := float64(f.rate) * w.d.Seconds()
		low := allow + float64(f.rate)*(w.stall+w.down).Seconds()
		t.Logf("%s: %s: %d admitted in %s, %.1f/s (rate %d/s; want %.0f +%.0f -%.0f; the sampler stalled %s past half a second, b answered unavailable for %s)",
			name, w.what, w.n, w.d.Round(time.Millisecond), float64(w.n)/w.d.Seconds(), f.rate, want, allow, low,
			w.stall.Round(time.Millisecond), w.down.Round(time.Millisecond))
		if diff := float64(w.n) - want; diff > allow || diff < -low {
			t.Errorf("%s: %s the queue admitted %d places in %s; at %d/s want %.0f, at most %.0f more or %.0f fewer",
				name, w.what, w.n, w.d.Round(time.Millisecond), f.rate, want, allow, low)
		}
	}
	// Admitted places in each whole second from the first sample, as read
	// (the kill fell in the second marked *).
	var perSecond []string
	for i, at := first, ss[first].at; ; {
		next := at.Add(time.Second)
		if next.After(ss[last].at) {
			break // only whole seconds
		}
		j := i
		for j < last && !ss[j+1].at.After(next) {
			j++
		}
		if j == i {
			break
		}
		mark := ""
		if !from.Before(ss[i].at) && from.Before(ss[j].at) {
			mark = "*"
		}
		perSecond = append(perSecond, fmt.Sprintf("%d%s", ss[j].admitted-ss[i].admitted, mark))
		i, at = j, next
	}
	t.Logf("%s: admitted in each second: %s", name, strings.Join(perSecond, " "))
	// Redis writes its append-only file late when the disk is busy, and
	// blocks while it does: say whether it did, for a rate that fell.
	if info, err := c.redisDirect(t).Info(context.Background(), "persistence").Result(); err == nil {
		for _, l := range strings.Split(info, "\r\n") {
			if strings.HasPrefix(l, "aof_delayed_fsync:") {
				t.Logf("%s: redis %s", name, l)
			}
		}
	}
	if afterKill.Load() == 0 {
		t.Errorf("%s: no place that joined through the killed instance was admitted after the kill", name)
	}
	t.Logf("%s: holdfast %s killed (SIGKILL) at %s (%s); %d places joined through it admitted and served by %s after the kill",
		name, c.insts[0].name, from.Format("15:04:05.000"), to.Sub(from).Round(time.Millisecond), afterKill.Load(), c.insts[b].name)
	if err := c.insts[0].start(); err != nil {
		t.Fatal(err)
	}
	q.settle(t, name, window{from, to.Add(time.Second)})
}

// The allowance for b's 503s counts overlapping answers once, and only
// b's unavailable ones, within the window.
func TestUnavailableTimeIsTheUnionOfTheSpans(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	down := func(inst, from, to int) answer {
		return answer{inst: inst, start: at(from), end: at(to), status: http.StatusServiceUnavailable, code: "unavailable"}
	}
	answers := []answer{
		down(1, 100, 600), down(1, 200, 400), down(1, 500, 900), // 100-900
		down(1, 1500, 1600),
		down(0, 2000, 3000), // another instance
		{inst: 1, start: at(2000), end: at(3000), status: http.StatusOK},
		down(1, 4000, 6000), // clipped to 5000
	}
	if got, want := unavailableTime(answers, 1, at(0), at(5000)), 1900*time.Millisecond; got != want {
		t.Fatalf("unavailable for %s, want %s", got, want)
	}
}
