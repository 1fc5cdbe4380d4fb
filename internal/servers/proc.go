package servers

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// FreePort asks the kernel for a TCP port on 127.0.0.1 that nothing listens
// on. Another process may take it before the caller binds it; the servers here
// are started at once and fail loudly if that happens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("servers: find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// account is the user a server process runs as; nil means the caller's own.
type account struct {
	uid, gid uint32
	name     string
}

// postgresAccount returns the postgres user when the caller is root, since
// PostgreSQL refuses to run as root, and nil otherwise.
func postgresAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("servers: running as root needs the postgres user (install postgresql): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("servers: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("servers: postgres gid %q: %w", u.Gid, err)
	}
	return &account{uid: uint32(uid), gid: uint32(gid), name: u.Username}, nil
}

// sysProcAttr starts a child in its own process group (a Ctrl-C at the
// terminal reaches only holdfast, which then stops its servers in order), as
// acct when given, and with a signal from the kernel should its parent die.
func sysProcAttr(acct *account, deathSignal syscall.Signal) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSignal}
	if acct != nil {
		attr.Credential = &syscall.Credential{Uid: acct.uid, Gid: acct.gid}
	}
	return attr
}

// handOver makes dir (created if missing) belong to acct, and checks acct can
// reach it through every parent directory.
func handOver(dir string, acct *account) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("servers: create %s: %w", dir, err)
	}
	if acct == nil {
		return nil
	}
	err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(acct.uid), int(acct.gid))
	})
	if err != nil {
		return fmt.Errorf("servers: give %s to %s: %w", dir, acct.name, err)
	}
	if !reachable(dir, acct) {
		return fmt.Errorf("servers: user %s cannot reach %s: a parent directory is closed to other users", acct.name, dir)
	}
	return nil
}

// reachable reports whether the postgres account (when the caller is root)
// can enter every directory above dir. It is false for a checkout under
// /root, whose mode is 0700.
func reachable(dir string, acct *account) bool {
	if acct == nil {
		return true
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return false
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		switch {
		case ok && sys.Uid == acct.uid && mode&0o100 != 0:
		case ok && sys.Gid == acct.gid && mode&0o010 != 0:
		case mode&0o001 != 0:
		default:
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// process is a running server child.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace, then kills.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("servers: server did not stop in time and was killed")
	}
}

// tail returns the last n bytes of a log file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
