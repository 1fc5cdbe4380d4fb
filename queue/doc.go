// Package queue is holdfast's waiting room: a queue per event, kept in
// Redis and shared by every instance, that admits buyers in a fair order at
// a set rate and gives each admitted buyer a signed pass.
//
// Order. A place that joins before the event's on_sale_at goes to the
// pre-queue, whose position is unknown (null) until on_sale_at; then the
// first admission step of any instance shuffles it once (a crypto/rand
// permutation made in Go, applied by a Lua script that refuses a second
// one) and its places take turns 1..n. A place that joins later goes to the
// end, in the order of one Redis counter, so arrival order is global across
// instances. Position is 1 + the live places ahead; places only ever leave
// the front or drop out, so it never grows.
//
// Admission. Every instance runs an Admitter (a background worker, started
// and stopped by serve with the others; see internal/worker), which calls
// Step for each queued event every 150 ms. Step is one Lua script: it adds admit_per_second
// x the time since the last step (Redis's clock, so one clock for every
// instance) to a stored credit, capped at half a second's worth, and pops
// that many places in turn. However many instances run, the credit is
// spent once, so admissions average at most admit_per_second and no place
// is admitted twice. Left places are removed from the queue as they leave,
// and admitted ones whose pass expires are removed by the step, so nothing
// stalls it. Step takes a budget, the most places to admit: step 3 makes it
// what the stock can still serve; today it is Unlimited.
//
// Passes. An admitted place's pass is signed in Go (the Signer, package
// internal/pass) after the script admits it, and kept on the place. A pass
// is deterministic in its claims, so if the admitting instance dies before
// keeping it, the place's next poll signs the same one.
//
// Errors are the domain's plain *problem.Error values; the events it
// queues are package sale's.
//
// Clocks. The queue reads Redis's clock (TIME) for joins, admission and
// pass expiry; sale windows on holds are the database's clock. The two
// differ by the servers' clock skew, NTP-small.
package queue
