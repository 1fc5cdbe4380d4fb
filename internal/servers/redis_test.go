package servers_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/servers"
)

// TestRedisCluster starts a three-master cluster, writes keys that land on
// every master through go-redis's cluster client, and runs a multi-key Lua
// script on keys sharing one hash tag, as the waiting room does.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := servers.StartRedisCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	if got := len(c.Addrs()); got != 3 {
		t.Fatalf("addrs: got %d, want 3", got)
	}
	if want := "redis+cluster://" + strings.Join(c.Addrs(), ","); c.URL() != want {
		t.Errorf("url: got %q, want %q", c.URL(), want)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = rdb.Close() })

	const n = 300
	for i := range n {
		if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("set k%d: %v", i, err)
		}
	}
	// Every master holds some of them: the keys really are spread across
	// slots owned by different nodes, not all sent to one.
	total := int64(0)
	for _, node := range c.Nodes() {
		one := redis.NewClient(&redis.Options{Addr: node.Addr()})
		size, err := one.DBSize(ctx).Result()
		_ = one.Close()
		if err != nil {
			t.Fatalf("dbsize on %s: %v", node.Addr(), err)
		}
		if size == 0 {
			t.Errorf("node %s holds none of %d keys", node.Addr(), n)
		}
		total += size
	}
	if total != n {
		t.Errorf("keys over all nodes: got %d, want %d", total, n)
	}
	for i := range n {
		got, err := rdb.Get(ctx, fmt.Sprintf("k%d", i)).Int()
		if err != nil || got != i {
			t.Fatalf("get k%d: got %d, %v; want %d", i, got, err, i)
		}
	}

	// A script on several keys of one hash tag runs on the node of that
	// tag's slot.
	move := redis.NewScript(`
		local v = redis.call('INCRBY', KEYS[1], ARGV[1])
		redis.call('RPUSH', KEYS[2], v)
		redis.call('SET', KEYS[3], v)
		return redis.call('LLEN', KEYS[2])`)
	keys := []string{"{q:7}:serving", "{q:7}:log", "{q:7}:last"}
	for i := 1; i <= 5; i++ {
		got, err := move.Run(ctx, rdb, keys, 2).Int()
		if err != nil {
			t.Fatalf("script, run %d: %v", i, err)
		}
		if got != i {
			t.Errorf("script, run %d: log length %d, want %d", i, got, i)
		}
	}
	if got, err := rdb.Get(ctx, "{q:7}:last").Int(); err != nil || got != 10 {
		t.Errorf("after the script: {q:7}:last = %d, %v; want 10", got, err)
	}
	// Keys without a shared tag in different slots are refused: this is
	// why every key of one event's queue carries the same tag.
	err = move.Run(ctx, rdb, []string{"k1", "k2", "k3"}, 1).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("script across slots: got %v, want a CROSSSLOT error", err)
	}

	// The master of the tag's slot, killed and started again, comes back
	// with its slots and its data (append-only file and nodes.conf).
	slot, err := rdb.ClusterKeySlot(ctx, "{q:7}:last").Result()
	if err != nil {
		t.Fatalf("keyslot: %v", err)
	}
	var owner *servers.Redis
	for _, node := range c.Nodes() {
		one := redis.NewClient(&redis.Options{Addr: node.Addr()})
		n, err := one.ClusterCountKeysInSlot(ctx, int(slot)).Result()
		_ = one.Close()
		if err == nil && n > 0 {
			owner = node
		}
	}
	if owner == nil {
		t.Fatalf("no node holds slot %d", slot)
	}
	time.Sleep(1500 * time.Millisecond) // past appendfsync everysec
	if err := owner.Kill(); err != nil {
		t.Fatalf("kill %s: %v", owner.Addr(), err)
	}
	if err := owner.Start(ctx); err != nil {
		t.Fatalf("restart %s: %v", owner.Addr(), err)
	}
	if err := c.WaitOK(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if got, err := rdb.Get(ctx, "{q:7}:last").Int(); err != nil || got != 10 {
		t.Errorf("after its master restarted: {q:7}:last = %d, %v; want 10", got, err)
	}
	if got, err := move.Run(ctx, rdb, keys, 2).Int(); err != nil || got != 6 {
		t.Errorf("script after restart: log length %d, %v; want 6", got, err)
	}
}

// TestRedisAppendOnlySurvivesKill kills a Redis with SIGKILL and starts it
// again on the same port and directory: with the append-only file its data
// is back; without it, the default, nothing is.
func TestRedisAppendOnlySurvivesKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		appendOnly bool
		wantKept   bool
	}{
		{"append-only", true, true},
		{"default", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r, err := servers.StartRedisWith(ctx, servers.RedisOptions{Dir: t.TempDir(), AppendOnly: tc.appendOnly})
			if err != nil {
				t.Fatalf("start: %v", err)
			}
			t.Cleanup(func() { _ = r.Stop() })
			rdb := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
			t.Cleanup(func() { _ = rdb.Close() })

			const n = 1000
			pipe := rdb.Pipeline()
			for i := range n {
				pipe.Set(ctx, fmt.Sprintf("place:%d", i), i, 0)
			}
			pipe.ZAdd(ctx, "order", redis.Z{Score: 1, Member: "first"}, redis.Z{Score: 2, Member: "second"})
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("write: %v", err)
			}
			// The contract allows losing the last second of writes
			// (appendfsync everysec); these are older than that.
			time.Sleep(1500 * time.Millisecond)
			port := r.Port()
			if err := r.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			if err := rdb.Ping(ctx).Err(); err == nil {
				t.Fatal("ping after kill: got an answer, want none")
			}
			if err := r.Start(ctx); err != nil {
				t.Fatalf("restart: %v", err)
			}
			if r.Port() != port {
				t.Errorf("port after restart: got %d, want %d", r.Port(), port)
			}
			size, err := rdb.DBSize(ctx).Result()
			if err != nil {
				t.Fatalf("dbsize after restart: %v", err)
			}
			if !tc.wantKept {
				if size != 0 {
					t.Errorf("keys after restart without append-only file: got %d, want 0", size)
				}
				return
			}
			if size != n+1 {
				t.Errorf("keys after restart: got %d, want %d", size, n+1)
			}
			for i := range n {
				got, err := rdb.Get(ctx, fmt.Sprintf("place:%d", i)).Int()
				if err != nil || got != i {
					t.Fatalf("place:%d after restart: got %d, %v; want %d", i, got, err, i)
				}
			}
			order, err := rdb.ZRange(ctx, "order", 0, -1).Result()
			if err != nil || strings.Join(order, ",") != "first,second" {
				t.Errorf("order after restart: got %v, %v; want [first second]", order, err)
			}
		})
	}
}

// TestRedisClusterNeedsBinaries fails, never skips, without redis-server or
// redis-cli, and says what to install.
func TestRedisClusterNeedsBinaries(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test needs redis-server itself (run `make deps`): %v", err)
	}
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	_, err = servers.StartRedisCluster(context.Background(), t.TempDir(), 3)
	if err == nil || !strings.Contains(err.Error(), "redis-server not found") {
		t.Fatalf("start without binaries: got %v, want redis-server not found", err)
	}
	if err := os.Symlink(server, filepath.Join(bin, "redis-server")); err != nil {
		t.Fatal(err)
	}
	_, err = servers.StartRedisCluster(context.Background(), t.TempDir(), 3)
	if err == nil || !strings.Contains(err.Error(), "redis-cli not found") {
		t.Fatalf("start without redis-cli: got %v, want redis-cli not found", err)
	}
	_, err = servers.StartRedisCluster(context.Background(), t.TempDir(), 2)
	if err == nil || !strings.Contains(err.Error(), "at least 3 masters") {
		t.Fatalf("start with 2 masters: got %v, want at least 3 masters", err)
	}
}
