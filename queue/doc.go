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
// Step every 150 ms for each queued event that has work, four events at a
// time, so one slow event does not hold back the rest. Which have work it
// reads first, every queue's in one pipelined round trip (Store.Backlogs):
// places waiting, a pass running out within a second, or a pre-queue
// whose on-sale comes within a second. An idle queue is stepped about once
// a second all the same where steps read the stock, for its sold-out flag
// (below), a share of them each run, after the queues with work. Step is
// one Lua script: it adds admit_per_second
// x the time since the last step (Redis's clock, so one clock for every
// instance) to a stored credit, capped at half a second's worth, and pops
// that many places in turn. However many instances run, the credit is
// spent once, so admissions average at most admit_per_second and no place
// is admitted twice. Left places are removed from the queue as they leave,
// and admitted ones whose pass expires are removed by the step, so nothing
// stalls it. Step takes a budget, the most places to admit (Unlimited in
// the service; tests pass their own).
//
// A step must come on time: one that comes later than the burst's half a
// second after the last adds only the burst, so an instance stepping alone
// whose steps take a second admits half the rate. A step's round trips
// therefore do not grow with the places it admits (the stock query, the
// script, one call that keeps every pass; the shuffle once), and the
// Admitter logs at WARN a
// run of failed steps (when it starts, every 5 s while it lasts, when it
// ends) and steps slower than 300 ms (at most every 5 s, with the part
// that took the time: stock, admit or passes).
//
// Stock. With a StockReader (Service.Stock; holdfast's is PostgreSQL),
// each step first reads the event's stock in one query: the tickets left
// (lapsed pending holds counted back, since the next hold or sweep returns
// them and they can no longer be confirmed), the live pending holds, and
// the places that booked in the last few seconds, which the script keeps
// in the queue's took set until their passes end (so the read grows with
// the rate of holds, not with the sale). The script then admits at
// most ceil(free / reserve) places, where free is the tickets left less a
// reserve for every live admitted place that has not booked: each new
// place is sure of at least one ticket, and of its whole reserve but the
// last. It counts the admitted places itself, atomically with admitting,
// so instances cannot spend the same tickets twice; the snapshot it is
// given is older than the script, and a change in between (a hold, an
// admission elsewhere) only makes the budget smaller, except tickets given
// back, which wait for the next step. One change would make it larger: a
// place that books after the snapshot and goes (done, left, its pass
// expired) before the script, whose tickets the snapshot still counts. So
// an admitted place that goes before any reading listed a booking of its
// keeps reserving, in the queue's gone set, until a reading lists its
// booking or is taken, with its horizon (the start of the oldest
// transaction then in progress, so that a hold made before the place went
// and committed long after is not missed), more than 250 ms after it went
// (the margin is for the two servers' clocks); one that left, until 250
// ms after its pass expires, since leaving does not take back the pass,
// which may still book. A place whose booking a reading listed reserves nothing more, even
// once it gave its tickets back: they are the stock's again and go to the
// next place in line.
//
// The reserve is the per-buyer cap (ReserveCap, the default): the most an
// admitted buyer can take, so no admitted buyer finds nothing, unless one
// admitted before it, having booked, comes back with its pass for the
// rest of its cap (until it confirms, its pass may). The
// alternative, the average quantity of the event's recent holds
// (ReserveAverage), admits more buyers at once and sells out sooner, but
// a buyer who wants more than the average may find the stock already taken
// by those admitted with it; BENCHMARKS.md ("The queue and the stock")
// measures both on the same on-sale.
//
// Sold out. With nothing left and no live pending hold the step sets a flag
// on the event's queue; a waiting place reads sold_out while it is set (it
// is derived, so telling 100,000 places costs one HGET per poll, not a
// write per place), and so does the queue's state. A later step clears it
// if stock comes back (an admin adds tickets): those places read waiting
// again, in their order.
//
// Passes. An admitted place's pass is signed in Go (the Signer, package
// internal/pass) after the script admits it, and kept on the place, every
// place of a step in one script call; the first pass kept wins. If the
// admitting instance dies before keeping it, the place's next poll, on any
// instance, signs one with the same claims.
//
// Errors are the domain's plain *problem.Error values; the events it
// queues are package sale's.
//
// Clocks. The queue reads Redis's clock (TIME) for joins, admission and
// pass expiry; sale windows on holds are the database's clock. The two
// differ by the servers' clock skew, NTP-small.
package queue
