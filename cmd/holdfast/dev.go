package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/lib/pq"

	"github.com/holdfast/holdfast/internal/servers"
	"github.com/holdfast/holdfast/store"
)

// runDev is the embedded default: private PostgreSQL and Redis under
// .holdfast/, the sample events, and the service with the seed's demo on.
func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg := devConfig()
	dir := ".holdfast"
	s := newSettings("dev", getenv, stderr)
	s.serveFlags(&cfg)
	s.str(&dir, "dir", "HOLDFAST_DEV_DIR", "where the private servers keep their files")
	if err := s.parse(args); err != nil {
		return err
	}
	// dev starts its own database; DATABASE_URL and REDIS_URL are what it
	// prints, not what it reads.
	if err := cfg.validate(false); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	pgDir, err := devPostgresDir(dir)
	if err != nil {
		return err
	}
	pg, err := servers.StartPostgres(ctx, servers.PostgresOptions{Dir: pgDir, Durable: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := pg.Stop(); err != nil {
			log.Warn("stop postgres", "err", err)
		}
	}()
	// With its append-only file, as the waiting room expects of Redis: a
	// restarted dev keeps its queues.
	rd, err := servers.StartRedisWith(ctx, servers.RedisOptions{Dir: filepath.Join(dir, "redis"), AppendOnly: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := rd.Stop(); err != nil {
			log.Warn("stop redis", "err", err)
		}
	}()
	if err := createDatabase(ctx, pg.URL("postgres"), "holdfast"); err != nil {
		return err
	}
	cfg.DatabaseURL = pg.URL("holdfast")
	cfg.RedisURL = rd.URL()
	fmt.Fprintf(stdout, "DATABASE_URL=%s\nREDIS_URL=%s\n", cfg.DatabaseURL, cfg.RedisURL)

	return serve(ctx, cfg, log, func(addr string) {
		// The address bound, not the one asked for: with --addr
		// 127.0.0.1:0 the scripts must find the port picked.
		bound := cfg
		bound.Addr = addr
		if err := writeEnvFile(filepath.Join(dir, "env"), bound); err != nil {
			log.Error("write the env file", "err", err)
		}
		db, err := store.Open(ctx, cfg.DatabaseURL, store.DBOptions{MaxConns: 1})
		if err != nil {
			log.Error("load samples", "err", err)
			return
		}
		defer db.Close()
		loaded, err := store.New(db).LoadSamples(ctx)
		switch {
		case err != nil:
			log.Error("load samples", "err", err)
		case loaded:
			log.Info("sample events loaded")
		}
		fmt.Fprintf(stdout, "holdfast dev is serving on http://%s (env in %s)\n", addr, filepath.Join(dir, "env"))
	})
}

// devConfig is dev's defaults: the seed's demo.
func devConfig() config {
	cfg := defaultConfig()
	// The demo oversells on purpose (/book/unsafe) and caps no client:
	// loopback only, unless --addr says otherwise.
	cfg.Addr = "127.0.0.1:8080"
	cfg.UnsafeDemo = true
	cfg.SimulateWork = 100 * time.Millisecond
	// The demo's k6 scripts send every request from one address.
	cfg.ClientCap = 0
	return cfg
}

// devPostgresDir is dir/pg, unless the postgres user (whom PostgreSQL runs as
// when holdfast runs as root) cannot reach it, as in a checkout under /root:
// then the data lives in /var/tmp, named after the checkout so a second run
// finds it again.
func devPostgresDir(dir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dir, "pg"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return "", err
	}
	ok, err := servers.PostgresCanReach(abs)
	if err != nil || ok {
		return abs, err
	}
	parent := varTmpDir(abs)
	if err := os.Mkdir(parent, 0o755); err != nil && !os.IsExist(err) {
		return "", err
	}
	// Its name can be guessed, and /var/tmp is anyone's: a directory
	// someone else made first (a planted postgresql.conf would run their
	// code as postgres) or a link is refused, not taken over.
	if err := ownDir(parent); err != nil {
		return "", err
	}
	// Open to other users, or the postgres user could not reach pg/ below.
	if err := os.Chmod(parent, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(parent, "pg"), nil
}

// varTmpDir is where dev keeps the data of pg, a directory the postgres
// user cannot reach: in /var/tmp, named after pg, so a second run finds it.
func varTmpDir(pg string) string {
	sum := sha256.Sum256([]byte(pg))
	return filepath.Join("/var/tmp", "holdfast-"+hex.EncodeToString(sum[:6]))
}

// ownDir refuses path unless it is a directory (not a link to one) that
// this process's user owns.
func ownDir(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() {
		return fmt.Errorf("dev: %s is not a directory of user %d: remove it, or run from a checkout the postgres user can reach", path, os.Getuid())
	}
	return nil
}

// createDatabase creates name on the server at adminURL unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	db, err := sql.Open("postgres", adminURL)
	if err != nil {
		return err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("dev: look for database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)); err != nil {
		return fmt.Errorf("dev: create database %s: %w", name, err)
	}
	return nil
}

// writeEnvFile leaves the URLs, and the admin token when there is one,
// where scripts can read them (scripts/onsale.sh creates its events through
// /admin). With a token in it the file is the owner's alone.
func writeEnvFile(path string, cfg config) error {
	body := fmt.Sprintf("DATABASE_URL=%s\nREDIS_URL=%s\nHOLDFAST_ADDR=%s\n", cfg.DatabaseURL, cfg.RedisURL, cfg.Addr)
	mode := os.FileMode(0o644)
	if cfg.AdminToken != "" {
		body += "HOLDFAST_ADMIN_TOKEN=" + cfg.AdminToken + "\n"
		mode = 0o600
	}
	// WriteFile keeps an existing file's mode: remove it first, so a token
	// never lands in a file another run left readable.
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(body), mode)
}
