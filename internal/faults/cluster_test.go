package faults

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/proxy"
	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/schema"
)

// The instances' clocks, short so that a scenario takes seconds.
const (
	holdTTL    = 3 * time.Second
	sweepEvery = 1 * time.Second
	lockTTL    = 2 * time.Second
	lockWait   = 1 * time.Second
)

// redisPrefix is the instances' key prefix (the default): the suite reads
// their event locks in Redis under it.
const redisPrefix = "holdfast:"

// cluster is the system under test: one PostgreSQL, one Redis behind a
// proxy, and holdfast instances sharing them.
type cluster struct {
	dir   string
	bin   string
	pg    *servers.Postgres
	redis *servers.Redis
	proxy *proxy.Proxy
	dbURL string
	insts []*instance
	// af is the PostgreSQL cluster of the failover suite, pg nil then.
	af *servers.AutoFailover
}

// instance is one holdfast process; restart starts it again with the same
// arguments, on the same port.
type instance struct {
	name    string
	base    string
	logPath string
	args    []string
	bin     string

	// mark is the log's size when the current scenario began: logLines
	// reads from there.
	mark int64

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	paused bool
}

// clusterOptions says how a cluster differs from the default.
type clusterOptions struct {
	// appendOnly gives Redis an append-only file (appendfsync everysec),
	// so that a Redis killed and started again comes back with its data:
	// the waiting room's scenarios need it. Off, Redis comes back empty.
	appendOnly bool
}

// newCluster starts everything, registering its cleanup on t.
func newCluster(t *testing.T, n int, opts clusterOptions) *cluster {
	t.Helper()
	c := prepareCluster(t)
	var err error
	c.pg, err = servers.StartPostgres(context.Background(), servers.PostgresOptions{Dir: filepath.Join(c.dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.pg.Stop() })
	c.createDatabase(t, c.pg.URL("postgres"), c.pg.URL("faults"))
	c.startInstances(t, n, opts)
	return c
}

// prepareCluster makes the suite's directory and finds or builds the
// holdfast binary.
func prepareCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "holdfast-faults-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as the postgres user when the test runs as root; it
	// must be able to reach its directory under this one.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("HOLDFAST_FAULTS_KEEP") != "" {
			fmt.Fprintf(os.Stderr, "faults: kept %s\n", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	c := &cluster{dir: dir}

	c.bin = os.Getenv("HOLDFAST_BIN")
	if c.bin == "" {
		c.bin = filepath.Join(dir, "holdfast")
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(bctx, "go", "build", "-o", c.bin, "github.com/holdfast/holdfast/cmd/holdfast").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("build holdfast: %v\n%s", err, out)
		}
	}
	return c
}

// createDatabase creates the suite's database through adminURL and
// migrates it at dbURL, which becomes the instances' database.
func (c *cluster) createDatabase(t *testing.T, adminURL, dbURL string) {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("postgres", adminURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.ExecContext(ctx, `CREATE DATABASE faults`)
	admin.Close()
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	c.dbURL = dbURL
	// Migrate once here, so that the instances starting side by side do
	// not race each other to do it.
	db, err := sql.Open("postgres", c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = schema.Apply(ctx, db)
	db.Close()
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

// startInstances starts Redis, its proxy and n holdfast instances on the
// cluster's database.
func (c *cluster) startInstances(t *testing.T, n int, opts clusterOptions) {
	t.Helper()
	var err error
	c.redis, err = servers.StartRedisWith(context.Background(), servers.RedisOptions{Dir: filepath.Join(c.dir, "redis"), AppendOnly: opts.appendOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.redis.Stop() })
	c.proxy, err = proxy.Start(c.redis.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.proxy.Close)

	for i := 0; i < n; i++ {
		name := string(rune('a' + i))
		port, err := servers.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		in := &instance{
			name:    name,
			base:    "http://127.0.0.1:" + strconv.Itoa(port),
			logPath: filepath.Join(c.dir, "holdfast-"+name+".log"),
			bin:     c.bin,
			args: []string{"serve",
				"--addr", "127.0.0.1:" + strconv.Itoa(port),
				// application_name lets the suite find this instance's
				// sessions in pg_stat_activity and pg_locks.
				"--database-url", c.dbURL + "&application_name=holdfast-" + name,
				"--redis-url", "redis://" + c.proxy.Addr() + "/0",
				"--redis-prefix", redisPrefix,
				"--hold-ttl", holdTTL.String(),
				"--sweep-every", sweepEvery.String(),
				"--lock-ttl", lockTTL.String(),
				"--lock-wait", lockWait.String(),
				"--db-max-conns", "16",
				// The load comes from 127.0.0.1 alone.
				"--max-tickets-per-client", "0",
				"--log-level", logLevel(),
				// The webhook receiver of webhooks_test.go lives on
				// 127.0.0.1, and retries come quickly.
				"--admin-token", adminToken,
				"--webhook-allow-private",
				"--webhook-retry-base", "100ms",
			},
		}
		t.Cleanup(in.stop)
		if err := in.start(); err != nil {
			t.Fatal(err)
		}
		c.insts = append(c.insts, in)
	}
}

// logLevel is the instances' log level: info, or HOLDFAST_FAULTS_LOG_LEVEL
// (debug logs every request, for a closer look at a failure).
func logLevel() string {
	if l := os.Getenv("HOLDFAST_FAULTS_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

// start starts the process and waits until it answers /health.
func (in *instance) start() error {
	logFile, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	fmt.Fprintf(logFile, "---- faults: start %s at %s\n", in.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(in.bin, in.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Killed by the kernel if the test binary dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start holdfast %s: %w", in.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	in.mu.Lock()
	in.cmd, in.done, in.paused = cmd, done, false
	in.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("holdfast %s exited at start:\n%s", in.name, tailFile(in.logPath, 2000))
		default:
		}
		if res, err := client.Get(in.base + "/health"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("holdfast %s did not answer /health within a minute:\n%s", in.name, tailFile(in.logPath, 2000))
}

// running reports whether the process is alive (stopped counts as alive).
func (in *instance) running() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return false
	}
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process, keeping track of SIGSTOP and SIGCONT.
func (in *instance) signal(sig syscall.Signal) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil {
		return errors.New("not started")
	}
	if err := in.cmd.Process.Signal(sig); err != nil {
		return err
	}
	switch sig {
	case syscall.SIGSTOP:
		in.paused = true
	case syscall.SIGCONT:
		in.paused = false
	}
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (in *instance) kill() {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the process: resumed if paused, interrupted, killed if it has
// not stopped after a while. It is the instance's cleanup.
func (in *instance) stop() {
	in.mu.Lock()
	cmd, done, paused := in.cmd, in.done, in.paused
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// ensure brings the cluster back to health between scenarios, whatever the
// last one left behind after a failure: no delay, every instance running,
// resumed and answering.
func (c *cluster) ensure(t *testing.T) {
	t.Helper()
	c.proxy.SetDelay(0)
	for _, in := range c.insts {
		in.mu.Lock()
		paused := in.paused
		in.mu.Unlock()
		if paused {
			_ = in.signal(syscall.SIGCONT)
		}
		if !in.running() {
			if err := in.start(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// openDB opens a pool of the suite's own on the database. It is opened anew
// for every use: PostgreSQL may have been restarted since the last one.
func (c *cluster) openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

// eventSpec is one event a scenario sells, and how often a client picks it.
type eventSpec struct {
	id     int64
	name   string
	stock  int
	weight int
}

// newEvents inserts fresh events for a scenario, as the contract allows:
// plain SQL, with the oversell guard at its default (on).
func (c *cluster) newEvents(t *testing.T, scenario string, specs []eventSpec) []eventSpec {
	t.Helper()
	db := c.openDB(t)
	out := make([]eventSpec, len(specs))
	for i, s := range specs {
		s.name = scenario + " " + s.name
		err := db.QueryRowContext(context.Background(), `INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
			VALUES ($1, now() + interval '30 days', $2, $2, 25.00) RETURNING id`, s.name, s.stock).Scan(&s.id)
		if err != nil {
			t.Fatalf("insert event: %v", err)
		}
		out[i] = s
	}
	return out
}

// holdsRowLock reports how many of in's sessions hold a FOR UPDATE (row
// share) lock on the events table: a hold batch between locking its event
// row and committing.
func (c *cluster) holdsRowLock(ctx context.Context, db *sql.DB, in *instance) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(DISTINCT l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE a.application_name = $1 AND l.locktype = 'relation' AND l.granted
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.relation = 'events'::regclass AND l.mode = 'RowShareLock'`, "holdfast-"+in.name).Scan(&n)
	return n, err
}

// redisLocks counts the event locks in Redis, asked directly (not through
// the proxy) with a bare RESP command.
func (c *cluster) redisLocks() (int, error) {
	conn, err := net.DialTimeout("tcp", c.redis.Addr(), time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	pattern := redisPrefix + "event_lock:*"
	if _, err := fmt.Fprintf(conn, "*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n", len(pattern), pattern); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if !strings.HasPrefix(line, "*") {
		return 0, fmt.Errorf("redis: unexpected reply %q", line)
	}
	return strconv.Atoi(strings.TrimSpace(line[1:]))
}

// check runs the real `holdfast check` and returns how many events break
// the invariants, and its output.
func (c *cluster) check(t *testing.T) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.bin, "check", "--database-url", c.dbURL, "--sweep-every", sweepEvery.String()).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit) && exit.ExitCode() == 1:
		bad := 0
		for _, line := range strings.Split(string(out), "\n") {
			if _, err := fmt.Sscanf(line, "check: %d of", &bad); err == nil {
				break
			}
		}
		return max(bad, 1), string(out)
	default:
		t.Fatalf("holdfast check could not run: %v\n%s", err, out)
		return 0, ""
	}
}

// markLogs notes where the instances' logs end, so that logLines reads
// only what the coming scenario writes.
func (c *cluster) markLogs() {
	for _, in := range c.insts {
		if st, err := os.Stat(in.logPath); err == nil {
			in.mark = st.Size()
		}
	}
}

// logLines returns the lines of the instances' logs since markLogs that
// contain any of the needles, at most limit of them.
func (c *cluster) logLines(needles []string, limit int) []string {
	var out []string
	for _, in := range c.insts {
		f, err := os.Open(in.logPath)
		if err != nil {
			continue
		}
		_, _ = f.Seek(in.mark, io.SeekStart)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() && len(out) < limit {
			line := sc.Text()
			for _, n := range needles {
				if strings.Contains(line, n) {
					out = append(out, in.name+": "+line)
					break
				}
			}
		}
		f.Close()
	}
	return out
}

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
