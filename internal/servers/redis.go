package servers

import (
	"bufio"
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

// RedisOptions says how to start a private Redis.
type RedisOptions struct {
	// Dir holds the server's log and, with AppendOnly, its data.
	Dir string
	// Port to listen on; 0 picks a free one.
	Port int
	// AppendOnly keeps an append-only file in Dir (appendfsync everysec),
	// so a server killed with SIGKILL and started again on Dir comes back
	// with its data. Off, the default, Redis keeps nothing on disk: holdfast's
	// locks and rate counts are short-lived and PostgreSQL is the source of
	// truth. The waiting room is what needs it on.
	AppendOnly bool
	// Args are extra redis-server arguments, such as a cluster node's.
	Args []string
}

// Redis is a running private Redis server.
type Redis struct {
	opts RedisOptions
	proc *process
}

// StartRedis starts redis-server with its log in dir, on a free port,
// keeping nothing on disk.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	return StartRedisWith(ctx, RedisOptions{Dir: dir})
}

// StartRedisWith starts redis-server as opts says.
func StartRedisWith(ctx context.Context, opts RedisOptions) (*Redis, error) {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("servers: create %s: %w", opts.Dir, err)
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	opts.Dir = abs
	if opts.Port == 0 {
		if opts.Port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	r := &Redis{opts: opts}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// redisBin finds a Redis binary, or says how to install it.
func redisBin(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("servers: %s not found (run `make deps`, or apt-get install redis-server redis-tools)", name)
	}
	return bin, nil
}

// Start starts the server; after Stop or Kill it comes back on the same
// port and directory, with its append-only file when it keeps one.
func (r *Redis) Start(ctx context.Context) error {
	bin, err := redisBin("redis-server")
	if err != nil {
		return err
	}
	args := []string{
		"--port", strconv.Itoa(r.opts.Port),
		"--bind", "127.0.0.1",
		"--dir", r.opts.Dir,
		"--save", "",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--logfile", r.logPath(),
	}
	if r.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, r.opts.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = r.opts.Dir
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
		// A server loading its append-only file answers INFO already, and
		// LOADING errors to data commands until done; wait for that too.
		info, err := r.Info()
		if err == nil && infoField(info, "process_id") == strconv.Itoa(cmd.Process.Pid) {
			if infoField(info, "loading") != "1" {
				return nil
			}
		} else if err == nil {
			err = fmt.Errorf("another process (pid %s) answers on port %d", infoField(info, "process_id"), r.opts.Port)
		}
		if proc.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			_ = proc.stop(syscall.SIGKILL, time.Second)
			return fmt.Errorf("servers: redis not ready: %v\n%s", err, tail(r.logPath(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *Redis) logPath() string { return filepath.Join(r.opts.Dir, "redis.log") }

// LogPath is the server's log file.
func (r *Redis) LogPath() string { return r.logPath() }

// Info returns the server's INFO text for one section, or the default
// sections when none is named (Redis before 7 takes at most one).
func (r *Redis) Info(section ...string) (string, error) {
	return redisCommand(r.Addr(), append([]string{"INFO"}, section...)...)
}

// redisCommand sends one command to addr and returns its reply, which
// must be a bulk or simple string: enough for INFO and CLUSTER INFO without
// a client library.
func redisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return "", err
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", errors.New(line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	default:
		return "", fmt.Errorf("unexpected reply %q", line)
	}
}

// infoField is the value of name in an INFO reply, or "".
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// Stop shuts the server down (SIGTERM: with an append-only file, Redis
// flushes it first).
func (r *Redis) Stop() error {
	if r.proc == nil {
		return nil
	}
	return r.proc.stop(syscall.SIGTERM, 10*time.Second)
}

// Kill stops the server with SIGKILL, as a crash would, and waits until it
// is gone: a test can then Start it again on the same port and directory.
func (r *Redis) Kill() error {
	if r.proc == nil || r.proc.exited() {
		return nil
	}
	if err := r.proc.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("servers: kill redis: %w", err)
	}
	<-r.proc.done
	return nil
}

// Signal sends sig to the server, for tests that pause or kill it.
func (r *Redis) Signal(sig syscall.Signal) error {
	return r.proc.cmd.Process.Signal(sig)
}

// Port is the TCP port the server listens on.
func (r *Redis) Port() int { return r.opts.Port }

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.opts.Port) }

// URL is the redis:// URL of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }
