package servers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Redis is a running private Redis server. It keeps nothing on disk: holdfast
// stores only short-lived locks there, and PostgreSQL is the source of truth.
type Redis struct {
	dir  string
	port int
	proc *process
	// args are extra redis-server arguments (a cluster node's).
	args []string
}

// StartRedis starts redis-server with its log in dir, on a free port.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("servers: create %s: %w", dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Redis{dir: abs, port: port}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Start starts the server; after Stop it comes back on the same port.
func (r *Redis) Start(ctx context.Context) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("servers: redis-server not found (run `make deps`, or apt-get install redis-server)")
	}
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--save", "",
		"--appendonly", "no",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", r.logPath(),
	}
	cmd := exec.Command(bin, append(args, r.args...)...)
	cmd.Dir = r.dir
	cmd.SysProcAttr = sysProcAttr(nil, syscall.SIGTERM)
	proc, err := startProcess(cmd)
	if err != nil {
		return fmt.Errorf("servers: start redis: %w", err)
	}
	r.proc = proc
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The server that answers must be ours: if another process took
		// the port first, ours exits and the other would answer the ping.
		if pid, err := r.pid(); err == nil && pid == cmd.Process.Pid {
			return nil
		} else if proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = proc.stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("servers: redis not ready: %v\n%s", err, tail(r.logPath(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Redis) logPath() string { return filepath.Join(r.dir, "redis.log") }

// pid asks the server for its process id (INFO server).
func (r *Redis) pid() (int, error) {
	conn, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	buf := make([]byte, 8192)
	n, err := io.ReadAtLeast(conn, buf, 1)
	if err != nil {
		return 0, err
	}
	// The reply is a bulk string; enough of it arrives in one read to hold
	// process_id, which comes early in the server section.
	for _, line := range strings.Split(string(buf[:n]), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no process_id in INFO reply")
}

// Stop shuts the server down.
func (r *Redis) Stop() error {
	if r.proc == nil {
		return nil
	}
	return r.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// Signal sends sig to the server, for tests that pause or kill it.
func (r *Redis) Signal(sig syscall.Signal) error {
	return r.proc.cmd.Process.Signal(sig)
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is the redis:// URL of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }
