package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/queue"
)

// The waiting room's benchmarks: `go test -bench Queue` runs them alone.
// Each measures its ratios against a baseline taken in the same run, on
// the same server (the batched one).

// queueClients is the load generator's clients in the throughput runs.
const queueClients = 64

// queuedEvent inserts an event with a waiting room; onSaleIn 0 opens its
// sale at once.
func (e *env) queuedEvent(rate int, passTTL, onSaleIn time.Duration) (int64, error) {
	var on any
	if onSaleIn > 0 {
		on = time.Now().Add(onSaleIn).UTC()
	}
	var id int64
	err := e.db.QueryRow(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price,
			on_sale_at, queue_admit_per_second, queue_pass_ttl_seconds)
		VALUES ('bench queue', now() + interval '30 days', 100000000, 100000000, 49.50, $1, $2, $3) RETURNING id`,
		on, rate, int(passTTL.Seconds())).Scan(&id)
	return id, err
}

// queueKey is a key of ev's queue, as store.Queues names it under the
// servers' default prefix.
func queueKey(ev int64, name string) string {
	return fmt.Sprintf("holdfast:queue:{%d}:%s", ev, name)
}

// note adds a line to the report's closing notes.
func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	e.extra = append(e.extra, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// profile, when HOLDFAST_BENCH_PROFILE names a directory and
// HOLDFAST_BENCH_PPROF a fixed address, fetches a CPU profile of the
// batched server for the coming run into that directory as name.pprof;
// the returned func waits for it.
func (e *env) profile(name string) func() {
	dir, addr := os.Getenv("HOLDFAST_BENCH_PROFILE"), os.Getenv("HOLDFAST_BENCH_PPROF")
	if dir == "" || addr == "" || strings.HasSuffix(addr, ":0") {
		return func() {}
	}
	secs := max(1, int(e.duration.Seconds())-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: profile:", err)
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if err := os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench: profile:", err)
		}
	}()
	return func() { <-done }
}

// BenchmarkQueueThroughput measures joins and polls against the same
// server's GET /health, at 64 clients, one after the other in one run.
// The joins go to an open queue admitting one place a second, so nearly
// every place stays waiting; the polls read those places.
func BenchmarkQueueThroughput(b *testing.B) {
	ev, err := e.queuedEvent(1, 10*time.Minute, 0)
	if err != nil {
		b.Fatal(err)
	}
	srv := e.batched
	wait := e.profile("health")
	health := e.measure("queue: GET /health", srv, queueClients, func(c, i int) (string, string, []byte) {
		return "GET", "/health", nil
	}, 0)
	wait()
	e.record(b, health)
	rdb := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	defer rdb.Close()
	wait = e.profile("joins")
	rdb.ConfigResetStat(context.Background())
	joins := e.measure("queue: POST /events/{id}/queue", srv, queueClients, func(c, i int) (string, string, []byte) {
		return "POST", fmt.Sprintf("/events/%d/queue", ev), fmt.Appendf(nil, `{"user_email":"join-%d-%d@example.com"}`, c, i)
	}, 0)
	wait()
	joinCalls := scriptCalls(rdb)
	e.record(b, joins)
	ids, err := rdb.ZRange(context.Background(), queueKey(ev, "wait"), 0, 99_999).Result()
	if err != nil || len(ids) == 0 {
		b.Fatalf("read the waiting places: %d, %v", len(ids), err)
	}
	wait = e.profile("polls")
	rdb.ConfigResetStat(context.Background())
	polls := e.measure("queue: GET /queue/{place_id}", srv, queueClients, func(c, i int) (string, string, []byte) {
		return "GET", "/queue/" + ids[(c*7919+i*131)%len(ids)], nil
	}, 0)
	wait()
	pollCalls := scriptCalls(rdb)
	e.record(b, polls)
	waiting, _ := rdb.ZCard(context.Background(), queueKey(ev, "wait")).Result()
	jr, pr := joins.rate()/health.rate(), polls.rate()/health.rate()
	b.ReportMetric(jr, "joins/health")
	b.ReportMetric(pr, "polls/health")
	e.note("waiting room, %d clients, one run: GET /health %.0f/s; joins %.0f/s = %.2fx /health (target >= 0.5x); polls %.0f/s = %.2fx (target >= 0.8x); %d places waiting after the joins; joins: %d 4xx, %d 5xx; polls: %d 4xx, %d 5xx",
		queueClients, health.rate(), joins.rate(), jr, polls.rate(), pr, waiting, joins.Other4xx, joins.Server, polls.Other4xx, polls.Server)
	e.note("waiting room's script calls: joins %s; polls %s", joinCalls.per(joins.OK), pollCalls.per(polls.OK))
}

// passes joins n places of a queue that admits at once and polls each
// until it holds a pass, with 64 workers; it returns the places' emails
// and passes.
func passes(base string, ev int64, n int) (emails, tokens []string, err error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	emails, tokens = make([]string, n), make([]string, n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || firstErr.Load() != nil {
					return
				}
				email := fmt.Sprintf("pass-%d-%d@example.com", ev, i)
				var p queue.Place
				res, err := client.Post(fmt.Sprintf("%s/events/%d/queue", base, ev), "application/json", strings.NewReader(fmt.Sprintf(`{"user_email":%q}`, email)))
				if err == nil {
					err = json.NewDecoder(res.Body).Decode(&p)
					res.Body.Close()
				}
				for try := 0; err == nil && p.Pass == nil && try < 200; try++ {
					time.Sleep(50 * time.Millisecond)
					res, err = client.Get(base + "/queue/" + p.ID)
					if err == nil {
						err = json.NewDecoder(res.Body).Decode(&p)
						res.Body.Close()
					}
				}
				if err == nil && p.Pass == nil {
					err = fmt.Errorf("place %s not admitted: %s", p.ID, p.Status)
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				emails[i], tokens[i] = email, *p.Pass
			}
		}()
	}
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		return nil, nil, v.(error)
	}
	return emails, tokens, nil
}

// BenchmarkQueueHolds measures POST /holds with a pass, on a queued event,
// against POST /holds on an event without a queue, at 64 clients, in one
// run on the same server. Each hold with a pass uses a pass of its own
// (one hold per buyer, as the baseline's emails are each new), made
// before the run; only the holds are timed.
func BenchmarkQueueHolds(b *testing.B) {
	plain, err := e.event(100_000_000)
	if err != nil {
		b.Fatal(err)
	}
	srv := e.batched
	wait := e.profile("holds")
	without := e.measure("queue: POST /holds, no queue", srv, queueClients, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(plain, c, i)
	}, 0)
	wait()
	e.record(b, without)
	ev, err := e.queuedEvent(100_000, time.Hour, 0)
	if err != nil {
		b.Fatal(err)
	}
	// Passes for 1.3x the baseline's holds: the run seldom reuses one.
	n := int(without.rate()*e.duration.Seconds()*1.3) + 1000
	t0 := time.Now()
	emails, tokens, err := passes(srv.base, ev, n)
	if err != nil {
		b.Fatal(err)
	}
	made := time.Since(t0)
	var next atomic.Int64
	wait = e.profile("holds-pass")
	with := e.measureWith("queue: POST /holds with a pass", srv, queueClients, func(c, i int) (string, string, []byte, string, string) {
		k := int(next.Add(1)-1) % n
		return "POST", "/holds", fmt.Appendf(nil, `{"event_id":%d,"user_email":%q,"quantity":1}`, ev, emails[k]), "Queue-Pass", tokens[k]
	}, 0)
	wait()
	e.record(b, with)
	// The baseline again after: the ratio is against both, so that a
	// machine whose speed drifts during the run favours neither.
	again := e.measure("queue: POST /holds, no queue (again)", srv, queueClients, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(plain, 1000+c, i)
	}, 0)
	e.record(b, again)
	base := (without.rate() + again.rate()) / 2
	ratio := with.rate() / base
	b.ReportMetric(ratio, "pass/no-queue")
	e.note("holds with a pass, %d clients, one run: %.0f/s = %.2fx holds without a queue (%.0f/s before it, %.0f/s after; target >= 0.9x); p99 %.1f ms vs %.1f and %.1f ms; "+
		"with a pass: %d 4xx, %d 5xx, %d of %d passes used (%d joins and polls to make them took %s)",
		queueClients, with.rate(), ratio, without.rate(), again.rate(), ms(with.pct(0.99)), ms(without.pct(0.99)), ms(again.pct(0.99)), with.Other4xx, with.Server,
		min(int(next.Load()), n), n, n, made.Round(100*time.Millisecond))
}

// scriptStat is what Redis counted of its script calls (EVALSHA and EVAL)
// since its statistics were last reset.
type scriptStat struct {
	calls int64
	usec  int64
}

func scriptCalls(rdb *redis.Client) scriptStat {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return scriptStat{}
	}
	var st scriptStat
	for _, name := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		for _, kv := range strings.Split(infoValue(info, name), ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls += n
			case "usec":
				st.usec += n
			}
		}
	}
	return st
}

// per describes the calls for ok requests: how many requests a call
// carried, and Redis's time in the script per request and per call
// (wall time on its thread, so it counts the waits of a busy machine).
func (s scriptStat) per(ok int) string {
	if s.calls == 0 || ok == 0 {
		return "none counted"
	}
	return fmt.Sprintf("%d calls for %d requests (%.1f a call), %.1f us in the script a request, %.0f us a call",
		s.calls, ok, float64(ok)/float64(s.calls), float64(s.usec)/float64(ok), float64(s.usec)/float64(s.calls))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkQueueRedisMemory joins 1,000,000 places to one open queue of a
// private Redis of its own, through the join script itself (store's
// queue_lib.lua and queue_join.lua, as store.Queues runs them), pipelined
// 1,000 at a time, and reads what they cost: INFO memory's used_memory
// before and after, and MEMORY USAGE of each of the queue's keys.
func BenchmarkQueueRedisMemory(b *testing.B) {
	const places, batch = 1_000_000, 1000
	ctx := context.Background()
	r, err := servers.StartRedis(ctx, filepath.Join(e.dir, "redis-memory"))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	var src []byte
	for _, f := range []string{"queue_lib.lua", "queue_join.lua"} {
		s, err := os.ReadFile(filepath.Join("..", "..", "store", f))
		if err != nil {
			b.Fatal(err)
		}
		src = append(src, s...)
	}
	join := redis.NewScript(string(src))
	if err := join.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	used := func() int64 {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		n, _ := strconv.ParseInt(infoValue(info, "used_memory"), 10, 64)
		return n
	}
	const ev = 777
	base := fmt.Sprintf("holdfast:queue:{%d}:", ev)
	// The fixed keys of queue_lib.lua, in its order (store.Queues' keys):
	// the place's key follows them as KEYS[9] (one join a call).
	keys := []string{base + "pre", base + "wait", base + "adm", base + "emails", base + "meta", base + "seq", base + "took", base + "gone"}
	before := used()
	t0 := time.Now()
	var sample []string
	for i := 0; i < places; i += batch {
		pipe := rdb.Pipeline()
		for j := i; j < i+batch; j++ {
			id, err := queue.NewPlaceID(ev)
			if err != nil {
				b.Fatal(err)
			}
			if j%10_000 == 0 {
				sample = append(sample, id)
			}
			email := fmt.Sprintf("buyer-%07d@example.com", j)
			join.EvalSha(ctx, pipe, append(slices.Clone(keys), base+"p:"+id), base, "", "", id, email, email)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if v, err := cmds[0].(*redis.Cmd).Slice(); err != nil || len(v) != 1 || v[0].([]any)[0] != "new" {
			b.Fatalf("join answered %v, %v", v, err)
		}
	}
	took := time.Since(t0)
	after := used()
	usage := func(key string) int64 {
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	var placeSum int64
	for _, id := range sample {
		placeSum += usage(base + "p:" + id)
	}
	perPlace := placeSum / int64(len(sample))
	wait, emails := usage(base+"wait"), usage(base+"emails")
	n, _ := rdb.ZCard(ctx, base+"wait").Result()
	per := float64(after-before) / places
	b.ReportMetric(per, "B/place")
	mb := func(v int64) float64 { return float64(v) / (1 << 20) }
	e.note("redis memory, %d waiting places joined through queue_join.lua (pipelined %d at a time, %.0f joins/s): used_memory %.0f MB -> %.0f MB, %.0f bytes a place (%.0f MB per million); "+
		"MEMORY USAGE: the places' hashes %d bytes each (%.0f MB in all, %.0f%%), the wait sorted set %.0f MB (%.0f%%), the emails hash %.0f MB (%.0f%%); %d in the wait set",
		places, batch, float64(places)/took.Seconds(), mb(before), mb(after), per, mb(after-before),
		perPlace, mb(perPlace*places), 100*float64(perPlace*places)/float64(after-before),
		mb(wait), 100*float64(wait)/float64(after-before), mb(emails), 100*float64(emails)/float64(after-before), n)
}

// BenchmarkQueueAdmissionLag measures the time from a place's turn (its
// admission, Redis's clock: pass_expires_at - pass_ttl) to the first poll
// that sees it admitted, for 1,000 places of a pre-queue admitted at
// 100/s: nine in ten poll as poll_after_seconds tells them (what a
// well-behaved buyer's page does), one in ten every 100 ms (the service's
// own lag: the admission step runs every 150 ms). It reports p50, p99 and
// the most of each group, and the p99 of the server's
// holdfast_queue_admission_lag_seconds histogram over the run.
func BenchmarkQueueAdmissionLag(b *testing.B) {
	const places, rate = 1000, 100
	const passTTL = 10 * time.Minute
	srv := e.batched
	ev, err := e.queuedEvent(rate, passTTL, 3*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	get := func(path string, out any) error {
		res, err := client.Get(srv.base + path)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
			body, _ := io.ReadAll(res.Body)
			return fmt.Errorf("%s: %d %s", path, res.StatusCode, body)
		}
		return json.NewDecoder(res.Body).Decode(out)
	}
	ids := make([]string, places)
	for i := range ids {
		res, err := client.Post(fmt.Sprintf("%s/events/%d/queue", srv.base, ev), "application/json", strings.NewReader(fmt.Sprintf(`{"user_email":"lag-%d@example.com"}`, i)))
		if err != nil {
			b.Fatal(err)
		}
		var p queue.Place
		err = json.NewDecoder(res.Body).Decode(&p)
		res.Body.Close()
		if err != nil || p.ID == "" {
			b.Fatalf("join: %v", err)
		}
		ids[i] = p.ID
	}
	histBefore := lagHistogram(client, srv.base)
	lags := make([][]time.Duration, 2) // as told, eager
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Value
	for i, id := range ids {
		eager := i%10 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(time.Minute + places/rate*time.Second)
			for time.Now().Before(deadline) {
				var p queue.Place
				if err := get("/queue/"+id, &p); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				seen := time.Now()
				if p.Status == queue.StatusAdmitted && p.PassExpiresAt != nil {
					lag := seen.Sub(p.PassExpiresAt.Add(-passTTL))
					g := 0
					if eager {
						g = 1
					}
					mu.Lock()
					lags[g] = append(lags[g], lag)
					mu.Unlock()
					return
				}
				wait := 100 * time.Millisecond
				if !eager {
					wait = time.Second
					if p.PollAfterSeconds != nil {
						wait = time.Duration(*p.PollAfterSeconds) * time.Second
					}
				}
				time.Sleep(wait)
			}
			failed.CompareAndSwap(nil, fmt.Errorf("place %s not admitted in time", id))
		}()
	}
	wg.Wait()
	if v := failed.Load(); v != nil {
		b.Fatal(v)
	}
	histAfter := lagHistogram(client, srv.base)
	describe := func(l []time.Duration) string {
		slices.Sort(l)
		if len(l) == 0 {
			return "none"
		}
		at := func(p float64) float64 { return ms(l[min(len(l)-1, int(float64(len(l))*p))]) }
		return fmt.Sprintf("%d places, p50 %.0f ms, p99 %.0f ms, max %.0f ms", len(l), at(0.5), at(0.99), ms(l[len(l)-1]))
	}
	b.ReportMetric(ms(pctOf(lags[0], 0.99)), "told-p99-ms")
	b.ReportMetric(ms(pctOf(lags[1], 0.99)), "eager-p99-ms")
	e.note("admission lag (turn to the poll that sees it), %d places admitted at %d/s: polling as poll_after_seconds says: %s; polling every 100 ms: %s; "+
		"holdfast_queue_admission_lag_seconds over the run: p99 <= %s",
		places, rate, describe(lags[0]), describe(lags[1]), histP99(histBefore, histAfter))
}

func pctOf(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	l = slices.Clone(l)
	slices.Sort(l)
	return l[min(len(l)-1, int(float64(len(l))*p))]
}

// lagHistogram reads the server's admission lag histogram: cumulative
// counts by bucket bound ("+Inf" last), in /metrics' order.
func lagHistogram(client *http.Client, base string) [][2]string {
	res, err := client.Get(base + "/metrics")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var out [][2]string
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, `holdfast_queue_admission_lag_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if ok {
			out = append(out, [2]string{le, count})
		}
	}
	return out
}

// histP99 is the bound of the bucket that holds the 99th percentile of
// what was observed between two reads of a histogram.
func histP99(before, after [][2]string) string {
	prev := map[string]float64{}
	for _, b := range before {
		prev[b[0]], _ = strconv.ParseFloat(b[1], 64)
	}
	var les []string
	var counts []float64
	for _, a := range after {
		n, _ := strconv.ParseFloat(a[1], 64)
		les = append(les, a[0])
		counts = append(counts, n-prev[a[0]])
	}
	if len(counts) == 0 || counts[len(counts)-1] == 0 {
		return "? (no observations)"
	}
	total := counts[len(counts)-1]
	for i, c := range counts {
		if c >= 0.99*total {
			return les[i] + " s"
		}
	}
	return "+Inf"
}
