package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// errUnknownOutcome is a write that may or may not have committed: the
// connection was lost during its commit, or PostgreSQL committed it
// locally but warned that its wait for the synchronous standby was
// cancelled, so a failover now would lose it. Either way the client must
// not hear success; it hears unavailable and retries, with its key, and
// the retry finds the real outcome.
var errUnknownOutcome = errors.New("store: the write's outcome is unknown")

// connector makes lib/pq connections that watch what the server says about
// them: each gets its own notice handler, so a warning about synchronous
// replication is pinned to the commit that caused it, and a connection that
// met a read-only server or a shutdown leaves the pool.
type connector struct {
	pq *pq.Connector
	// idle bounds a call whose context has no deadline (a background
	// worker's); 0 leaves it unbounded (the tools, whose migrations and
	// audits may take long).
	idle time.Duration
}

// errConnect is a connection that could not be made, for any reason: no
// node answered, or none takes writes (lib/pq reports that in plain
// errors), or the server refused us. The service cannot sell without one.
var errConnect = errors.New("store: no connection to a server that takes writes")

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	var nc net.Conn
	dc, err := c.pq.Connect(context.WithValue(ctx, dialedKey{}, &nc))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConnect, err)
	}
	w := &conn{inner: dc, nc: nc, idle: c.idle}
	pq.SetNoticeHandler(dc, w.notice)
	return w, nil
}

// dialedKey carries, in the context of a Connect, where the dialer puts
// the socket it made: the last one, the node lib/pq kept.
type dialedKey struct{}

// dialer makes the sockets of the pool's connections (net.Dialer's, with
// its keepalives) and hands each to the conn being made, which bounds each
// call's reads and writes on it.
type dialer struct{ d net.Dialer }

func (d dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nc, err := d.d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if slot, ok := ctx.Value(dialedKey{}).(*net.Conn); ok {
		*slot = nc
	}
	return nc, nil
}

// closeGrace is how long past a call's deadline its socket is given up:
// by then lib/pq has asked the server to cancel the statement (it does so
// at the deadline), and a server that answered nothing since is hung or
// gone. lib/pq itself waits on the socket for as long as TCP does, up to
// a quarter of an hour for a peer that went silent.
const closeGrace = 2 * time.Second

// Overrun is the longest a store call may take past its context's
// deadline: a commit's wait for the standby (CommitWait), then the socket
// given up. A server's write timeout must outlast a request's deadline by
// more, so that the answer, 503 at worst, reaches its client.
const Overrun = CommitWait + closeGrace

// idleBound is the bound of a call without a deadline on a pool whose
// statements time out after statementTimeout: no statement runs longer,
// and no commit waits longer for the standby (CommitWait past detach's
// minute).
func idleBound(statementTimeout time.Duration) time.Duration {
	if statementTimeout <= 0 {
		return 0
	}
	return max(statementTimeout, time.Minute) + Overrun
}

func (c connector) Driver() driver.Driver { return c.pq.Driver() }

// conn wraps one lib/pq connection.
type conn struct {
	inner driver.Conn
	// nc is its socket (nil if the dialer did not see it), whose deadline
	// is each call's (bound); txEnd is the open transaction's, restored
	// after each statement in it.
	nc    net.Conn
	txEnd time.Time
	idle  time.Duration // see connector
	// unreplicated is set by a notice that a commit's wait for the
	// synchronous standby was cancelled; each statement and commit clears
	// it first.
	unreplicated atomic.Bool
	// bad is set by an error after which the connection must not be used
	// again: it reached a server that refuses writes (a standby, or a
	// primary being demoted), or one that is shutting down, or it broke.
	bad atomic.Bool
}

// notice runs on the goroutine reading the server's answer, before the
// statement's call returns.
func (c *conn) notice(e *pq.Error) {
	if e.Code == "01000" && strings.Contains(e.Message, "synchronous replication") {
		c.unreplicated.Store(true)
	}
}

// watch notes what err says about the connection. A statement refused as
// read-only did nothing, so outside a transaction database/sql may run it
// again on another connection: it is reported as driver.ErrBadConn too.
func (c *conn) watch(err error) error {
	if err == nil {
		return nil
	}
	if pqErr := pq.As(err); pqErr != nil {
		switch {
		case pqErr.Code == "25006": // read_only_sql_transaction
			c.bad.Store(true)
			return errors.Join(driver.ErrBadConn, err)
		case pqErr.Code == "57014":
			// query_canceled: a statement timeout, or a cancel request;
			// the session is fine. (A cancel for a context's end has
			// lib/pq drop the connection itself.)
		case pqErr.Code.Class() == "57", pqErr.Code.Class() == "08":
			c.bad.Store(true)
		}
		return err
	}
	if lostConn(err) {
		c.bad.Store(true)
	}
	return err
}

// lostConn reports whether err means the connection is gone.
func lostConn(err error) bool {
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &netErr)
}

// end is when a call under ctx gives its socket up: closeGrace past ctx's
// deadline, or the pool's idle bound from now without one; zero for never.
func (c *conn) end(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl.Add(closeGrace)
	}
	if c.idle > 0 {
		return time.Now().Add(c.idle)
	}
	return time.Time{}
}

// bound gives the socket the deadline of a call under ctx (end); the
// returned func puts back what was there before, the transaction's or
// none. A read or write past it fails with a timeout, and the connection
// leaves the pool (watch), instead of waiting on a server that stopped
// answering.
func (c *conn) bound(ctx context.Context) func() {
	if c.nc == nil {
		return func() {}
	}
	_ = c.nc.SetDeadline(c.end(ctx))
	return func() { _ = c.nc.SetDeadline(c.txEnd) }
}

func (c *conn) Prepare(q string) (driver.Stmt, error) {
	st, err := c.inner.Prepare(q)
	return st, c.watch(err)
}

func (c *conn) Close() error { return c.inner.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx bounds the whole transaction, its COMMIT (which has no context
// of its own) included, by ctx: lib/pq watches ctx until the end.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.nc != nil {
		c.txEnd = c.end(ctx)
		_ = c.nc.SetDeadline(c.txEnd)
	}
	tx, err := c.inner.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		c.endTx()
		return nil, c.watch(err)
	}
	return &connTx{inner: tx, c: c}, nil
}

// endTx drops the transaction's deadline.
func (c *conn) endTx() {
	c.txEnd = time.Time{}
	if c.nc != nil {
		_ = c.nc.SetDeadline(time.Time{})
	}
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	defer c.bound(ctx)()
	c.unreplicated.Store(false)
	res, err := c.inner.(driver.ExecerContext).ExecContext(ctx, q, args)
	if err == nil && c.unreplicated.Load() {
		return nil, errUnknownOutcome
	}
	return res, c.watch(err)
}

// QueryContext leaves the call's deadline on the socket until its rows
// are closed: they are read after it returns.
func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	unbound := c.bound(ctx)
	c.unreplicated.Store(false)
	rows, err := c.inner.(driver.QueryerContext).QueryContext(ctx, q, args)
	if err != nil {
		unbound()
		return nil, c.watch(err)
	}
	return &connRows{inner: rows, c: c, unbound: unbound}, nil
}

func (c *conn) Ping(ctx context.Context) error {
	defer c.bound(ctx)()
	return c.watch(c.inner.(driver.Pinger).Ping(ctx))
}

func (c *conn) ResetSession(ctx context.Context) error {
	if c.bad.Load() {
		return driver.ErrBadConn
	}
	return c.inner.(driver.SessionResetter).ResetSession(ctx)
}

func (c *conn) IsValid() bool {
	return !c.bad.Load() && c.inner.(driver.Validator).IsValid()
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.inner.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// connTx is a transaction whose commit is checked for an unknown outcome.
type connTx struct {
	inner driver.Tx
	c     *conn
}

// Commit reports a commit PostgreSQL warned was not replicated as
// errUnknownOutcome. A connection lost during the commit is an unknown
// outcome too; mapErr answers it unavailable like every lost connection.
func (t *connTx) Commit() error {
	defer t.c.endTx()
	t.c.unreplicated.Store(false)
	err := t.inner.Commit()
	if err == nil && t.c.unreplicated.Load() {
		return errUnknownOutcome
	}
	return t.c.watch(err)
}

func (t *connTx) Rollback() error {
	defer t.c.endTx()
	return t.c.watch(t.inner.Rollback())
}

// connRows reads a result; a statement outside a transaction commits as
// its last rows are read, so the end of the rows is where a warning about
// replication arrives.
type connRows struct {
	inner   driver.Rows
	c       *conn
	unbound func()
}

func (r *connRows) Columns() []string { return r.inner.Columns() }

func (r *connRows) Close() error {
	defer r.unbound()
	err := r.inner.Close()
	if err == nil && r.c.unreplicated.Load() {
		return errUnknownOutcome
	}
	return r.c.watch(err)
}

func (r *connRows) Next(dest []driver.Value) error {
	err := r.inner.Next(dest)
	if err == io.EOF {
		if r.c.unreplicated.Load() {
			return errUnknownOutcome
		}
		return io.EOF
	}
	return r.c.watch(err)
}

func (r *connRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.inner.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}
