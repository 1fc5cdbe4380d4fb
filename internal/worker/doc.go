// Package worker gives holdfast's background workers (the sweeper, the
// batcher, the waiting room's admitter, the pass keyring's refresh, and
// those to come, such as webhook delivery) one way to start and stop, so
// that serve starts them in one list and stops them in its reverse, in one
// place of its shutdown order.
//
// A worker runs until it is stopped, not until the context it was started
// with ends: serve's context ends at the first signal, while the workers
// must outlive the requests still in flight (a batch still queued, a
// confirm that counts on the stock the sweeper restores).
package worker
