package servers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RedisCluster is a running private Redis Cluster: masters only, the hash
// slots split between them by redis-cli --cluster create.
type RedisCluster struct {
	nodes []*Redis
}

// StartRedisCluster starts n (at least 3) redis-server nodes with
// --cluster-enabled yes on free ports, each node's files in a directory of
// dir, joins them with redis-cli --cluster create, and waits until every
// node reports the cluster ok.
func StartRedisCluster(ctx context.Context, dir string, n int) (*RedisCluster, error) {
	if n < 3 {
		return nil, errors.New("servers: a Redis Cluster needs at least 3 masters")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("servers: redis-cli not found (run `make deps`, or apt-get install redis-tools)")
	}
	c := &RedisCluster{}
	for i := 0; i < n; i++ {
		nodeDir, err := filepath.Abs(filepath.Join(dir, "node"+strconv.Itoa(i)))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			c.Stop()
			return nil, fmt.Errorf("servers: create %s: %w", nodeDir, err)
		}
		port, err1 := FreePort()
		bus, err2 := FreePort()
		if err := errors.Join(err1, err2); err != nil {
			c.Stop()
			return nil, err
		}
		r := &Redis{dir: nodeDir, port: port, args: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "2000",
		}}
		if err := r.Start(ctx); err != nil {
			c.Stop()
			return nil, err
		}
		c.nodes = append(c.nodes, r)
	}
	args := []string{"--cluster", "create"}
	for _, r := range c.nodes {
		args = append(args, r.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("servers: redis-cli --cluster create: %w\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range c.nodes {
		for {
			info, err := command(r.Addr(), "CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				c.Stop()
				return nil, fmt.Errorf("servers: redis cluster not ok: %v %q", err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c, nil
}

// command sends one inline command and returns the start of its reply.
func command(addr, line string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(line + "\r\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 8192)
	n, err := io.ReadAtLeast(conn, buf, 1)
	return string(buf[:n]), err
}

// Nodes are the cluster's servers, for tests that stop one.
func (c *RedisCluster) Nodes() []*Redis { return c.nodes }

// URL is the redis+cluster:// URL that lists every node.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.nodes))
	for i, r := range c.nodes {
		addrs[i] = r.Addr()
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Stop shuts every node down.
func (c *RedisCluster) Stop() error {
	var errs []error
	for _, r := range c.nodes {
		errs = append(errs, r.Stop())
	}
	return errors.Join(errs...)
}
