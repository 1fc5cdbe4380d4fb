package servers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clusterBusOffset is how far above a node's port Redis puts its cluster
// bus, unless told otherwise (cluster-port, Redis 7 only).
const clusterBusOffset = 10000

// RedisCluster is a running private Redis Cluster: masters only, no
// replicas, every slot assigned, each node a private Redis in a directory
// of its own with its append-only file, so a node killed and started again
// comes back with its slots (nodes.conf) and its data.
type RedisCluster struct {
	nodes []*Redis
}

// StartRedisCluster starts masters cluster-enabled Redis servers under dir
// (dir/node-N), joins them with `redis-cli --cluster create`, and returns
// once every node reports cluster_state:ok and knows every other. It fails
// when redis-server or redis-cli is missing.
func StartRedisCluster(ctx context.Context, dir string, masters int) (_ *RedisCluster, err error) {
	if masters < 3 {
		// redis-cli refuses to create a cluster of fewer masters.
		return nil, fmt.Errorf("servers: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	if _, err := redisBin("redis-server"); err != nil {
		return nil, err
	}
	cli, err := redisBin("redis-cli")
	if err != nil {
		return nil, err
	}
	ports, err := clusterPorts(masters)
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	for i, port := range ports {
		node, err := StartRedisWith(ctx, RedisOptions{
			Dir:        filepath.Join(dir, "node-"+strconv.Itoa(i+1)),
			Port:       port,
			AppendOnly: true,
			Args: []string{
				"--cluster-enabled", "yes",
				// Relative to the node's --dir, so each node has its own.
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "5000",
				// A test may stop one master; the others keep serving
				// their own slots rather than refusing everything.
				"--cluster-require-full-coverage", "no",
			},
		})
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, node)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	create := exec.CommandContext(ctx, cli, args...)
	if out, err := create.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("servers: redis-cli --cluster create: %w\n%s", err, tailString(string(out), 2000))
	}
	if err := c.WaitOK(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// clusterPorts picks n ports on 127.0.0.1 such that each port and its
// cluster bus port (port + 10000) are free, all distinct. It holds every
// one open until all are chosen, so it never picks the same one twice.
func clusterPorts(n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 200 {
			return nil, errors.New("servers: found no free pair of ports (P, P+10000) for a Redis Cluster node")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("servers: find free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+clusterBusOffset > 65535 {
			_ = l.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+clusterBusOffset))
		if err != nil {
			_ = l.Close()
			continue
		}
		held = append(held, l, bus)
		ports = append(ports, port)
	}
	return ports, nil
}

// WaitOK waits (up to 30 s) until every node says cluster_state:ok, knows
// all the others and sees every slot assigned: only then does a client's
// first CLUSTER SLOTS see the whole map. Tests call it after starting a
// killed node again.
func (c *RedisCluster) WaitOK(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	want := strconv.Itoa(len(c.nodes))
	for {
		var notOK []string
		for _, n := range c.nodes {
			info, err := redisCommand(n.Addr(), "CLUSTER", "INFO")
			switch {
			case err != nil:
				notOK = append(notOK, n.Addr()+": "+err.Error())
			case infoField(info, "cluster_state") != "ok" || infoField(info, "cluster_known_nodes") != want ||
				infoField(info, "cluster_slots_assigned") != "16384":
				notOK = append(notOK, fmt.Sprintf("%s: state %s, %s nodes known, %s slots assigned", n.Addr(),
					infoField(info, "cluster_state"), infoField(info, "cluster_known_nodes"), infoField(info, "cluster_slots_assigned")))
			}
		}
		if len(notOK) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("servers: redis cluster not ready: %s\n%s", strings.Join(notOK, "; "), tail(c.nodes[0].logPath(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Nodes are the cluster's masters, for tests that stop or kill one.
func (c *RedisCluster) Nodes() []*Redis { return c.nodes }

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL is the cluster as a redis+cluster://host:port,host:port,... URL,
// the form holdfast's --redis-url takes for a cluster.
func (c *RedisCluster) URL() string {
	return "redis+cluster://" + strings.Join(c.Addrs(), ",")
}

// Stop stops every node and returns the first error.
func (c *RedisCluster) Stop() error {
	var first error
	for _, n := range c.nodes {
		if err := n.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// tailString is the last n bytes of s.
func tailString(s string, n int) string {
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
