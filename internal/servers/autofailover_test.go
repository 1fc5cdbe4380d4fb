package servers

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

// TestAutoFailover starts a cluster, checks it replicates synchronously and
// listens on 127.0.0.1 only, kills the primary's node and checks the
// standby takes writes through the multi-host URL, then brings the old
// primary back as a standby. It fails, never skips, without pg_autoctl.
func TestAutoFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "holdfast-af-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	began := time.Now()
	af, err := StartAutoFailover(ctx, AutoFailoverOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(af.Stop)
	t.Logf("cluster up in %s", time.Since(began).Round(100*time.Millisecond))

	primary, err := af.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standby, err := af.Standby(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if primary.Name() != "node1" || standby.Name() != "node2" {
		t.Fatalf("primary %s, standby %s; want node1, node2", primary.Name(), standby.Name())
	}
	db, err := sql.Open("postgres", af.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var names, listen string
	if err := db.QueryRowContext(ctx, `SELECT current_setting('synchronous_standby_names'), current_setting('listen_addresses')`).Scan(&names, &listen); err != nil {
		t.Fatal(err)
	}
	if names == "" || listen != "127.0.0.1" {
		t.Errorf("synchronous_standby_names %q, listen_addresses %q; want a standby named, 127.0.0.1", names, listen)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (x int); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}

	primary.Kill()
	killed := time.Now()
	db.SetMaxIdleConns(0) // every try below dials afresh, as a pool after a lost connection would
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := db.ExecContext(wctx, `INSERT INTO t VALUES (2)`)
		cancel()
		if err == nil {
			break
		}
		if time.Since(killed) > time.Minute {
			t.Fatalf("no write a minute after the primary was killed: %v\n%s", err, af.logTails())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("failover: first write %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2 {
		t.Errorf("rows after failover: %d, %v; want 2", n, err)
	}

	if err := primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := af.WaitHealthy(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if s, err := af.Standby(ctx); err != nil || s != primary {
		t.Errorf("standby after rejoin: %v, %v; want %s", s, err, primary.Name())
	}
}
