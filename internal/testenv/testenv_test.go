package testenv

import "testing"

func TestDatabaseAddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, addr, tcp string }{
		{"postgres://u@127.0.0.1:5544/db?sslmode=disable", "127.0.0.1:5544", "postgres://u@127.0.0.1:40000/db?sslmode=disable"},
		{"postgres://u@db.internal/db", "db.internal:5432", "postgres://u@127.0.0.1:40000/db"},
		{"postgres://u@/db?host=/var/run/postgresql", "/var/run/postgresql/.s.PGSQL.5432", "postgres://u@127.0.0.1:40000/db"},
		{"postgres:///db?host=/tmp/pg/sock&port=6000&sslmode=disable", "/tmp/pg/sock/.s.PGSQL.6000", "postgres://127.0.0.1:40000/db?sslmode=disable"},
		{"postgres://u@[::1]:5433/db", "[::1]:5433", "postgres://u@127.0.0.1:40000/db"},
		{"postgres://u@/db", "localhost:5432", "postgres://u@127.0.0.1:40000/db"},
	} {
		addr, err := DatabaseAddr(tc.url)
		if err != nil || addr != tc.addr {
			t.Errorf("DatabaseAddr(%q) = %q, %v; want %q", tc.url, addr, err, tc.addr)
		}
		tcp, err := WithAddr(tc.url, "127.0.0.1:40000")
		if err != nil || tcp != tc.tcp {
			t.Errorf("WithAddr(%q) = %q, %v; want %q", tc.url, tcp, err, tc.tcp)
		}
	}
}
