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
type connector struct{ pq *pq.Connector }

// errConnect is a connection that could not be made, for any reason: no
// node answered, or none takes writes (lib/pq reports that in plain
// errors), or the server refused us. The service cannot sell without one.
var errConnect = errors.New("store: no connection to a server that takes writes")

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.pq.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errConnect, err)
	}
	w := &conn{inner: dc}
	pq.SetNoticeHandler(dc, w.notice)
	return w, nil
}

func (c connector) Driver() driver.Driver { return c.pq.Driver() }

// conn wraps one lib/pq connection.
type conn struct {
	inner driver.Conn
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

func (c *conn) Prepare(q string) (driver.Stmt, error) {
	st, err := c.inner.Prepare(q)
	return st, c.watch(err)
}

func (c *conn) Close() error { return c.inner.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.inner.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, c.watch(err)
	}
	return &connTx{inner: tx, c: c}, nil
}

func (c *conn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.unreplicated.Store(false)
	res, err := c.inner.(driver.ExecerContext).ExecContext(ctx, q, args)
	if err == nil && c.unreplicated.Load() {
		return nil, errUnknownOutcome
	}
	return res, c.watch(err)
}

func (c *conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.unreplicated.Store(false)
	rows, err := c.inner.(driver.QueryerContext).QueryContext(ctx, q, args)
	if err != nil {
		return nil, c.watch(err)
	}
	return &connRows{inner: rows, c: c}, nil
}

func (c *conn) Ping(ctx context.Context) error {
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
	t.c.unreplicated.Store(false)
	err := t.inner.Commit()
	if err == nil && t.c.unreplicated.Load() {
		return errUnknownOutcome
	}
	return t.c.watch(err)
}

func (t *connTx) Rollback() error { return t.c.watch(t.inner.Rollback()) }

// connRows reads a result; a statement outside a transaction commits as
// its last rows are read, so the end of the rows is where a warning about
// replication arrives.
type connRows struct {
	inner driver.Rows
	c     *conn
}

func (r *connRows) Columns() []string { return r.inner.Columns() }

func (r *connRows) Close() error {
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
