// Package schema owns holdfast's SQL schema: the numbered migrations embedded
// in the binary and the code that applies them.
//
// Migrations run in file-name order, each in its own transaction together with
// the row that records it in schema_migrations, so a migration is applied
// exactly once or not at all. Apply holds a PostgreSQL advisory lock for the
// whole run, so several instances starting together against one database wait
// for each other instead of racing to create the same tables.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.sql
var files embed.FS

// lockKey is the advisory lock every migrator takes; any fixed number works as
// long as nothing else in the database uses it.
const lockKey = 7_020_315_001

// Migration is one numbered SQL file.
type Migration struct {
	Version string // file name without .sql, e.g. "001_seed"
	SQL     string
}

// Migrations returns every embedded migration in the order it is applied.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("schema: list migrations: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, name := range names {
		body, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("schema: read %s: %w", name, err)
		}
		out = append(out, Migration{Version: strings.TrimSuffix(name, ".sql"), SQL: string(body)})
	}
	return out, nil
}

// Apply brings the database up to date and returns the versions it applied.
func Apply(ctx context.Context, db *sql.DB) ([]string, error) {
	return ApplyThrough(ctx, db, "")
}

// ApplyThrough applies the migrations up to and including version (all of
// them when version is ""), so a benchmark can compare a schema before and
// after a migration.
func ApplyThrough(ctx context.Context, db *sql.DB, version string) ([]string, error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	if version != "" {
		for i, m := range migrations {
			if m.Version == version {
				migrations = migrations[:i+1]
				break
			}
		}
	}
	// The advisory lock belongs to a session, so everything runs on one
	// connection taken from the pool.
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("schema: connect: %w", err)
	}
	defer conn.Close()

	// The pool may carry a lock_timeout and statement_timeout meant for
	// requests; waiting for another instance's migrations, or running a
	// long one, must not be cut short by them.
	if _, err := conn.ExecContext(ctx, `SET lock_timeout = 0; SET statement_timeout = 0`); err != nil {
		return nil, fmt.Errorf("schema: clear timeouts: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.Background(), `RESET lock_timeout; RESET statement_timeout`)
	}()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
		return nil, fmt.Errorf("schema: take migration lock: %w", err)
	}
	defer func() {
		// A fresh context: the caller's may be cancelled, and a lock left on a
		// pooled connection would block the next migrator until it closes.
		_, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, lockKey)
	}()

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return nil, fmt.Errorf("schema: create schema_migrations: %w", err)
	}

	done := map[string]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("schema: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("schema: read schema_migrations: %w", err)
		}
		done[v] = true
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("schema: read schema_migrations: %w", err)
	}

	var applied []string
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		if err := applyOne(ctx, conn, m); err != nil {
			return applied, err
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

func applyOne(ctx context.Context, conn *sql.Conn, m Migration) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("schema: begin %s: %w", m.Version, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("schema: apply %s: %w", m.Version, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, m.Version); err != nil {
		return fmt.Errorf("schema: record %s: %w", m.Version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("schema: commit %s: %w", m.Version, err)
	}
	return nil
}
