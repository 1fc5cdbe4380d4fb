package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/servers"
)

// The failover suite: TestFailover runs each of haScenarios on a fresh
// pg_auto_failover cluster (internal/servers: a monitor, a primary and its
// synchronous standby), with two holdfast instances on the multi-host URL
// under the fault suite's load, and the same checks after each (holdfast
// check, no confirmed hold lost, no 5xx but 503 unavailable, both instances
// sell again). Beyond them every scenario asks again, with the same
// idempotency key, for each confirm that got no definite answer, and
// requires the answer to match the new primary. The short form (what
// `go test ./...` runs) plays kill-primary and cut-off-primary;
// HOLDFAST_HA=long (`make ha`) plays all of them with more load.

var (
	haShort = form{clients: 16, warm: time.Second, total: 3 * time.Second, small: 20, medium: 300}
	haLong  = form{clients: 48, warm: 5 * time.Second, total: 15 * time.Second, small: 50, medium: 3000}
)

// cutOff is how long cut-off-primary keeps the standby's WAL receiver
// stopped, cancelling the commits that wait for it, before the primary dies.
func cutOff(f form) time.Duration {
	if f.clients > haShort.clients {
		return 4 * time.Second
	}
	return 2 * time.Second
}

var haScenarios = []scenario{
	{name: "kill-primary", fault: killPrimary, verify: resolveUnsure},
	{name: "cut-off-primary", fault: cutOffPrimary, verify: resolveUnsure},
	{name: "kill-postmaster", fault: killPostmaster, verify: resolveUnsure},
	{name: "lose-standby", fault: loseStandby, verify: resolveUnsure},
}

func TestFailover(t *testing.T) {
	// Not parallel: a cluster of three servers and two instances is all
	// a small machine should run at once.
	f, list := haShort, haScenarios[:2]
	if os.Getenv("HOLDFAST_HA") == "long" {
		f, list = haLong, haScenarios
	}
	for _, sc := range list {
		t.Run(sc.name, func(t *testing.T) {
			c := newHACluster(t, 2)
			runScenario(t, c, f, sc)
		})
	}
}

// newHACluster starts a pg_auto_failover cluster, the suite's database on
// it, Redis and n instances on the cluster's multi-host URL.
func newHACluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := prepareCluster(t)
	began := time.Now()
	af, err := servers.StartAutoFailover(context.Background(), servers.AutoFailoverOptions{Dir: filepath.Join(c.dir, "af")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(af.Stop)
	c.af = af
	t.Logf("pg_auto_failover cluster up in %s", time.Since(began).Round(100*time.Millisecond))
	c.createDatabase(t, af.URL("postgres"), af.URL("faults"))
	db := c.openDB(t)
	if _, err := db.ExecContext(context.Background(), `CREATE TABLE failover_probe (at timestamptz DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	c.startInstances(t, n, clusterOptions{})
	return c
}

// firstWrite tries a write through the cluster's URL, on a new connection
// each time, until one commits, and returns when it did.
func (c *cluster) firstWrite(t *testing.T, limit time.Duration) time.Time {
	t.Helper()
	db, err := sql.Open("postgres", c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxIdleConns(0)
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, last = db.ExecContext(ctx, `INSERT INTO failover_probe DEFAULT VALUES`)
		cancel()
		if last == nil {
			return time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no write committed within %s: %v", limit, last)
	return time.Time{}
}

// nodeDB opens database faults on one node alone.
func nodeDB(t *testing.T, n *servers.AFNode) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", strings.Replace(n.URL("faults"), "/faults?", "/faults?application_name=faults-suite&", 1))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(2)
	t.Cleanup(func() { db.Close() })
	return db
}

// killPrimary kills the primary's node (keeper, postmaster, backends) under
// load, waits for the standby to take writes, then starts the old primary
// again and waits for it to rejoin as the standby.
func killPrimary(t *testing.T, c *cluster, f form) (window, string) {
	ctx := context.Background()
	p, err := c.af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	p.Kill()
	wrote := c.firstWrite(t, 90*time.Second)
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.af.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	rejoined := time.Since(from)
	if s, err := c.af.Standby(ctx); err != nil || s != p {
		t.Errorf("after the rejoin the standby is %v (%v); want %s", s, err, p.Name())
	}
	c.readyShows(t, "primary", "synchronous")
	return window{from, wrote}, fmt.Sprintf("primary %s killed (keeper, postmaster, backends); first write %s after the kill; %s back as the synchronous standby %s after the kill",
		p.Name(), wrote.Sub(from).Round(100*time.Millisecond), p.Name(), rejoined.Round(100*time.Millisecond))
}

// killPostmaster kills the primary's postmaster alone: its keeper starts it
// again, or the monitor fails over first; either way writes resume and the
// cluster heals.
func killPostmaster(t *testing.T, c *cluster, f form) (window, string) {
	ctx := context.Background()
	p, err := c.af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	if err := p.KillPostmaster(); err != nil {
		t.Fatal(err)
	}
	wrote := c.firstWrite(t, 90*time.Second)
	if err := c.af.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	now, err := c.af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	what := "its keeper restarted it and it is still the primary"
	if now != p {
		what = "the monitor failed over to " + now.Name() + " and " + p.Name() + " rejoined as the standby"
	}
	return window{from, wrote}, fmt.Sprintf("postmaster of primary %s killed; first write %s after the kill; %s; healthy %s after the kill",
		p.Name(), wrote.Sub(from).Round(100*time.Millisecond), what, time.Since(from).Round(100*time.Millisecond))
}

// loseStandby kills the standby's node while the primary runs. Commits wait
// for it (synchronous_commit on, the standby named) until the monitor
// decides the standby is gone and the primary commits alone
// (wait_primary); replication is never asynchronous before that decision.
// Then the standby comes back and catches up.
func loseStandby(t *testing.T, c *cluster, f form) (window, string) {
	ctx := context.Background()
	p, err := c.af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.af.Standby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pdb := nodeDB(t, p)
	var names string
	var inSync int
	if err := pdb.QueryRowContext(ctx, `SELECT current_setting('synchronous_standby_names'),
		(SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))`).Scan(&names, &inSync); err != nil || names == "" || inSync == 0 {
		t.Fatalf("before the fault synchronous_standby_names is %q with %d standbys in sync (%v); want one", names, inSync, err)
	}
	c.waitSyncInForce(t, pdb, s)
	from := time.Now()
	s.Kill()
	// A write begun now must wait until the monitor lets the primary
	// commit alone.
	type result struct {
		at  time.Time
		err error
	}
	done := make(chan result, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := pdb.ExecContext(cctx, `INSERT INTO failover_probe DEFAULT VALUES`)
		done <- result{time.Now(), err}
	}()
	var alone time.Time // when synchronous_standby_names became empty
	seen := map[string]bool{}
	var wrote result
	for waiting := true; waiting; {
		select {
		case wrote = <-done:
			waiting = false
		case <-time.After(100 * time.Millisecond):
		}
		if alone.IsZero() {
			var n string
			if err := pdb.QueryRowContext(ctx, `SELECT current_setting('synchronous_standby_names')`).Scan(&n); err == nil && n == "" {
				alone = time.Now()
			}
		}
		if r, ok := c.readyReplication(c.insts[0]); ok {
			seen[r] = true
		}
	}
	if wrote.err != nil {
		t.Fatalf("the write begun as the standby died failed: %v", wrote.err)
	}
	if alone.IsZero() {
		var n string
		_ = pdb.QueryRowContext(ctx, `SELECT current_setting('synchronous_standby_names')`).Scan(&n)
		if n != "" {
			t.Errorf("a write committed while the dead standby %q was still named synchronous", n)
		}
		alone = wrote.at
	}
	waited := wrote.at.Sub(from)
	if waited < 500*time.Millisecond {
		// Only the monitor may let the primary commit alone: a recent
		// wait_primary in its events explains a write that did not wait
		// (a busy machine's health checks can time out); nothing else
		// does.
		if events := c.monitorEvents(t, p.Name(), "wait_primary", from.Add(-3*time.Second)); len(events) > 0 {
			t.Logf("lose-standby: the write committed after %s; the monitor had just let %s commit alone: %s", waited, p.Name(), strings.Join(events, "; "))
		} else {
			t.Errorf("the write begun as the standby died committed after %s: it did not wait for the standby, and the monitor never let %s commit alone", waited, p.Name())
		}
	}
	t.Logf("lose-standby: /ready said replication %v while the standby was away", slices.Sorted(maps.Keys(seen)))
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.af.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	c.readyShows(t, "primary", "synchronous")
	return window{from, wrote.at}, fmt.Sprintf("standby %s killed; a write waited %s, until the monitor let %s commit alone (%s after the kill); %s back in sync %s after the kill",
		s.Name(), waited.Round(100*time.Millisecond), p.Name(), alone.Sub(from).Round(100*time.Millisecond), s.Name(), time.Since(from).Round(100*time.Millisecond))
}

// waitSyncInForce waits until a commit on the primary really waits for
// standby s. PostgreSQL applies a new synchronous_standby_names when its
// checkpointer processes the reload, which a checkpoint that is behind
// schedule defers: until then commits do not wait, though the setting and
// pg_stat_replication already name the standby. The probe stops the
// standby's WAL receiver and requires a write to wait; CHECKPOINT hurries
// a checkpoint in progress along.
func (c *cluster) waitSyncInForce(t *testing.T, pdb *sql.DB, s *servers.AFNode) {
	t.Helper()
	ctx := context.Background()
	for attempt := 1; attempt <= 20; attempt++ {
		pid, err := s.SignalWALReceiver(ctx, syscall.SIGSTOP)
		if err != nil {
			t.Fatal(err)
		}
		// The deadline cancels the wait; PostgreSQL then reports the
		// commit done (with a warning this plain pool ignores), so the
		// time taken is what tells.
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		began := time.Now()
		_, _ = pdb.ExecContext(wctx, `INSERT INTO failover_probe DEFAULT VALUES`)
		waited := time.Since(began) >= 400*time.Millisecond
		cancel()
		_ = syscall.Kill(pid, syscall.SIGCONT)
		if waited {
			if attempt > 1 {
				t.Logf("synchronous replication in force after %d probes", attempt)
			}
			return
		}
		t.Logf("probe %d: a commit did not wait for the stopped standby: PostgreSQL has not applied synchronous_standby_names yet; CHECKPOINT", attempt)
		_, _ = pdb.ExecContext(ctx, `CHECKPOINT`)
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("synchronous replication never came into force on the primary")
}

// cutOffPrimary is the one way a failover could lose a confirmed booking.
// The standby's WAL receiver is stopped (SIGSTOP), so every commit on the
// primary waits for it; the suite cancels those waits as they come
// (pg_cancel_backend, as a statement timeout or an operator would), and
// PostgreSQL reports each such commit as done, locally, with a warning that
// it might not have been replicated. Then the primary dies, the WAL
// receiver is killed with whatever it had not written, and the monitor
// promotes the standby, which lacks those commits. No client may have been
// told confirmed for any of them.
func cutOffPrimary(t *testing.T, c *cluster, f form) (window, string) {
	ctx := context.Background()
	p, err := c.af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.af.Standby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pdb := nodeDB(t, p)
	wal, err := s.SignalWALReceiver(ctx, syscall.SIGSTOP)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	cancelled := 0
	for time.Since(from) < cutOff(f) {
		var n int
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := pdb.QueryRowContext(cctx, `SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity
			WHERE wait_event = 'SyncRep' AND application_name LIKE 'holdfast-%'`).Scan(&n)
		cancel()
		if err == nil {
			cancelled += n
		}
		time.Sleep(150 * time.Millisecond)
	}
	killed := time.Now()
	p.Kill()
	// SIGKILL reaches a stopped process; the WAL still in its socket
	// dies with it, as it would with the network cut.
	_ = syscall.Kill(wal, syscall.SIGKILL)
	wrote := c.firstWrite(t, 90*time.Second)
	if cancelled == 0 {
		t.Errorf("no commit waited for the stopped standby: the scenario tested nothing")
	}
	note := fmt.Sprintf("standby %s's WAL receiver stopped %s, %d waiting commits cancelled on %s; %s killed; first write on %s %s after the kill",
		s.Name(), cutOff(f), cancelled, p.Name(), p.Name(), s.Name(), wrote.Sub(killed).Round(100*time.Millisecond))
	if f.clients > haShort.clients {
		// The old primary holds commits the new one never had: it must
		// be rewound before it can follow it.
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.af.WaitHealthy(ctx, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		note += fmt.Sprintf("; %s rewound and back as the standby %s after the kill", p.Name(), time.Since(killed).Round(100*time.Millisecond))
	}
	return window{from, wrote}, note
}

// monitorEvents returns the monitor's events since then that assigned node
// the goal state goal.
func (c *cluster) monitorEvents(t *testing.T, node, goal string, since time.Time) []string {
	t.Helper()
	db, err := sql.Open("postgres", c.af.MonitorURL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(context.Background(), `SELECT to_char(eventtime, 'HH24:MI:SS.MS') || ' ' || description
		FROM pgautofailover.event WHERE nodename = $1 AND goalstate::text = $2 AND eventtime > $3 ORDER BY eventid`, node, goal, since)
	if err != nil {
		t.Errorf("read the monitor's events: %v", err)
		return nil
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err == nil {
			out = append(out, e)
		}
	}
	return out
}

// resolveUnsure asks again, with the same key, for every confirm that got
// no definite answer during the fault, and requires a definite answer now
// that matches the database: 200 only for a hold confirmed there.
func resolveUnsure(t *testing.T, c *cluster, recs []record, w window) {
	var unsure []string
	for _, r := range recs {
		unsure = append(unsure, r.unsure...)
	}
	client := &http.Client{Timeout: 20 * time.Second}
	answers := map[int]int{}
	var told []string
	for _, id := range unsure {
		req, err := http.NewRequest(http.MethodPost, c.insts[0].base+"/holds/"+id+"/confirm", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Idempotency-Key", "confirm-"+id)
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("confirm %s again: %v", id, err)
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		answers[res.StatusCode]++
		switch res.StatusCode {
		case http.StatusOK:
			told = append(told, id)
		case http.StatusGone, http.StatusConflict, http.StatusNotFound:
		default:
			t.Errorf("confirm %s again answered %d %s; want a definite answer", id, res.StatusCode, b)
		}
	}
	lost, _ := c.compare(t, told, nil)
	t.Logf("%d confirms without a definite answer asked again: %v; %d of the 200s not confirmed in the database", len(unsure), answers, lost)
	c.firstHolds(t, recs, w)
}

// firstHolds logs when each instance answered its first hold after the
// fault began: the failover time as a buyer sees it.
func (c *cluster) firstHolds(t *testing.T, recs []record, w window) {
	for i, in := range c.insts {
		var first time.Time
		for _, r := range recs {
			for _, a := range r.answers {
				if a.inst == i && a.op == "hold" && a.status == http.StatusCreated && a.start.After(w.to.Add(-time.Minute)) && a.start.After(w.from) {
					if first.IsZero() || a.end.Before(first) {
						first = a.end
					}
				}
			}
		}
		if first.IsZero() {
			t.Logf("instance %s: no hold asked after the fault began was answered 201", in.name)
			continue
		}
		t.Logf("instance %s: first hold asked after the fault began answered 201 %s after it began", in.name, first.Sub(w.from).Round(100*time.Millisecond))
	}
}

// primaryReplication reads what the cluster's primary is, as /ready
// words it.
func (c *cluster) primaryReplication(t *testing.T) string {
	t.Helper()
	var named bool
	var inSync int
	err := c.openDB(t).QueryRowContext(context.Background(), `SELECT current_setting('synchronous_standby_names') <> '',
		(SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))`).Scan(&named, &inSync)
	switch {
	case err != nil:
		return "unreadable: " + err.Error()
	case named && inSync > 0:
		return "primary/synchronous"
	case named:
		return "primary/waiting"
	}
	return "primary/asynchronous"
}

// readyReplication reads an instance's /ready replication field.
func (c *cluster) readyReplication(in *instance) (string, bool) {
	client := &http.Client{Timeout: time.Second}
	res, err := client.Get(in.base + "/ready")
	if err != nil {
		return "", false
	}
	defer res.Body.Close()
	var r struct{ Role, Replication string }
	if json.NewDecoder(res.Body).Decode(&r) != nil || r.Replication == "" {
		return "", false
	}
	return r.Role + "/" + r.Replication, true
}

// readyShows requires every instance's /ready to report role and
// replication, within a few seconds (the monitor turns replication
// synchronous again once the standby has caught up).
func (c *cluster) readyShows(t *testing.T, role, replication string) {
	t.Helper()
	want := role + "/" + replication
	for _, in := range c.insts {
		got := ""
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if got, _ = c.readyReplication(in); got == want {
				break
			}
		}
		if got != want {
			// The monitor of a busy machine may have let the primary
			// commit alone again; /ready must then say what is so.
			if is := c.primaryReplication(t); got == is {
				t.Logf("instance %s: /ready says %q, as the primary is: the monitor changed it", in.name, got)
				continue
			}
			t.Errorf("instance %s: /ready says %q; want %q", in.name, got, want)
		}
	}
}
