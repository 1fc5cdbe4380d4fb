package servers_test

import (
	"context"
	"os"
	"testing"

	"github.com/holdfast/holdfast/internal/servers"
)

// A server whose port another server took first (packages' tests start
// servers in parallel, between FreePort and the bind) fails to start: it
// must say so, not take the other's answer for its own and hand out a URL
// to a server that is not there.
func TestAPostgresOnATakenPortFailsToStart(t *testing.T) {
	t.Parallel()
	first, err := servers.StartPostgres(context.Background(), servers.PostgresOptions{Dir: reachableDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Stop() })
	second, err := servers.StartPostgres(context.Background(), servers.PostgresOptions{Dir: reachableDir(t), Port: first.Port()})
	if err == nil {
		second.Stop()
		t.Fatalf("a second server on port %d started, answered by the first", first.Port())
	}
	t.Logf("refused: %.200s", err)
}

// reachableDir is a new directory the postgres user can reach (t.TempDir's
// parent is closed to other users).
func reachableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "holdfast-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
