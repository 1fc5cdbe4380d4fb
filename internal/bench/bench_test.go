package bench

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	_ "github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/schema"
)

// env is the service under test: a private PostgreSQL and Redis and two
// holdfast processes on them, one batching holds and one not.
type env struct {
	dir      string
	pg       *servers.Postgres
	redis    *servers.Redis
	db       *sql.DB
	dbURL    string
	batched  *server
	single   *server
	hot      int64 // the hot event of the batched server
	hotOne   int64 // the hot event of the unbatched server
	safe     int64 // the event /book/safe sells
	memory   int64
	spread   []int64 // 10,000 events
	mu       sync.Mutex
	results  []result
	extra    []string
	duration time.Duration
}

type server struct {
	cmd  *exec.Cmd
	base string
	log  string
}

var e *env

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		os.Exit(m.Run())
	}
	var err error
	e, err = setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench setup:", err)
		if e != nil {
			e.teardown()
		}
		os.Exit(1)
	}
	code := m.Run()
	e.report(os.Stdout)
	e.teardown()
	os.Exit(code)
}

func setup() (*env, error) {
	ctx := context.Background()
	d, err := time.ParseDuration(getenv("HOLDFAST_BENCH_DURATION", "5s"))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "holdfast-bench-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{dir: dir, duration: d}
	bin := os.Getenv("HOLDFAST_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "holdfast")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/holdfast/holdfast/cmd/holdfast").CombinedOutput()
		if err != nil {
			return e, fmt.Errorf("build: %v: %s", err, out)
		}
	}
	// A durable PostgreSQL, as in production: every commit waits for the
	// disk, which is what batching saves.
	e.pg, err = servers.StartPostgres(ctx, servers.PostgresOptions{Dir: filepath.Join(dir, "pg"), Durable: true,
		Settings: map[string]string{"shared_buffers": "256MB", "max_wal_size": "4GB"}})
	if err != nil {
		return e, err
	}
	e.redis, err = servers.StartRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return e, err
	}
	admin, err := sql.Open("postgres", e.pg.URL("postgres"))
	if err != nil {
		return e, err
	}
	defer admin.Close()
	if _, err := admin.Exec(`CREATE DATABASE bench`); err != nil {
		return e, err
	}
	e.dbURL = e.pg.URL("bench")
	if e.db, err = sql.Open("postgres", e.dbURL); err != nil {
		return e, err
	}
	if _, err := schema.Apply(ctx, e.db); err != nil {
		return e, err
	}
	for _, p := range []*int64{&e.hot, &e.hotOne, &e.safe, &e.memory} {
		if *p, err = e.event(100_000_000); err != nil {
			return e, err
		}
	}
	rows, err := e.db.Query(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		SELECT 'spread ' || g, now() + interval '30 days', 1000000, 1000000, 20 FROM generate_series(1, 10000) g RETURNING id`)
	if err != nil {
		return e, err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return e, err
		}
		e.spread = append(e.spread, id)
	}
	rows.Close()
	if e.batched, err = e.start(bin, "batched", "--batch=true"); err != nil {
		return e, err
	}
	if e.single, err = e.start(bin, "single", "--batch=false"); err != nil {
		return e, err
	}
	return e, nil
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (e *env) event(tickets int) (int64, error) {
	var id int64
	err := e.db.QueryRow(`INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('bench', now() + interval '30 days', $1, $1, 49.50) RETURNING id`, tickets).Scan(&id)
	return id, err
}

func (e *env) start(bin, name string, args ...string) (*server, error) {
	port, err := servers.FreePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(e.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	all := append([]string{"serve", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--database-url", e.dbURL,
		"--redis-url", e.redis.URL(), "--log-level", "warn", "--lock-wait", "5s"}, args...)
	cmd := exec.Command(bin, all...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, base: "http://127.0.0.1:" + strconv.Itoa(port), log: logPath}
	for i := 0; i < 300; i++ {
		if res, err := http.Get(s.base + "/health"); err == nil {
			res.Body.Close()
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, fmt.Errorf("%s did not start; see %s", name, logPath)
}

func (e *env) teardown() {
	for _, s := range []*server{e.batched, e.single} {
		if s != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(os.Interrupt)
			_ = s.cmd.Wait()
		}
	}
	if e.db != nil {
		e.db.Close()
	}
	if e.redis != nil {
		_ = e.redis.Stop()
	}
	if e.pg != nil {
		_ = e.pg.Stop()
	}
	_ = os.RemoveAll(e.dir)
}

func (e *env) record(b *testing.B, r result) {
	e.mu.Lock()
	e.results = append(e.results, r)
	e.mu.Unlock()
	b.ReportMetric(r.rate(), "ok/s")
	b.ReportMetric(float64(r.pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(r.pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(r.Busy), "429s")
	b.ReportMetric(float64(r.Server), "5xx")
	if r.MaxRSSKB > 0 {
		b.ReportMetric(float64(r.MaxRSSKB)/1024, "rss-MB")
	}
}

func holdBody(ev int64, c, i int) []byte {
	return fmt.Appendf(nil, `{"event_id":%d,"user_email":"c%d-%d@example.com","quantity":1}`, ev, c, i)
}

var clientCounts = []int{64, 256}

func forClients(b *testing.B, name string, base func() string, req request) {
	for _, n := range clientCounts {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) {
			e.record(b, run(context.Background(), name, base(), n, e.duration, req, 0))
		})
	}
}

func BenchmarkHealth(b *testing.B) {
	forClients(b, "GET /health", func() string { return e.batched.base }, func(c, i int) (string, string, []byte) {
		return "GET", "/health", nil
	})
}

func BenchmarkHoldsBatched(b *testing.B) {
	forClients(b, "POST /holds (batched)", func() string { return e.batched.base }, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(e.hot, c, i)
	})
}

func BenchmarkHoldsUnbatched(b *testing.B) {
	forClients(b, "POST /holds (--batch=false)", func() string { return e.single.base }, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(e.hotOne, c, i)
	})
}

func BenchmarkBookSafe(b *testing.B) {
	forClients(b, "POST /book/safe", func() string { return e.batched.base }, func(c, i int) (string, string, []byte) {
		return "POST", "/book/safe", holdBody(e.safe, c, i)
	})
}

func BenchmarkHoldsSpread(b *testing.B) {
	forClients(b, "POST /holds, 10,000 events", func() string { return e.batched.base }, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(e.spread[rand.IntN(len(e.spread))], c, i)
	})
}

// BenchmarkMemory holds 1,000 connections open against one hot event and
// reads the server process's resident memory while they run.
func BenchmarkMemory(b *testing.B) {
	r := run(context.Background(), "POST /holds, memory", e.batched.base, 1000, e.duration, func(c, i int) (string, string, []byte) {
		return "POST", "/holds", holdBody(e.memory, c, i)
	}, e.batched.cmd.Process.Pid)
	e.record(b, r)
}

func (e *env) report(w *os.File) {
	e.mu.Lock()
	defer e.mu.Unlock()
	base := map[string]result{}
	for _, r := range e.results {
		base[fmt.Sprintf("%s/%d", r.Name, r.Clients)] = r
	}
	ratio := func(r result, name string) string {
		o, ok := base[fmt.Sprintf("%s/%d", name, r.Clients)]
		if !ok || o.rate() == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", r.rate()/o.rate())
	}
	fmt.Fprintf(w, "\nholdfast benchmark, %s, %d CPUs, %s per run\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), e.duration)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients\tok/s\tp50 ms\tp99 ms\t429s\t5xx\tx unbatched\tx /health\tmax RSS MB\t")
	for _, r := range e.results {
		rss := "-"
		if r.MaxRSSKB > 0 {
			rss = fmt.Sprintf("%.1f", float64(r.MaxRSSKB)/1024)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%.1f\t%d\t%d\t%s\t%s\t%s\t\n", r.Name, r.Clients, r.rate(),
			float64(r.pct(0.5).Microseconds())/1000, float64(r.pct(0.99).Microseconds())/1000, r.Busy, r.Server,
			ratio(r, "POST /holds (--batch=false)"), ratio(r, "GET /health"), rss)
	}
	tw.Flush()
	if len(e.extra) > 0 {
		fmt.Fprintln(w, "\n"+strings.Join(e.extra, "\n"))
	}
}
