package store_test

import (
	"context"
	"errors"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/holdfast/holdfast/hold"
	"github.com/holdfast/holdfast/internal/idempotency"
	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/internal/testenv"
	"github.com/holdfast/holdfast/sale"
	"github.com/holdfast/holdfast/store"
)

// onePool is a store whose pool has a single connection, so that a test
// can change that connection's session and see whether it is dropped.
func onePool(t *testing.T, url string) *store.Store {
	t.Helper()
	db, err := store.Open(context.Background(), url, store.DBOptions{
		MaxConns: 1, LockTimeout: 5 * time.Second, StatementTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return store.New(db)
}

func backendPID(t *testing.T, s *store.Store) int {
	t.Helper()
	var pid int
	if err := s.DB().GetContext(context.Background(), &pid, `SELECT pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestReadOnlyServerIsUnavailable: a pooled connection that reaches a
// server refusing writes (a standby, or a primary pg_auto_failover is
// demoting) answers unavailable, never an internal error, and leaves the
// pool, so the next write finds the primary on a new connection.
func TestReadOnlyServerIsUnavailable(t *testing.T) {
	t.Parallel()
	// One call only: lib/pq begins every transaction READ WRITE, which
	// overrides the session's default; on a standby that BEGIN is what
	// fails with 25006.
	for _, path := range []string{"one call"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			s := onePool(t, testenv.DatabaseURL(t))
			ev := newEvent(t, s, 10)
			before := backendPID(t, s)
			if _, err := s.DB().ExecContext(context.Background(), `SET default_transaction_read_only = on`); err != nil {
				t.Fatal(err)
			}
			_, err := s.CreateHolds(context.Background(), ev, []hold.Request{request(ev, "a@example.com", 1)}, time.Minute, noRender)
			if !errors.Is(err, sale.ErrUnavailable) {
				t.Fatalf("hold on a read-only session: %v; want ErrUnavailable", err)
			}
			if after := backendPID(t, s); after == before {
				t.Errorf("the read-only connection (pid %d) stayed in the pool", before)
			}
			takeHold(t, s, ev, 1, time.Minute)
		})
	}
}

// TestTerminatedConnectionIsUnavailable: a connection the server ended
// (SQLSTATE 57P01, as a fast shutdown or a failover ends it) answers
// unavailable and leaves the pool.
func TestTerminatedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	s := onePool(t, url)
	ev := newEvent(t, s, 10)
	pid := backendPID(t, s)
	admin := onePool(t, url)
	if _, err := admin.DB().ExecContext(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	h := takeHold(t, admin, ev, 1, time.Minute)
	_, err := s.Confirm(context.Background(), h.ID, nil, noRender)
	if err != nil && !errors.Is(err, sale.ErrUnavailable) {
		t.Fatalf("confirm on a terminated connection: %v; want ErrUnavailable or success on a new connection", err)
	}
	if err != nil {
		if _, err := s.Confirm(context.Background(), h.ID, nil, noRender); err != nil {
			t.Fatalf("confirm after the terminated connection: %v", err)
		}
	}
	if backendPID(t, s) == pid {
		t.Errorf("the terminated connection stayed in the pool")
	}
}

// syncServer starts a private PostgreSQL whose every synchronous commit
// waits for a standby that never comes, and returns a database URL on it
// whose sessions commit synchronously, and one whose sessions do not.
func syncServer(t *testing.T) (syncURL, localURL string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "holdfast-sync-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pg, err := servers.StartPostgres(context.Background(), servers.PostgresOptions{
		Dir:      filepath.Join(dir, "pg"),
		Settings: map[string]string{"synchronous_standby_names": "nobody"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	// The store's sessions commit synchronously unless the URL says
	// otherwise (the server's default, off on a test server, is not
	// theirs): the local URL says so.
	url := testenv.NewDatabase(t, pg.URL("postgres"))
	return url, url + "&synchronous_commit=local"
}

// TestTheStoreCommitsSynchronously: on a server whose default is not to
// wait for the disk or a standby (a test server's, a common tuning), the
// store's sessions still wait, so no success is told before it is
// durable; and a pool whose URL asks not to wait reads asynchronous,
// though a synchronous standby is named.
func TestTheStoreCommitsSynchronously(t *testing.T) {
	t.Parallel()
	var mode string
	if err := newStore(t).DB().GetContext(context.Background(), &mode, `SHOW synchronous_commit`); err != nil || mode != "on" {
		t.Fatalf("a pooled session's synchronous_commit: %q, %v; want on", mode, err)
	}
	syncURL, localURL := syncServer(t)
	role, err := store.ReadDBRole(context.Background(), onePool(t, localURL).DB())
	if err != nil || role.Replication != "asynchronous" {
		t.Fatalf("a pool whose commits do not wait: %+v, %v; want asynchronous", role, err)
	}
	role, err = store.ReadDBRole(context.Background(), onePool(t, syncURL).DB())
	if err != nil || role.Replication != "waiting" {
		t.Fatalf("a pool whose commits wait for a standby that never comes: %+v, %v; want waiting", role, err)
	}
}

// waitSyncRep waits until n sessions wait for the synchronous standby and
// returns their pids.
func waitSyncRep(t *testing.T, admin *store.Store, n int) []int {
	t.Helper()
	return waitSyncRepOf(t, admin, n, nil)
}

// waitSyncRepOf is waitSyncRep for a write whose answer comes on answered:
// an answer before the wait fails the test.
func waitSyncRepOf(t *testing.T, admin *store.Store, n int, answered <-chan error) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-answered:
			t.Fatalf("answered %v without waiting for the standby", err)
		default:
		}
		var pids []int
		if err := admin.DB().SelectContext(context.Background(), &pids,
			`SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'`); err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions wait for the standby; want %d", len(pids), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnreplicatedCommitIsNotSuccess: a commit whose wait for the
// synchronous standby is cancelled is reported by PostgreSQL as done, with
// a warning that it might not have been replicated; a failover then loses
// it. The store must report it unavailable (outcome unknown), never
// success, and the request's deadline must not be what cancels it.
func TestUnreplicatedCommitIsNotSuccess(t *testing.T) {
	t.Parallel()
	syncURL, localURL := syncServer(t)
	setup := onePool(t, localURL)
	s := newStoreURL(t, syncURL)
	ev := newEvent(t, setup, 10)

	cases := []struct {
		name  string
		write func(ctx context.Context) error
	}{
		{"confirm, a transaction", func(ctx context.Context) error {
			h := takeHold(t, setup, ev, 1, time.Minute)
			out, err := s.Confirm(ctx, h.ID, nil, noRender)
			if err == nil && out.Err != nil {
				return out.Err
			}
			return err
		}},
		{"hold_batch, one statement", func(ctx context.Context) error {
			outs, err := s.CreateHolds(ctx, ev, []hold.Request{request(ev, "b@example.com", 1)}, time.Minute, noRender)
			if err == nil && outs[0].Err != nil {
				return outs[0].Err
			}
			return err
		}},
	}
	for _, tc := range cases {
		// One at a time: each case cancels every session waiting.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- tc.write(ctx) }()
		pids := waitSyncRep(t, setup, 1)
		// Past the request's deadline the commit still waits: the
		// deadline did not cancel it.
		time.Sleep(500 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("%s: answered %v at the request's deadline; want the commit still waiting", tc.name, err)
		default:
		}
		if again := waitSyncRep(t, setup, 1); again[0] != pids[0] {
			t.Fatalf("%s: another session waits now", tc.name)
		}
		if _, err := setup.DB().ExecContext(context.Background(), `SELECT pg_cancel_backend($1)`, pids[0]); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, sale.ErrUnavailable) {
				t.Errorf("%s: a commit that might not have been replicated answered %v; want ErrUnavailable", tc.name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer after the cancel", tc.name)
		}
		cancel()
	}
}

func newStoreURL(t *testing.T, url string) *store.Store {
	t.Helper()
	db, err := store.Open(context.Background(), url, store.DBOptions{
		MaxConns: 4, LockTimeout: 5 * time.Second, StatementTimeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return store.New(db)
}

// TestMultiHostURL: a URL naming every node of a cluster, in the form
// lib/pq reads (hosts in host=, ports in port=, in the same order), passes
// ValidateURL and connects to the node that takes writes, past one that is
// down.
func TestMultiHostURL(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	addr, err := testenv.DatabaseAddr(url)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil { // a socket file, /dir/.s.PGSQL.port: lib/pq takes the directory as the host
		host, port = filepath.Dir(addr), strings.TrimPrefix(filepath.Ext(addr), ".")
	}
	dead, err := servers.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("host", "127.0.0.1,"+host)
	q.Set("port", strconv.Itoa(dead)+","+port)
	q.Set("target_session_attrs", "read-write")
	u.Host, u.RawQuery = "", q.Encode()
	multi := u.String()
	if err := store.ValidateURL(multi); err != nil {
		t.Fatalf("ValidateURL(%s): %v", multi, err)
	}
	s := newStoreURL(t, multi)
	ev := newEvent(t, s, 10)
	takeHold(t, s, ev, 1, time.Minute)
}

// A URL of several hosts must ask for the one that takes writes: lib/pq
// keeps the first node that answers, and a standby listed first would take
// every connection and refuse every write.
func TestAURLOfSeveralHostsAsksForTheWritableOne(t *testing.T) {
	t.Parallel()
	for dsn, ok := range map[string]bool{
		"postgres://a:5432/x":                                              true,
		"postgres://a:5432,b:5432/x":                                       false,
		"postgres://a:5432,b:5432/x?target_session_attrs=read-write":       false, // one host name to lib/pq
		"postgres://a:5432,b:5432/x?target_session_attrs=any":              false,
		"postgres:///x?host=/run/a,/run/b&port=1,2":                        false,
		"postgres:///x?host=/run/a,/run/b&target_session_attrs=read-write": true,
		"host=a,b dbname=x":                                                false,
		"host=a,b dbname=x target_session_attrs=read-write":                true,
		"host=a dbname=x":                                                  true,
	} {
		if err := store.ValidateURL(dsn); (err == nil) != ok {
			t.Errorf("ValidateURL(%q) = %v, want ok %v", dsn, err, ok)
		}
	}
}

// TestReplayWaitsForTheStandby: what a client is told again must be as
// safe as what it was told first. A confirm whose commit was not known to
// be replicated answered unavailable; its retry must not replay the kept
// response, nor read the hold as confirmed, from the primary's local copy
// alone: the retry waits for the standby as a write would, and answers
// unavailable again when that wait is cancelled.
func TestReplayWaitsForTheStandby(t *testing.T) {
	t.Parallel()
	syncURL, localURL := syncServer(t)
	setup := onePool(t, localURL)
	s := newStoreURL(t, syncURL)
	ev := newEvent(t, setup, 10)
	h := takeHold(t, setup, ev, 1, time.Minute)
	key := &idempotency.Key{Scope: "confirm", Key: "k-" + h.ID.String(), Hash: []byte("h")}
	render := func(hold.Hold, error) idempotency.Response {
		return idempotency.Response{Status: 200, Body: []byte(`{}`)}
	}

	err := cancelStandbyWait(t, setup, "the first confirm", func() error {
		_, err := s.Confirm(context.Background(), h.ID, key, render)
		return err
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Fatalf("first confirm: %v; want ErrUnavailable", err)
	}
	err = cancelStandbyWait(t, setup, "the replay of its key", func() error {
		_, err := s.Replay(context.Background(), key)
		return err
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("replay: %v; want ErrUnavailable", err)
	}
	err = cancelStandbyWait(t, setup, "a confirm without the key", func() error {
		out, err := s.Confirm(context.Background(), h.ID, nil, render)
		if err == nil && out.Err != nil {
			return out.Err
		}
		return err
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("confirm again: %v; want ErrUnavailable", err)
	}
	err = cancelStandbyWait(t, setup, "a read of the confirmed hold", func() error {
		_, err := s.Hold(context.Background(), h.ID)
		return err
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("read the hold: %v; want ErrUnavailable", err)
	}
	// A hold that is not confirmed promises nothing: its read waits for
	// no standby.
	pending := takeHold(t, setup, ev, 1, time.Minute)
	if got, err := s.Hold(context.Background(), pending.ID); err != nil || got.Status != hold.StatusPending {
		t.Errorf("read a pending hold: %v %v; want it pending at once", got.Status, err)
	}
}

// cancelStandbyWait runs write, cancels its wait for the standby (seen
// through setup, a pool that does not wait) and returns what write
// answered; it fails the test if write answered without waiting.
func cancelStandbyWait(t *testing.T, setup *store.Store, what string, write func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- write() }()
	t.Logf("%s: waiting for its wait for the standby", what)
	pid := waitSyncRepOf(t, setup, 1, done)[0]
	if _, err := setup.DB().ExecContext(context.Background(), `SELECT pg_cancel_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// TestABatchedReplayWaitsForTheStandby: a hold's key sent again replays
// the kept response from inside the batch, of one event or of several,
// and a batch of nothing but replays writes nothing of its own; its
// answer must still wait for the standby as the first one's did (the
// first may have answered unavailable, its commit not known to be
// replicated), and be unavailable when that wait is cancelled.
func TestABatchedReplayWaitsForTheStandby(t *testing.T) {
	t.Parallel()
	syncURL, localURL := syncServer(t)
	setup := onePool(t, localURL)
	s := newStoreURL(t, syncURL)
	ev := newEvent(t, setup, 10)
	render := func(hold.Hold, error) idempotency.Response {
		return idempotency.Response{Status: 201, Body: []byte(`{}`)}
	}
	req := request(ev, "replay@example.com", 1)
	req.Key = &idempotency.Key{Scope: hold.ScopeCreate, Key: "batched-replay", Hash: []byte("h")}
	ctx := context.Background()
	outs, err := setup.CreateHolds(ctx, ev, []hold.Request{req}, time.Minute, render)
	if err != nil || outs[0].Err != nil {
		t.Fatalf("the first hold: %v %v", err, outs)
	}
	outcome := func(outs []hold.Outcome, err error) error {
		if err == nil && len(outs) == 1 {
			return outs[0].Err
		}
		return err
	}
	err = cancelStandbyWait(t, setup, "the key's replay in a batch of one event", func() error {
		return outcome(s.CreateHolds(ctx, ev, []hold.Request{req}, time.Minute, render))
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("replay in a batch of one event: %v; want ErrUnavailable", err)
	}
	err = cancelStandbyWait(t, setup, "the key's replay in a batch of several events", func() error {
		outs, err := s.CreateHoldsEvents(ctx, []hold.EventBatch{{EventID: ev, Reqs: []hold.Request{req}}}, time.Minute, render)
		if err == nil && len(outs) == 1 {
			return outcome(outs[0], nil)
		}
		return err
	})
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Errorf("replay in a batch of several events: %v; want ErrUnavailable", err)
	}
}

// TestNoWritableServerIsUnavailable: while no node of the URL takes writes
// (the moment between a primary's demotion and its standby's promotion),
// lib/pq's connect fails with a plain error; that is unavailable, never an
// internal error.
func TestNoWritableServerIsUnavailable(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	s := newStoreURL(t, url)
	ev := newEvent(t, s, 10)
	// Every session of this pool starts read-only, as on a standby.
	ro := newStoreURLLazy(t, url+"&target_session_attrs=read-write&default_transaction_read_only=on")
	_, err := ro.CreateHolds(context.Background(), ev, []hold.Request{request(ev, "a@example.com", 1)}, time.Minute, noRender)
	if !errors.Is(err, sale.ErrUnavailable) {
		t.Fatalf("hold with no writable server: %v; want ErrUnavailable", err)
	}
}

// newStoreURLLazy is newStoreURL for a URL Open's first connection may
// fail on: it builds the pool without checking the server answers.
func newStoreURLLazy(t *testing.T, url string) *store.Store {
	t.Helper()
	db, err := store.OpenLazy(url, store.DBOptions{MaxConns: 2, LockTimeout: 5 * time.Second, StatementTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return store.New(db)
}

// TestAServerThatStopsAnsweringEndsACallByItsDeadline: a backend that stops
// (SIGSTOP: its host hung, or cut off, as the kernel still acknowledges)
// ends a call a little after its deadline, where lib/pq alone
// waits on the socket for as long as TCP does; and the connection leaves
// the pool, so the next call gets a new one that works.
func TestAServerThatStopsAnsweringEndsACallByItsDeadline(t *testing.T) {
	t.Parallel()
	_, localURL := syncServer(t) // a server of its own: this test stops one of its backends
	s := onePool(t, localURL)
	ev := newEvent(t, s, 10)
	h := takeHold(t, s, ev, 1, time.Minute)
	pid := backendPID(t, s)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan struct{})
	resume := sync.OnceFunc(func() { _ = syscall.Kill(pid, syscall.SIGCONT); close(resumed) })
	t.Cleanup(resume)
	go func() { // so that a failing run ends
		select {
		case <-time.After(30 * time.Second):
			resume()
		case <-resumed:
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	_, err := s.Hold(ctx, h.ID)
	// The read runs as a write would (it may settle a commit), so it has
	// the store's whole overrun past its deadline.
	if took, most := time.Since(began), time.Second+store.Overrun+3*time.Second; err == nil || took > most {
		t.Fatalf("a read from a stopped backend, 1 s deadline: %v after %s; want an error (the request's deadline: 503) within %s", err, took.Round(time.Millisecond), most)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Hold(ctx, h.ID); err != nil {
		t.Fatalf("the next read, on a new connection: %v", err)
	}
}

// A statement cancelled by its timeout (57014, of class 57 with the
// shutdowns) leaves a session that is fine: the connection stays in the
// pool, where dropping it cost a new connection each time under overload.
func TestAStatementTimeoutKeepsItsConnection(t *testing.T) {
	t.Parallel()
	s := onePool(t, testenv.DatabaseURL(t))
	ctx := context.Background()
	before := backendPID(t, s)
	if _, err := s.DB().ExecContext(ctx, `SET statement_timeout = '20ms'`); err != nil {
		t.Fatal(err)
	}
	_, err := s.DB().ExecContext(ctx, `SELECT pg_sleep(1)`)
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "57014" {
		t.Fatalf("a statement past its timeout: %v, want 57014", err)
	}
	if _, err := s.DB().ExecContext(ctx, `RESET statement_timeout`); err != nil {
		t.Fatal(err)
	}
	if after := backendPID(t, s); after != before {
		t.Errorf("the connection of a timed-out statement (pid %d) left the pool (now %d)", before, after)
	}
}
