package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/problem"
	"github.com/holdfast/holdfast/sale"
)

// DBOptions are the connection settings of a pool.
type DBOptions struct {
	MaxConns int
	// LockTimeout bounds how long a statement waits for a row lock; a
	// request that cannot lock its event within it is told busy.
	LockTimeout time.Duration
	// StatementTimeout bounds any one statement.
	StatementTimeout time.Duration
	// IdleInTxTimeout ends a session that sits in a transaction doing
	// nothing, so a stalled process cannot keep an event's row locked.
	IdleInTxTimeout time.Duration
}

// Open connects to PostgreSQL with every connection carrying opts' timeouts,
// and checks the server answers.
func Open(ctx context.Context, dsn string, opts DBOptions) (*sqlx.DB, error) {
	db, err := open(dsn, opts)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return db, nil
}

// open builds the pool without connecting.
func open(dsn string, opts DBOptions) (*sqlx.DB, error) {
	params := map[string]string{
		"timezone": "UTC",
		// One round trip per parameterised statement instead of two:
		// lib/pq then sends parse, bind and execute together. On a busy
		// machine every round trip is a scheduler wake-up, and the hot
		// event's row stays locked for all of them.
		"binary_parameters": "yes",
		// No JIT compilation: our statements are short, and compiling one
		// costs tens to hundreds of milliseconds. A plan with sequential
		// scans turned off (hold_batch, the publisher) costs ten billion
		// wherever a table has no other path, past jit_above_cost: the
		// publisher compiled every round, half a second of the database's
		// CPU for an update of ten milliseconds.
		"jit": "off",
		// A success is told only once its commit is durable, and on a
		// cluster with a synchronous standby, once the standby has it: a
		// server whose default is off or local (a common tuning) would
		// otherwise answer 201 for a booking a failover then loses. A URL
		// that sets it keeps its own (the operator's explicit choice,
		// which /ready then reports as asynchronous).
		"synchronous_commit": "on",
	}
	setMillis := func(name string, d time.Duration) {
		if d > 0 {
			params[name] = strconv.FormatInt(d.Milliseconds(), 10)
		}
	}
	setMillis("lock_timeout", opts.LockTimeout)
	setMillis("statement_timeout", opts.StatementTimeout)
	setMillis("idle_in_transaction_session_timeout", opts.IdleInTxTimeout)
	dsn, err := withParams(dsn, params)
	if err != nil {
		return nil, err
	}
	pqc, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	pqc.Dialer(dialer{})
	db := sqlx.NewDb(sql.OpenDB(connector{pq: pqc, idle: idleBound(opts.StatementTimeout)}), "postgres")
	if opts.MaxConns > 0 {
		db.SetMaxOpenConns(opts.MaxConns)
		db.SetMaxIdleConns(opts.MaxConns)
	}
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// withParams adds run-time parameters that lib/pq sends to the server at
// connection start, leaving any the caller set alone.
func withParams(dsn string, params map[string]string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("store: database url: %w", err)
		}
		q := u.Query()
		for k, v := range params {
			if q.Get(k) == "" {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	for k, v := range params {
		if !strings.Contains(dsn, k+"=") {
			dsn += " " + k + "=" + v
		}
	}
	return dsn, nil
}

// ValidateURL checks a database URL well enough to refuse a bad setting at
// start, before any connection is tried.
func ValidateURL(dsn string) error {
	if dsn == "" {
		return errors.New("is required")
	}
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return err
		}
		if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			return fmt.Errorf("scheme %q is not postgres://", u.Scheme)
		}
		if strings.Contains(u.Host, ",") {
			return errors.New("lists several hosts before the path, which lib/pq reads as one host name: list them in host= and their ports in port=")
		}
		q := u.Query()
		return oneWritable(q.Get("host"), q.Get("target_session_attrs"))
	}
	if !strings.Contains(dsn, "=") {
		return errors.New("is neither a postgres:// URL nor key=value pairs")
	}
	var hosts, attrs string
	for _, f := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			hosts = v
		case "target_session_attrs":
			attrs = v
		}
	}
	return oneWritable(hosts, attrs)
}

// oneWritable refuses several hosts (hosts is a comma-separated list, empty
// entries ignored) without target_session_attrs=read-write: lib/pq keeps
// the first node that answers, and a standby listed first would take every
// connection and refuse every write, each answered 503, for as long as it
// stays a standby. (primary is not enough with pg_auto_failover: see the
// README.)
func oneWritable(hosts, attrs string) error {
	n := 0
	for _, h := range strings.Split(hosts, ",") {
		if h != "" {
			n++
		}
	}
	if n > 1 && attrs != "read-write" {
		return errors.New("lists several hosts without target_session_attrs=read-write: a standby listed first would take every connection and refuse every write")
	}
	return nil
}

// inTx runs fn in a transaction and commits it. A deadlock or serialization
// failure rolls back and runs fn again, a few times, before the caller is
// told ErrUnavailable.
func inTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) error {
	return retrying(ctx, func() error { return runTx(ctx, db, fn) })
}

// retrying runs fn, and again (a few times, backing off) while it fails
// with a conflict the database asks us to retry: a deadlock or a
// serialization failure.
func retrying(ctx context.Context, fn func() error) error {
	const attempts = 4
	var err error
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, time.Duration(attempt*attempt)*5*time.Millisecond); err != nil {
				return err
			}
		}
		err = fn()
		if !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("%w: gave up after %d attempts: %v", sale.ErrUnavailable, attempts, err)
}

func runTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) error {
	conn, err := db.Connx(ctx)
	if err != nil {
		return mapErr(ctx, err)
	}
	defer conn.Close()
	// lib/pq cancels a transaction's statement when the context given to
	// BeginTx ends, COMMIT included, and PostgreSQL answers a commit whose
	// wait for the synchronous standby is cancelled as done, but perhaps
	// not replicated. So the request's end must not reach the COMMIT: the
	// transaction gets a context of its own, bounded, while fn's
	// statements still run under the request's.
	txCtx, cancel := detach(ctx)
	defer cancel()
	tx, err := conn.BeginTxx(txCtx, nil)
	if err != nil {
		return mapErr(ctx, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, qSettleIfRead); err != nil {
		return mapErr(ctx, err)
	}
	return mapErr(ctx, tx.Commit())
}

// qSettle writes a record to the WAL, a transactional logical message (a
// few bytes, no table), so that the COMMIT waits for the synchronous
// standby as any write's does; a transaction that wrote nothing does not
// wait. One that only read may have read a commit the standby lacks (the
// confirm that answered unavailable, retried): told to the client, it
// would be a success a failover can take back. WAL is replicated in order,
// so once this commit is on the standby, so is everything the transaction
// read. (An xid alone is not enough: PostgreSQL waits only for a
// transaction that wrote WAL before its commit record.)
const qSettle = `SELECT pg_logical_emit_message(true, 'holdfast', '')`

// qSettleIfRead is qSettle for a transaction that wrote nothing (it has no
// transaction id yet); one that wrote already waits at its COMMIT, and adds
// no WAL here.
const qSettleIfRead = `SELECT CASE WHEN pg_current_xact_id_if_assigned() IS NULL
	THEN pg_logical_emit_message(true, 'holdfast', '') END`

// settle makes what conn has read outside a transaction safe to tell: its
// own commit, of qSettle, waits for the synchronous standby, on the same
// server the read came from. A cancelled wait is an unknown outcome.
func settle(ctx context.Context, conn *onceConn) error {
	if _, err := conn.ExecContext(ctx, qSettle); err != nil {
		return mapErr(ctx, err)
	}
	return nil
}

// CommitWait is how long a commit may wait for the synchronous standby
// past the request's deadline before it is cancelled; its outcome is then
// unknown and the client is told unavailable. A server's write timeout
// must outlast the deadline by more than this, or that answer is written
// to a connection already closed.
const CommitWait = 10 * time.Second

// detach returns a context the end of ctx does not cancel, ending
// CommitWait after ctx's deadline (or a minute from now without one).
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := time.Minute
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), max(d, 0)+CommitWait)
}

// once returns a connection of the pool to run one write outside a
// transaction, for the caller to Close. sql.DB runs a query again on a
// fresh connection when the driver reports the old one bad, and lib/pq
// does so for a connection lost while it waits for the answer, after the
// write may have committed: run twice, a write that is not idempotent
// (a batch of holds, a new event) happens twice. A Conn never retries; the
// caller hears ErrUnavailable and the outcome is unknown, as for a lost
// COMMIT.
func (s *Store) once(ctx context.Context) (*onceConn, error) {
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	stmtCtx, cancel := detach(ctx)
	return &onceConn{Conn: conn, ctx: stmtCtx, cancel: cancel}, nil
}

// onceConn runs its one statement under a context of its own (see detach):
// the statement commits as it ends, and a cancel then would make the
// commit's outcome unknown for no gain. Its query methods ignore the
// context they are given.
type onceConn struct {
	*sqlx.Conn
	ctx    context.Context
	cancel context.CancelFunc
}

// QueryContext runs q under the connection's own context.
func (c *onceConn) QueryContext(_ context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.Conn.QueryContext(c.ctx, q, args...)
}

// GetContext runs q under the connection's own context.
func (c *onceConn) GetContext(_ context.Context, dest any, q string, args ...any) error {
	return c.Conn.GetContext(c.ctx, dest, q, args...)
}

// ExecContext runs q under the connection's own context.
func (c *onceConn) ExecContext(_ context.Context, q string, args ...any) (sql.Result, error) {
	return c.Conn.ExecContext(c.ctx, q, args...)
}

// Close returns the connection to the pool.
func (c *onceConn) Close() error {
	defer c.cancel()
	return c.Conn.Close()
}

// errRetry marks an error inTx may run the transaction again for.
var errRetry = errors.New("store: transaction conflict")

func retryable(err error) bool { return errors.Is(err, errRetry) }

// errStockGuard is the events_stock_guard check firing: the insert would
// take the stock below zero. Callers turn it into their sold-out error.
var errStockGuard = errors.New("store: stock guard")

// mapErr turns driver errors into the domain's.
func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errUnknownOutcome) || errors.Is(err, errConnect) {
		return fmt.Errorf("%w: %v", sale.ErrUnavailable, err)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("store: %w (%v)", ctxErr, err)
	}
	if pqErr := pq.As(err); pqErr != nil {
		switch pqErr.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return fmt.Errorf("%w: %v", errRetry, err)
		case "25006": // read_only_sql_transaction: a standby, or a primary being demoted
			return fmt.Errorf("%w: %v", sale.ErrUnavailable, err)
		case "55P03": // lock_not_available: lock_timeout passed
			return fmt.Errorf("%w: %v", sale.ErrBusy, err)
		case "23514": // check_violation
			if pqErr.Constraint == "events_stock_guard" {
				return fmt.Errorf("%w: %v", errStockGuard, err)
			}
			if pqErr.Constraint == "events_sale_window" {
				return sale.ErrSaleWindow
			}
			if pqErr.Constraint == "categories_stock_guard" {
				// An event's total moving its only category (schema/011)
				// below what that category has held and sold.
				return sale.ErrTotalBelowHeld
			}
		case "HF006": // the total of an event whose only category is seated (schema/023)
			return sale.ErrSeatedTotal
		case "HF005": // a seated category asked for by quantity (schema/013)
			return fmt.Errorf("%w: %v", errSeated, err)
		case "HF004": // a seat map changed while its event has bookings (schema/013)
			return sale.ErrSeatMapInUse
		case "23505": // unique_violation
			if pqErr.Constraint == "booking_seats_one_live" {
				// The seat blocks marked a booked seat free: the caller
				// rebuilds them and tries again.
				return fmt.Errorf("%w: %v", errSeatMarks, err)
			}
		case "22021", "22P05": // invalid or untranslatable text (a NUL, say): the input's fault
			return problem.Invalidf("the request holds text the database cannot store")
		}
		switch pqErr.Code.Class() {
		case "08", "57", "53": // connection, operator intervention, resources
			return fmt.Errorf("%w: %v", sale.ErrUnavailable, err)
		}
		return fmt.Errorf("store: %w", err)
	}
	var netErr net.Error
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.As(err, &netErr) {
		return fmt.Errorf("%w: %v", sale.ErrUnavailable, err)
	}
	return fmt.Errorf("store: %w", err)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// validID reports whether id can name a row of a SERIAL (int4) column. An id
// beyond that names nothing, and asking PostgreSQL would only earn an
// out-of-range error.
func validID(id int64) bool { return id > 0 && id <= math.MaxInt32 }

// DBUp reports whether PostgreSQL answers.
func DBUp(ctx context.Context, db *sqlx.DB) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var one int
	return db.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
}

// code is err's SQLSTATE, or "".
func code(err error) string {
	if pqErr := pq.As(err); pqErr != nil {
		return string(pqErr.Code)
	}
	return ""
}

// DBRole is what the server a pool reaches is in a cluster.
type DBRole struct {
	// Role is "primary" (takes writes) or "standby" (in recovery).
	Role string
	// Replication is "synchronous" when commits wait for a standby that
	// is in sync, "waiting" when a synchronous standby is named but none
	// is in sync (commits wait until one is, or until they are cancelled),
	// and "asynchronous" when none is named or the pool's sessions do not
	// wait for one (synchronous_commit off or local): a failover may lose
	// the latest commits.
	Replication string
}

// qDBRole reads the role and the replication mode, as the pool's own
// sessions commit. A standby named in synchronous_standby_names shows
// sync_state sync, or quorum under ANY n (pg_auto_failover's form);
// reading it takes pg_read_all_stats or superuser, without which
// Replication reads "waiting".
const qDBRole = `SELECT pg_is_in_recovery(),
	current_setting('synchronous_standby_names') <> '' AND current_setting('synchronous_commit') NOT IN ('off', 'local'),
	(SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))`

// ReadDBRole asks the server the pool reaches for its role.
func ReadDBRole(ctx context.Context, db *sqlx.DB) (DBRole, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var standby, named bool
	var inSync int
	if err := db.QueryRowContext(ctx, qDBRole).Scan(&standby, &named, &inSync); err != nil {
		return DBRole{}, mapErr(ctx, err)
	}
	r := DBRole{Role: "primary", Replication: "asynchronous"}
	if standby {
		r.Role = "standby"
	}
	switch {
	case named && inSync > 0:
		r.Replication = "synchronous"
	case named:
		r.Replication = "waiting"
	}
	return r, nil
}
