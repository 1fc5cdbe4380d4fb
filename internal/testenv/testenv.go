// Package testenv gives tests a real PostgreSQL and a real Redis, and on
// demand a real Redis Cluster.
//
// It uses DATABASE_URL and REDIS_URL when they are set; otherwise (as under
// `make test`, which sets neither) it starts private servers once per test
// binary, stopped by Main. Each test then gets a database of its own,
// migrated, and a Redis key prefix of its own, so tests run in parallel and
// again on a machine a crashed run left dirty. RedisCluster starts a private
// three-master cluster the first time a test of the binary asks for one.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/schema"
)

var shared struct {
	once     sync.Once
	err      error
	pgURL    string // a URL of the server's maintenance database
	redisURL string
	pg       *servers.Postgres
	redis    *servers.Redis
	dirsMu   sync.Mutex // the servers start under different Onces
	dirs     []string

	clusterOnce sync.Once
	clusterErr  error
	cluster     *servers.RedisCluster
}

// Main runs the package's tests and stops any private servers they started.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		_ = shared.cluster.Stop()
	}
	if shared.redis != nil {
		_ = shared.redis.Stop()
	}
	if shared.pg != nil {
		_ = shared.pg.Stop()
	}
	for _, d := range shared.dirs {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}

func setup() {
	shared.pgURL = os.Getenv("DATABASE_URL")
	shared.redisURL = os.Getenv("REDIS_URL")
	ctx := context.Background()
	if shared.pgURL == "" {
		pg, err := StartPostgres(ctx)
		if err != nil {
			shared.err = err
			return
		}
		shared.pg = pg
		shared.pgURL = pg.URL("postgres")
	}
	if shared.redisURL == "" {
		dir, err := os.MkdirTemp("", "holdfast-redis-")
		if err != nil {
			shared.err = err
			return
		}
		keepDir(dir)
		r, err := servers.StartRedis(ctx, dir)
		if err != nil {
			shared.err = err
			return
		}
		shared.redis = r
		shared.redisURL = r.URL()
	}
}

// StartPostgres starts a private PostgreSQL in a new temporary directory;
// the caller stops it. Tests that stop or pause a server use one of their
// own rather than the shared one.
func StartPostgres(ctx context.Context) (*servers.Postgres, error) {
	dir, err := os.MkdirTemp("", "holdfast-pg-")
	if err != nil {
		return nil, err
	}
	// The directory is the caller's to clean up only through Stop, and the
	// OS's temp cleaner after that; a test that must remove it uses t.Cleanup.
	keepDir(dir)
	return servers.StartPostgres(ctx, servers.PostgresOptions{Dir: dir})
}

func ensure(t testing.TB) {
	t.Helper()
	shared.once.Do(setup)
	if shared.err != nil {
		t.Fatalf("testenv: real PostgreSQL and Redis are needed (run `make deps`, or set DATABASE_URL and REDIS_URL): %v", shared.err)
	}
}

// Name returns a random lower-case name with prefix, unique per call.
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// DatabaseURL creates a migrated database for t alone, dropped when t ends,
// and returns its URL.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	ensure(t)
	return NewDatabase(t, shared.pgURL)
}

// NewDatabase creates a migrated database on the server of adminURL for t
// alone, dropped when t ends, and returns its URL.
func NewDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := sql.Open("postgres", adminURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer admin.Close()
	name := Name("holdfast_test_")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("postgres", adminURL)
		if err != nil {
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)")
	})
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer db.Close()
	if _, err := schema.Apply(ctx, db); err != nil {
		t.Fatalf("testenv: migrate: %v", err)
	}
	return dbURL
}

func withDatabase(rawURL, name string) (string, error) {
	if !strings.Contains(rawURL, "://") {
		return "", fmt.Errorf("DATABASE_URL must be a postgres:// URL for tests, got key=value form")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DatabaseAddr returns where the server of a postgres:// URL listens, as
// lib/pq finds it: host:port over TCP, or the socket file when the host
// (in the URL's host or its host parameter) is a directory. Tests that put
// a proxy between a client and PostgreSQL use it, so they work whichever
// way DATABASE_URL reaches the server.
func DatabaseAddr(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("testenv: database URL: %w", err)
	}
	q := u.Query()
	host, port := u.Hostname(), u.Port()
	if h := q.Get("host"); h != "" {
		host = h
	}
	if p := q.Get("port"); p != "" {
		port = p
	}
	if port == "" {
		port = "5432"
	}
	switch {
	case strings.HasPrefix(host, "/"):
		return filepath.Join(host, ".s.PGSQL."+port), nil
	case host == "":
		// lib/pq's default, like libpq's without a socket directory.
		return net.JoinHostPort("localhost", port), nil
	default:
		return net.JoinHostPort(host, port), nil
	}
}

// WithAddr returns a postgres:// URL that reaches the same database as
// rawURL over TCP at addr (host:port), with any socket directory dropped.
func WithAddr(rawURL, addr string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("testenv: database URL: %w", err)
	}
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.Host = addr
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Redis returns the shared Redis URL and a key prefix for t alone.
func Redis(t testing.TB) (redisURL, prefix string) {
	t.Helper()
	ensure(t)
	return shared.redisURL, Name("test:") + ":"
}

// PrivateRedis starts a Redis for t alone, stopped when t ends: for tests
// that stop, pause or slow it.
func PrivateRedis(t testing.TB) *servers.Redis {
	t.Helper()
	dir := t.TempDir()
	r, err := servers.StartRedis(context.Background(), dir)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// RedisCluster returns the URL of a private three-master Redis Cluster
// (redis+cluster://host:port,...), started once per test binary and stopped
// by Main, and a key prefix for t alone. The prefix has no braces: a key
// that must share a slot with others carries its own hash tag after it.
// Tests that stop a node start a cluster of their own with
// servers.StartRedisCluster.
func RedisCluster(t testing.TB) (clusterURL, prefix string) {
	t.Helper()
	shared.clusterOnce.Do(func() {
		dir, err := os.MkdirTemp("", "holdfast-redis-cluster-")
		if err != nil {
			shared.clusterErr = err
			return
		}
		keepDir(dir)
		shared.cluster, shared.clusterErr = servers.StartRedisCluster(context.Background(), dir, 3)
	})
	if shared.clusterErr != nil {
		t.Fatalf("testenv: a real Redis Cluster is needed (run `make deps`): %v", shared.clusterErr)
	}
	return shared.cluster.URL(), Name("test:") + ":"
}

// PrivateRedisAppendOnly starts a Redis for t alone that keeps an
// append-only file, stopped when t ends: for tests that kill it with
// SIGKILL (Kill) and Start it again with its data.
func PrivateRedisAppendOnly(t testing.TB) *servers.Redis {
	t.Helper()
	r, err := servers.StartRedisWith(context.Background(), servers.RedisOptions{Dir: t.TempDir(), AppendOnly: true})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

// keepDir records a directory Main removes once the tests are done.
func keepDir(dir string) {
	shared.dirsMu.Lock()
	defer shared.dirsMu.Unlock()
	shared.dirs = append(shared.dirs, dir)
}
