package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/testenv"
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

// holdfast dev serves the demo, which oversells on purpose, on loopback
// unless told otherwise.
func TestDevServesOnLoopback(t *testing.T) {
	t.Parallel()
	if addr := devConfig().Addr; !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("dev's default address %q, want loopback", addr)
	}
}

// holdfast dev, asked for any free port, writes the one it bound to its env
// file, where the scripts find the service; the address it was asked for
// (port 0) reaches nothing. Real private servers, in the test's own dir.
func TestDevWritesTheAddressItBound(t *testing.T) {
	t.Parallel()
	// Not t.TempDir(): its parent is 0700, so as root the data would go
	// to /var/tmp (devPostgresDir) and stay there. The postgres user
	// reaches this one, and it all goes at the end.
	dir, err := os.MkdirTemp("", "holdfast-devtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out, errs := &testenv.LogBuffer{}, &testenv.LogBuffer{}
	go func() {
		done <- runDev(ctx, []string{"--addr", "127.0.0.1:0", "--dir", filepath.Join(dir, "dev")}, func(string) string { return "" }, out, errs)
	}()
	ended := false
	defer func() {
		cancel()
		if ended {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("dev: %v\n%s", err, errs.String())
		}
	}()
	if pg, err := devPostgresDir(filepath.Join(dir, "dev")); err != nil || !strings.HasPrefix(pg, dir) {
		t.Fatalf("dev's data would go to %s (%v), not under %s", pg, err, dir)
	}
	env := filepath.Join(dir, "dev", "env")
	var addr string
	for deadline := time.Now().Add(90 * time.Second); addr == ""; time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-done:
			ended = true
			t.Fatalf("dev ended before it served: %v\n%s", err, errs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no HOLDFAST_ADDR in %s after 90 s; dev's log:\n%s", env, errs.String())
		}
		b, _ := os.ReadFile(env)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "HOLDFAST_ADDR="); ok {
				addr = v
			}
		}
	}
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("the env file names %s, the address asked for", addr)
	}
	res, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("GET /health at %s: %v", addr, err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /health at %s: %d", addr, res.StatusCode)
	}
}

// dev's data directory under /var/tmp has a name anyone can work out: one
// that is a link, or another user's, is refused rather than taken over.
func TestDevRefusesADirectoryItDoesNotOwn(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	mine := filepath.Join(base, "mine")
	if err := os.Mkdir(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ownDir(mine); err != nil {
		t.Fatalf("a directory of ours: %v", err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	if ownDir(link) == nil {
		t.Error("a link to a directory was taken")
	}
	if os.Getuid() != 0 { // only root can give a directory away
		t.Log("not root: another user's directory is not tried (only root could make one here)")
		return
	}
	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if ownDir(theirs) == nil {
		t.Error("another user's directory was taken")
	}
	// The whole way: a checkout the postgres user cannot reach (under a
	// private directory), its /var/tmp name made first by another user.
	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(private, ".holdfast")
	abs, _ := filepath.Abs(filepath.Join(dir, "pg"))
	planted := varTmpDir(abs)
	if err := os.Mkdir(planted, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(planted) })
	if err := os.Chown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if got, err := devPostgresDir(dir); err == nil {
		t.Errorf("dev took %s, made by another user first", got)
	}
}
