// Package servers starts private PostgreSQL and Redis servers from the
// binaries Debian installs, for `holdfast dev` and for the tests.
//
// A private server listens only on 127.0.0.1, on a free port, and keeps its
// files in a directory the caller names, so it never touches the machine's own
// 5432 or 6379 and several can run side by side. PostgreSQL refuses to run as
// root, so when the caller is root the server runs as the `postgres` user and
// its data and socket directories are handed to that user.
//
// Redis comes in three shapes: the default keeps nothing on disk (locks and
// rate counts are short-lived); RedisOptions.AppendOnly keeps an append-only
// file, so a server killed with SIGKILL and started again keeps its data, as
// the waiting room needs; StartRedisCluster joins three or more masters into
// a Redis Cluster, each on a port whose cluster bus port (port + 10000) is
// free too.
//
// Each server is a child process started with a parent-death signal: if the
// process that started it dies without stopping it, the kernel stops it too.
//
// StartAutoFailover starts a private pg_auto_failover cluster (Debian's
// postgresql-<major>-auto-failover): a monitor and two data nodes, each a
// pg_autoctl keeper running its PostgreSQL, with the keepers' configuration
// under the cluster's directory and the failover settings of
// FailoverSettings. The failover tests kill its nodes, their postmasters
// alone, or a standby's WAL receiver, and watch the service carry on.
package servers
