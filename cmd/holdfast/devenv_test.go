package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteEnvFile checks .holdfast/env carries the admin token only when
// there is one, and is then the owner's alone, even over a file an earlier
// run left readable.
func TestWriteEnvFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "env")
	cfg := defaultConfig()
	cfg.DatabaseURL, cfg.RedisURL = "postgres://db/holdfast", "redis://127.0.0.1:1/0"
	for _, tc := range []struct {
		token    string
		wantMode os.FileMode
	}{
		{"", 0o644},
		{"0123456789abcdef0123", 0o600},
		{"", 0o644},
	} {
		cfg.AdminToken = tc.token
		if err := writeEnvFile(path, cfg); err != nil {
			t.Fatalf("token %q: %v", tc.token, err)
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != tc.wantMode {
			t.Errorf("token %q: mode %o, want %o", tc.token, got, tc.wantMode)
		}
		b, _ := os.ReadFile(path)
		hasLine := strings.Contains(string(b), "\nHOLDFAST_ADMIN_TOKEN="+tc.token+"\n")
		if tc.token != "" && !hasLine || tc.token == "" && strings.Contains(string(b), "HOLDFAST_ADMIN_TOKEN") {
			t.Errorf("token %q: file\n%s", tc.token, b)
		}
		if !strings.Contains(string(b), "DATABASE_URL=postgres://db/holdfast\n") {
			t.Errorf("token %q: no DATABASE_URL line in\n%s", tc.token, b)
		}
	}
}
