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
	"sync"
	"syscall"
	"time"
)

// FailoverSettings are the monitor's settings a cluster is started with.
// pg_auto_failover's defaults (a 5 s health check, 20 s before a node is
// declared unhealthy, 30 s for the old primary to demote itself) keep
// writes away for about 50 s after a primary dies; these bring it to under
// ten on one machine. The monitor waits for primary_demote_timeout before
// it promotes the standby, so that a primary that is only cut off has
// stopped itself (after network_partition_timeout, which the keepers get)
// before another takes writes: the demote timeout must stay above the
// partition timeout, or two primaries could take writes at once.
var FailoverSettings = map[string]string{
	"pgautofailover.health_check_period":               "1000",
	"pgautofailover.health_check_timeout":              "1000",
	"pgautofailover.health_check_retry_delay":          "500",
	"pgautofailover.node_considered_unhealthy_timeout": "3000",
	"pgautofailover.primary_demote_timeout":            "4000",
}

// NetworkPartitionTimeout is how long a keeper whose primary can reach
// neither the monitor nor its standby waits before it stops that primary.
const NetworkPartitionTimeout = 2 * time.Second

// AutoFailoverOptions says where a private pg_auto_failover cluster keeps
// its files.
type AutoFailoverOptions struct {
	// Dir holds the monitor's and the nodes' data directories, their
	// logs and pg_autoctl's configuration.
	Dir string
}

// AutoFailover is a running private pg_auto_failover cluster: a monitor and
// two data nodes, one primary and one synchronous standby, each a
// `pg_autoctl` process (the keeper) that runs its own PostgreSQL.
type AutoFailover struct {
	dir     string
	acct    *account
	bin     string // PostgreSQL's binaries, the version pg_auto_failover was built for
	autoctl string
	// Monitor is the monitor node; Nodes are the data nodes, node1 first.
	Monitor *AFNode
	Nodes   []*AFNode
}

// AFNode is one node of the cluster: its keeper and the PostgreSQL it runs.
type AFNode struct {
	af     *AutoFailover
	name   string
	port   int
	pgdata string
	log    string

	mu   sync.Mutex
	proc *process
}

// AutoFailoverBin returns pg_autoctl's path and the bin directory of the
// PostgreSQL version its extension is installed for, or an error saying
// what to install.
func AutoFailoverBin() (autoctl, bin string, err error) {
	autoctl, err = exec.LookPath("pg_autoctl")
	if err != nil {
		return "", "", errors.New("servers: no pg_autoctl (run `make deps`, or apt-get install postgresql-<major>-auto-failover for the installed PostgreSQL)")
	}
	controls, _ := filepath.Glob("/usr/share/postgresql/*/extension/pgautofailover.control")
	sort.Strings(controls)
	for i := len(controls) - 1; i >= 0; i-- {
		v := filepath.Base(filepath.Dir(filepath.Dir(controls[i])))
		b := filepath.Join("/usr/lib/postgresql", v, "bin")
		if _, err := os.Stat(filepath.Join(b, "pg_ctl")); err == nil {
			return autoctl, b, nil
		}
	}
	return "", "", errors.New("servers: no pgautofailover extension beside an installed PostgreSQL (apt-get install postgresql-<major>-auto-failover for it)")
}

// StartAutoFailover creates a fresh cluster in opts.Dir (which must be new
// or empty) and returns once node1 is primary and node2 its synchronous
// standby. Everything listens on 127.0.0.1 only, on free ports, with trust
// authentication and no TLS: the cluster is for tests on one machine.
func StartAutoFailover(ctx context.Context, opts AutoFailoverOptions) (_ *AutoFailover, err error) {
	autoctl, bin, err := AutoFailoverBin()
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
	if err := handOver(abs, acct); err != nil {
		return nil, err
	}
	af := &AutoFailover{dir: abs, acct: acct, bin: bin, autoctl: autoctl}
	defer func() {
		if err != nil {
			af.Stop()
		}
	}()
	newNode := func(name string) (*AFNode, error) {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		return &AFNode{af: af, name: name, port: port,
			pgdata: filepath.Join(abs, name), log: filepath.Join(abs, name+".log")}, nil
	}
	if af.Monitor, err = newNode("monitor"); err != nil {
		return nil, err
	}
	if err := af.startMonitor(ctx); err != nil {
		return nil, err
	}
	for _, name := range []string{"node1", "node2"} {
		n, err := newNode(name)
		if err != nil {
			return nil, err
		}
		af.Nodes = append(af.Nodes, n)
		if err := af.startNode(ctx, n); err != nil {
			return nil, err
		}
	}
	if err := af.WaitHealthy(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	// `config set` tells the running keeper to reload with SIGHUP, which
	// kills one still initialising; steady, it takes the new timeout at
	// once, and keeps it across restarts.
	for _, n := range af.Nodes {
		if err := af.autoctlCmd(ctx, "config", "set", "--pgdata", n.pgdata,
			"timeout.network_partition_timeout", strconv.Itoa(int(NetworkPartitionTimeout.Seconds()))); err != nil {
			return nil, err
		}
	}
	return af, nil
}

// env is what every pg_autoctl gets: its configuration under the cluster's
// directory (not the user's home, so clusters side by side never meet),
// and the right PostgreSQL first on the path.
func (af *AutoFailover) env() []string {
	return append(os.Environ(),
		"HOME="+af.dir,
		"XDG_CONFIG_HOME="+filepath.Join(af.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(af.dir, "share"),
		"XDG_RUNTIME_DIR="+filepath.Join(af.dir, "run"),
		"PG_CONFIG="+filepath.Join(af.bin, "pg_config"),
		"PATH="+af.bin+":"+os.Getenv("PATH"),
	)
}

// autoctlCmd is one pg_autoctl command that runs to its end.
func (af *AutoFailover) autoctlCmd(ctx context.Context, args ...string) error {
	// `pg_autoctl config set` sends SIGHUP to the running pg_autoctl so
	// that it reloads; with none running it signals its own process group
	// (pid 0), and so itself. The shell makes it immune.
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `trap "" HUP; exec "$0" "$@"`, af.autoctl}, args...)...)
	cmd.Env = af.env()
	cmd.Dir = af.dir
	cmd.SysProcAttr = sysProcAttr(af.acct, syscall.SIGKILL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("servers: pg_autoctl %s: %w: %s", strings.Join(args[:min(2, len(args))], " "), err, tail2(out, 3000))
	}
	return nil
}

func tail2(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

func (af *AutoFailover) startMonitor(ctx context.Context) error {
	m := af.Monitor
	if err := af.autoctlCmd(ctx, "create", "monitor", "--pgdata", m.pgdata, "--pgport", strconv.Itoa(m.port),
		"--pgctl", filepath.Join(af.bin, "pg_ctl"), "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"); err != nil {
		return err
	}
	// The monitor listens on every address unless told otherwise, and
	// `create monitor` has no flag for it.
	if err := af.autoctlCmd(ctx, "config", "set", "--pgdata", m.pgdata, "postgresql.listen_addresses", "127.0.0.1"); err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return err
	}
	db, err := m.open("pg_auto_failover")
	if err != nil {
		return err
	}
	defer db.Close()
	if err := waitSQL(ctx, db, 30*time.Second); err != nil {
		return fmt.Errorf("servers: monitor not ready: %w\n%s", err, tail(m.log, 2000))
	}
	keys := make([]string, 0, len(FailoverSettings))
	for k := range FailoverSettings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// ALTER SYSTEM takes no parameters; the names and values are ours.
		if _, err := db.ExecContext(ctx, fmt.Sprintf("ALTER SYSTEM SET %s = %s", k, FailoverSettings[k])); err != nil {
			return fmt.Errorf("servers: monitor setting %s: %w", k, err)
		}
	}
	if _, err := db.ExecContext(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("servers: monitor reload: %w", err)
	}
	return nil
}

// startNode creates a data node and runs its keeper; node1 becomes the
// primary, node2 its standby by a base backup of node1.
func (af *AutoFailover) startNode(ctx context.Context, n *AFNode) error {
	args := []string{"create", "postgres", "--pgdata", n.pgdata, "--pgport", strconv.Itoa(n.port),
		"--pgctl", filepath.Join(af.bin, "pg_ctl"), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
		"--auth", "trust", "--no-ssl", "--name", n.name, "--monitor", af.MonitorURL(), "--run"}
	if err := n.run(args); err != nil {
		return err
	}
	db, err := af.Monitor.open("pg_auto_failover")
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(2 * time.Minute)
	registered := false
	for !registered {
		var count int
		err := db.QueryRowContext(ctx, `SELECT count(*) FROM pgautofailover.node WHERE nodename = $1`, n.name).Scan(&count)
		registered = err == nil && count == 1
		if !registered {
			if n.exited() {
				return fmt.Errorf("servers: pg_autoctl %s exited at start (%v):\n%s", n.name, n.exitErr(), tail(n.log, 3000))
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("servers: %s never registered with the monitor: %v\n%s", n.name, err, tail(n.log, 3000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// WaitHealthy waits until one node is primary and the other its standby,
// both as the monitor wants them. While a standby is being built it issues
// CHECKPOINT on the other node now and then: the base backup waits for a
// checkpoint, and the default, spread one takes over a minute.
func (af *AutoFailover) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	mon, err := af.Monitor.open("pg_auto_failover")
	if err != nil {
		return err
	}
	defer mon.Close()
	deadline := time.Now().Add(timeout)
	var states string
	for {
		var primaries, standbys int
		err := mon.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE reportedstate = 'primary' AND goalstate = 'primary'),
			count(*) FILTER (WHERE reportedstate = 'secondary' AND goalstate = 'secondary'),
			string_agg(nodename || ' ' || reportedstate || '->' || goalstate, ', ' ORDER BY nodename)
			FROM pgautofailover.node`).Scan(&primaries, &standbys, &states)
		if err == nil && primaries == 1 && standbys == len(af.Nodes)-1 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("servers: cluster not healthy after %s (%s): %v\n%s", timeout, states, err, af.logTails())
		}
		for _, n := range af.Nodes {
			if n.Running() {
				n.checkpoint(ctx)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// checkpoint asks a node for a CHECKPOINT, ignoring failure (a standby
// refuses or a node is down; the nudge is only a nudge).
func (n *AFNode) checkpoint(ctx context.Context) {
	db, err := n.open("postgres")
	if err != nil {
		return
	}
	defer db.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var inRecovery bool
	if err := db.QueryRowContext(cctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err == nil && !inRecovery {
		_, _ = db.ExecContext(cctx, `CHECKPOINT`)
	}
}

func (af *AutoFailover) logTails() string {
	var b strings.Builder
	for _, n := range append([]*AFNode{af.Monitor}, af.Nodes...) {
		if n != nil {
			fmt.Fprintf(&b, "--- %s:\n%s\n", n.name, tail(n.log, 1500))
		}
	}
	return b.String()
}

// node is the data node the monitor names, with reportedstate and goalstate
// both one of states.
func (af *AutoFailover) node(ctx context.Context, states ...string) (*AFNode, error) {
	mon, err := af.Monitor.open("pg_auto_failover")
	if err != nil {
		return nil, err
	}
	defer mon.Close()
	var name string
	err = mon.QueryRowContext(ctx, `SELECT nodename FROM pgautofailover.node
		WHERE reportedstate::text = ANY($1) AND goalstate::text = ANY($1) ORDER BY nodeid LIMIT 1`,
		"{"+strings.Join(states, ",")+"}").Scan(&name)
	if err != nil {
		return nil, fmt.Errorf("servers: no node in state %v: %w", states, err)
	}
	for _, n := range af.Nodes {
		if n.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("servers: monitor names unknown node %q", name)
}

// Primary is the node taking writes (primary, or wait_primary: a primary
// whose standby is away, committing alone).
func (af *AutoFailover) Primary(ctx context.Context) (*AFNode, error) {
	return af.node(ctx, "primary", "wait_primary", "single")
}

// Standby is the node replicating from the primary, in sync.
func (af *AutoFailover) Standby(ctx context.Context) (*AFNode, error) {
	return af.node(ctx, "secondary")
}

// MonitorURL is the URL keepers reach the monitor by.
func (af *AutoFailover) MonitorURL() string {
	return "postgres://autoctl_node@127.0.0.1:" + strconv.Itoa(af.Monitor.port) + "/pg_auto_failover?sslmode=disable"
}

// URL is the connection URL of database dbname on whichever data node takes
// writes, in the form lib/pq reads: every host in host=, every port in
// port=, in the same order, and target_session_attrs=read-write, so that a
// new connection tries the nodes in turn and keeps the one that accepts
// writes. (lib/pq reads `host1:port1,host2:port2` as one host name.)
func (af *AutoFailover) URL(dbname string) string {
	hosts := make([]string, len(af.Nodes))
	ports := make([]string, len(af.Nodes))
	for i, n := range af.Nodes {
		hosts[i], ports[i] = "127.0.0.1", strconv.Itoa(n.port)
	}
	return "postgres://postgres@/" + url.PathEscape(dbname) + "?host=" + strings.Join(hosts, ",") +
		"&port=" + strings.Join(ports, ",") + "&target_session_attrs=read-write&sslmode=disable&connect_timeout=2"
}

// Stop kills every process of the cluster: the tests throw it away.
func (af *AutoFailover) Stop() {
	for _, n := range af.Nodes {
		n.Kill()
	}
	if af.Monitor != nil {
		af.Monitor.Kill()
	}
}

// Name is the node's name in the monitor (node1, node2, monitor).
func (n *AFNode) Name() string { return n.name }

// Port is the node's PostgreSQL port.
func (n *AFNode) Port() int { return n.port }

// LogPath is the keeper's log, which holds PostgreSQL's too.
func (n *AFNode) LogPath() string { return n.log }

// URL is the connection URL of database dbname on this node alone.
func (n *AFNode) URL(dbname string) string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(n.port) + "/" + url.PathEscape(dbname) + "?sslmode=disable&connect_timeout=2"
}

func (n *AFNode) open(dbname string) (*sql.DB, error) {
	db, err := sql.Open("postgres", n.URL(dbname))
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	db.SetMaxOpenConns(2)
	return db, nil
}

// Start runs the node's keeper again on its existing data directory, as
// after Kill: a node that was primary rejoins as a standby.
func (n *AFNode) Start(ctx context.Context) error {
	return n.run([]string{"run", "--pgdata", n.pgdata})
}

func (n *AFNode) run(args []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("servers: %s is running", n.name)
	}
	logFile, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("servers: open %s log: %w", n.name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(n.af.autoctl, args...)
	cmd.Env = n.af.env()
	cmd.Dir = n.af.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// SIGTERM makes pg_autoctl stop its PostgreSQL (fast) and exit.
	cmd.SysProcAttr = sysProcAttr(n.af.acct, syscall.SIGTERM)
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("servers: start pg_autoctl %s: %w", n.name, err)
	}
	n.proc = proc
	return nil
}

// Running reports whether the node's keeper is alive.
func (n *AFNode) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil && !n.proc.exited()
}

func (n *AFNode) exited() bool { return !n.Running() }

// Kill sends SIGKILL to the keeper, its PostgreSQL and every one of
// PostgreSQL's processes, as a machine that loses power would, and waits
// for the keeper to be gone. PostgreSQL puts each child (backend, WAL
// sender or receiver) in a process group of its own, so the keeper's group
// does not hold them: left alive, a WAL receiver would go on acknowledging
// commits for a moment after its node "died". The postmaster is stopped
// first, so that it forks no child while they are found.
func (n *AFNode) Kill() {
	n.mu.Lock()
	proc := n.proc
	n.mu.Unlock()
	pid, _ := n.PostmasterPID()
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
		for _, child := range children(pid) {
			_ = syscall.Kill(child, syscall.SIGKILL)
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if proc != nil && !proc.exited() {
		_ = syscall.Kill(-proc.cmd.Process.Pid, syscall.SIGKILL)
		<-proc.done
	}
}

// children lists the processes whose parent is pid, from /proc.
func children(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 {
			if ppid, err := strconv.Atoi(fields[1]); err == nil && ppid == pid {
				out = append(out, child)
			}
		}
	}
	return out
}

// KillPostmaster sends SIGKILL to the node's postmaster alone; the keeper
// lives on and starts it again, unless the monitor fails over first.
func (n *AFNode) KillPostmaster() error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// PostmasterPID is the pid in the node's postmaster.pid.
func (n *AFNode) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.pgdata, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("servers: %s postmaster pid: %w", n.name, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("servers: %s postmaster.pid: %w", n.name, err)
	}
	return pid, nil
}

// WALReceiverPID is the pid of a standby's WAL receiver.
func (n *AFNode) WALReceiverPID(ctx context.Context) (int, error) {
	db, err := n.open("postgres")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var pid int
	if err := db.QueryRowContext(ctx, `SELECT pid FROM pg_stat_wal_receiver`).Scan(&pid); err != nil {
		return 0, fmt.Errorf("servers: %s wal receiver: %w", n.name, err)
	}
	return pid, nil
}

// SignalWALReceiver sends sig to a standby's WAL receiver: SIGSTOP makes
// the primary's synchronous commits wait, as a standby cut off would,
// while every process stays up; SIGCONT lets it go on.
func (n *AFNode) SignalWALReceiver(ctx context.Context, sig syscall.Signal) (int, error) {
	pid, err := n.WALReceiverPID(ctx)
	if err != nil {
		return 0, err
	}
	return pid, syscall.Kill(pid, sig)
}

// waitSQL waits until db answers.
func waitSQL(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exitErr is how the keeper ended, nil while it runs.
func (n *AFNode) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || !n.proc.exited() {
		return nil
	}
	return n.proc.err
}
