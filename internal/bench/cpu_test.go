package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc's CPU times: USER_HZ, 100 on every Linux
// this runs on.
const clockTick = 10 * time.Millisecond

// cpu is the CPU time (user and system) a set of processes has used.
type cpu struct {
	server, postgres, redis, loadgen time.Duration
}

func (c cpu) minus(o cpu) cpu {
	return cpu{server: c.server - o.server, postgres: c.postgres - o.postgres, redis: c.redis - o.redis, loadgen: c.loadgen - o.loadgen}
}

// cpuNow reads the CPU time so far of the holdfast process serverPID, of
// PostgreSQL (the postmaster and every process it started: backends,
// WAL writer, checkpointer, autovacuum) and of this process, the load
// generator, and of Redis: the batched path asks it a few times a second,
// the waiting room on every request.
func (e *env) cpuNow(serverPID int) cpu {
	var c cpu
	c.server = procCPU(serverPID)
	if e.redisPID > 0 {
		c.redis = procCPU(e.redisPID)
	}
	c.loadgen = procCPU(os.Getpid())
	if pm, err := e.pg.PID(); err == nil {
		c.postgres = procCPU(pm)
		for _, pid := range children(pm) {
			c.postgres += procCPU(pid)
		}
	}
	return c
}

// procStat returns the fields of /proc/pid/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	// The name is in parentheses and may hold spaces: split after it.
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	return strings.Fields(s)
}

// procCPU is pid's user plus system time (fields 14 and 15 of stat).
func procCPU(pid int) time.Duration {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// children lists the processes whose parent is ppid.
func children(ppid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	want := strconv.Itoa(ppid)
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if f := procStat(pid); len(f) > 1 && f[1] == want {
			out = append(out, pid)
		}
	}
	return out
}
