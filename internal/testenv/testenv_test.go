package testenv_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRedisCluster checks the shared cluster is one cluster for the whole
// binary, each caller with its own prefix, and that a caller's keys under
// one hash tag serve a multi-key script.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	url1, prefix1 := testenv.RedisCluster(t)
	url2, prefix2 := testenv.RedisCluster(t)
	if url1 != url2 {
		t.Errorf("two calls, two clusters: %q and %q", url1, url2)
	}
	if prefix1 == prefix2 || strings.ContainsAny(prefix1, "{}") {
		t.Errorf("prefixes %q and %q: want distinct, without braces", prefix1, prefix2)
	}
	addrs, ok := strings.CutPrefix(url1, "redis+cluster://")
	if !ok {
		t.Fatalf("url %q: want redis+cluster://", url1)
	}
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addrs, ",")})
	t.Cleanup(func() { _ = rdb.Close() })
	keys := []string{prefix1 + "{e1}:a", prefix1 + "{e1}:b"}
	got, err := rdb.Eval(ctx, `redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[1])`, keys, 3).Int()
	if err != nil || got != 3 {
		t.Fatalf("script on one hash tag: got %d, %v; want 3", got, err)
	}
}
