// Package faults holds holdfast's fault suite: TestFaults breaks the
// machinery under a running sale and then checks that nothing the service
// promised was lost.
//
// The suite starts everything itself and uses nothing of the machine's: a
// private PostgreSQL and a private Redis (internal/servers, on free ports
// under a temporary directory; DATABASE_URL and REDIS_URL are ignored), a
// TCP proxy in front of Redis (internal/proxy), so that
// answers can be delayed, and two holdfast instances, the real binary as
// separate processes ($HOLDFAST_BIN, or built once with `go build`), both on
// the one database and, through the proxy, the one Redis. The instances run
// with short clocks so that a few seconds are enough to see every mechanism
// work: --hold-ttl 3s, --sweep-every 1s, --lock-ttl 2s, --lock-wait 1s. Each
// names itself to PostgreSQL with application_name, which lets the suite see
// which instance holds which lock.
//
// A crowd of clients (goroutines) buys: POST /holds, then confirm about 60%
// of the holds, release about 20% and walk away from the rest. Each client
// sticks to one instance, so a paused or killed instance stalls only its own
// crowd; a quarter of them take their hold on one instance and confirm or
// release it on the other. They buy from a few fresh events per scenario:
// one small enough to sell out at once (so 409 sold_out is exercised and
// stock comes back through releases and expiries), one that sells out during
// the run, and one that never does. Every answer is recorded, in particular
// the id of every hold a client was told is confirmed (200 on confirm), and
// of every hold a client was told is not (410 or 409 on confirm, or a
// release answered released or expired).
//
// The scenarios run one after another on the same servers, each on fresh
// events, each with load flowing before, during and after its fault:
//
//   - kill-instance: one instance gets SIGKILL and is started again on its
//     port.
//   - kill-redis: Redis gets SIGKILL, stays down a few seconds and comes
//     back empty; the instances must go on selling on row locks alone.
//   - restart-postgres: PostgreSQL's fast shutdown, then a start.
//   - pause-instance: one instance gets SIGSTOP at a moment it holds an
//     event's row lock (the suite retries the stop a bounded number of times
//     until PostgreSQL shows that instance holding a FOR UPDATE lock on
//     events), stays stopped longer than the lock TTL and gets SIGCONT. The
//     Redis lock expires and PostgreSQL ends the stalled session
//     (idle_in_transaction_session_timeout = the lock TTL), so the other
//     instance must go on selling during the pause, and the stopped one,
//     woken up, must not sell stock it no longer holds.
//   - slow-redis: the proxy delays every Redis answer by more than the lock
//     TTL for a few seconds.
//
// After each scenario the load stops and the suite waits for the hold TTL,
// a sweep interval and a second, so that every hold has lapsed and been
// swept. Then it requires:
//
//   - `holdfast check` (the real binary) exits 0: every event's stock
//     matches its bookings, nothing is oversold, no booking was confirmed
//     after its expiry and no hold stayed pending more than a sweep interval
//     plus a second past its expiry;
//   - every hold a client was told is confirmed is confirmed in the
//     database (lost = 0), and no hold a client was told is not confirmed,
//     or never asked to confirm, is (these count as violations);
//   - no 5xx but 503 `unavailable`: any other (a 500, a 502, a 503 whose
//     body has another code or none) fails the scenario with their count,
//     wherever it happens, the probes below included, and their request ids
//     are looked up in the instance's log;
//   - both instances sell again: a fresh POST /holds to each answers 201.
//
// Throughout, a webhook receiver in the test process (webhooks_test.go)
// takes every event: it answers 500 to about one attempt in ten and first
// hangs past the 10 s timeout for about one event in fifty, so that a
// killed, paused or cut-off instance is likely to be mid-delivery. After
// the last scenario the suite waits until nothing is pending, then
// requires that every committed change of every hold (its sequences 1 to
// bookings.change_seq) reached the receiver, that nothing else did (no
// event for a change that rolled back, none twice under two ids, each
// hold's last event with its status in the database), that every
// signature verified, and that the change feed lists each change once:
//
//	faults: webhooks: changes=N delivered=N lost=0 invented=0 twice=0 wrong=0 (...)
//
// It prints one line per scenario,
//
//	faults: <scenario>: answers {201:n 200:n 409:n ...} confirmed=N lost=0 violations=0
//
// where err counts requests that got no HTTP answer at all (a killed or
// stopped instance), and logs what it saw of the fault itself.
//
// TestFaultsQueue does the same for a sale through the waiting room, on a
// cluster of its own whose Redis keeps an append-only file (appendfsync
// everysec), as a waiting room's Redis must. Each scenario makes a queued
// event, joins a pre-queue through both instances, and has every place
// poll as poll_after_seconds says (at least once a second), take a hold
// with its pass once admitted and confirm it:
//
//   - kill-redis-queued: Redis gets SIGKILL mid-sale, with joins still
//     coming, stays down a few seconds and is started again on its
//     append-only file. A third of the admitted buyers keep their pass for
//     the outage: they must take holds (201) and confirm while Redis is
//     down and after it is back. Every join and poll sent while Redis is
//     down must be 503 unavailable. The waiting places, read from Redis
//     just before the kill and just after the restart, must be in the same
//     relative order; a place waiting before and not after must have been
//     admitted since; every place whose join was answered more than a
//     second before the kill must still be there (those of the last second
//     are counted, allowed: everysec); no poll may see a position grow;
//     admission must go on after the restart.
//   - kill-instance-queued: every buyer polls and buys through instance b;
//     a gets SIGKILL mid-sale. The queue's admitted count, read every 100 ms,
//     must grow at admit_per_second before and after the kill, within a
//     burst (half a second's worth), a step's worth and one place (fewer
//     by what the suite's own sampler stalled past half a second, a machine
//     too busy for the admitters; more, never); places that joined through
//     a must be admitted and served by b.
//
// Both end as every TestFaults scenario does: holdfast check, no hold lost,
// no 5xx but 503 unavailable.
//
// The short form, the default and what `go test ./...` runs, keeps the load
// to a few seconds around each fault and the whole test near a minute and a
// half on a small machine. HOLDFAST_FAULTS=long runs about fifteen seconds
// of load per scenario with a bigger crowd. Every loop is bounded in count
// and time, all traffic stays on 127.0.0.1, and every process the suite
// starts is stopped by t.Cleanup, also after a failure; the children carry a
// parent-death signal besides, so even a killed test binary leaves none
// behind. HOLDFAST_FAULTS_KEEP=1 keeps the temporary directory, with the
// instances' and PostgreSQL's logs, for a look after the run, and
// HOLDFAST_FAULTS_LOG_LEVEL=debug makes the instances log every request.
//
// TestFailover (ha_test.go) is the same machinery on a pg_auto_failover
// cluster instead of one PostgreSQL, fresh for each scenario, the instances
// on its multi-host URL: kill-primary (the primary's node killed, then
// brought back as the standby), cut-off-primary (the standby's WAL receiver
// stopped and the waiting commits cancelled, then the primary killed: the
// one way a failover could lose a confirmed booking), kill-postmaster and
// lose-standby. The short form plays the first two; HOLDFAST_HA=long
// (`make ha`) plays all four with more load.
package faults
