package servers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq" // the driver the readiness probe connects with
)

// PostgresOptions says how to start a private PostgreSQL.
type PostgresOptions struct {
	// Dir holds the server's files: data/, sock/ and postgres.log.
	Dir string
	// Port to listen on; 0 picks a free one.
	Port int
	// Durable keeps fsync on. Tests leave it off: their data is thrown away,
	// and fsync would make every commit wait for the disk.
	Durable bool
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// Postgres is a running private PostgreSQL server.
type Postgres struct {
	opts PostgresOptions
	acct *account
	bin  string
	proc *process
}

// PostgresCanReach reports whether the user PostgreSQL will run as can enter
// dir's parents; `holdfast dev` uses it to pick another place for the data
// when the checkout sits under a private home directory.
func PostgresCanReach(dir string) (bool, error) {
	acct, err := postgresAccount()
	if err != nil {
		return false, err
	}
	return reachable(dir, acct), nil
}

// PostgresBinDir returns the directory of the newest installed PostgreSQL's
// server binaries (Debian puts them in /usr/lib/postgresql/N/bin), or
// $HOLDFAST_PG_BIN when set.
func PostgresBinDir() (string, error) {
	if dir := os.Getenv("HOLDFAST_PG_BIN"); dir != "" {
		return dir, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) == 0 {
		return "", errors.New("servers: no PostgreSQL server under /usr/lib/postgresql (run `make deps`, or apt-get install postgresql)")
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

func version(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return n
}

// StartPostgres initialises opts.Dir/data if it is new and starts the server,
// returning once it accepts connections.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	acct, err := postgresAccount()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	opts.Dir = abs
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, "sock")} {
		if err := handOver(d, acct); err != nil {
			return nil, err
		}
	}
	pg := &Postgres{opts: opts, acct: acct, bin: bin}
	if err := pg.initdb(ctx); err != nil {
		return nil, err
	}
	if err := pg.Start(ctx); err != nil {
		return nil, err
	}
	return pg, nil
}

func (pg *Postgres) dataDir() string { return filepath.Join(pg.opts.Dir, "data") }
func (pg *Postgres) logPath() string { return filepath.Join(pg.opts.Dir, "postgres.log") }

// LogPath is the server's log file.
func (pg *Postgres) LogPath() string { return pg.logPath() }

func (pg *Postgres) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(pg.dataDir(), "PG_VERSION")); err == nil {
		return nil
	}
	// A half-made data directory from an interrupted initdb would make the
	// next one refuse to run.
	if err := os.RemoveAll(pg.dataDir()); err != nil {
		return fmt.Errorf("servers: clear %s: %w", pg.dataDir(), err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(pg.bin, "initdb"),
		"-D", pg.dataDir(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = sysProcAttr(pg.acct, syscall.SIGKILL)
	cmd.Dir = pg.opts.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("servers: initdb: %w: %s", err, out)
	}
	return nil
}

// Start starts the server on its data directory; after Stop it starts again
// on the same port, as a restarted server would.
func (pg *Postgres) Start(ctx context.Context) error {
	if pg.opts.Port == 0 {
		port, err := FreePort()
		if err != nil {
			return err
		}
		pg.opts.Port = port
	}
	args := []string{
		"-D", pg.dataDir(),
		"-p", strconv.Itoa(pg.opts.Port),
		"-h", "127.0.0.1",
		"-k", filepath.Join(pg.opts.Dir, "sock"),
		"-c", "max_connections=500",
		"-c", "shared_buffers=128MB",
	}
	if !pg.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	keys := make([]string, 0, len(pg.opts.Settings))
	for k := range pg.opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+pg.opts.Settings[k])
	}
	logFile, err := os.OpenFile(pg.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("servers: open postgres log: %w", err)
	}
	defer logFile.Close() // the child keeps its own copy of the descriptor
	cmd := exec.Command(filepath.Join(pg.bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = pg.opts.Dir
	// SIGINT is PostgreSQL's fast shutdown: roll back and stop at once.
	cmd.SysProcAttr = sysProcAttr(pg.acct, syscall.SIGINT)
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("servers: start postgres: %w", err)
	}
	pg.proc = proc
	if err := pg.waitReady(ctx); err != nil {
		_ = proc.stop(syscall.SIGQUIT, 5*time.Second)
		return err
	}
	return nil
}

func (pg *Postgres) waitReady(ctx context.Context) error {
	db, err := sql.Open("postgres", pg.URL("postgres"))
	if err != nil {
		return fmt.Errorf("servers: %w", err)
	}
	defer db.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The server that answers on the port must be this one, on its
		// data directory: packages' tests start servers in parallel,
		// and another's may have taken the port between FreePort and
		// this one's bind, which it then failed.
		var dir string
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err = db.QueryRowContext(pingCtx, `SELECT current_setting('data_directory')`).Scan(&dir)
		cancel()
		if err == nil && !sameDir(dir, pg.dataDir()) {
			err = fmt.Errorf("the server on port %d runs on %s, not on %s", pg.opts.Port, dir, pg.dataDir())
		}
		if err == nil {
			return nil
		}
		if pg.proc.exited() {
			return fmt.Errorf("servers: postgres exited at start: %v\n%s", pg.proc.err, tail(pg.logPath(), 2000))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("servers: postgres not ready: %w\n%s", err, tail(pg.logPath(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sameDir reports whether a and b name one directory.
func sameDir(a, b string) bool {
	ia, errA := os.Stat(a)
	ib, errB := os.Stat(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return os.SameFile(ia, ib)
}

// Stop shuts the server down (fast shutdown: open transactions roll back).
func (pg *Postgres) Stop() error {
	if pg.proc == nil {
		return nil
	}
	return pg.proc.stop(syscall.SIGINT, 30*time.Second)
}

// Signal sends sig to the server's postmaster, for tests that pause it.
func (pg *Postgres) Signal(sig syscall.Signal) error {
	return pg.proc.cmd.Process.Signal(sig)
}

// PID is the postmaster's process id, read from its pid file: the process
// started may be a wrapper that switched user. Benchmarks use it to find
// the server's processes and account for their CPU.
func (pg *Postgres) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(pg.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("servers: postgres pid: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("servers: postgres pid file: %w", err)
	}
	return pid, nil
}

// Port is the TCP port the server listens on.
func (pg *Postgres) Port() int { return pg.opts.Port }

// URL is the connection URL of database dbname on this server.
func (pg *Postgres) URL(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     "127.0.0.1:" + strconv.Itoa(pg.opts.Port),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}
