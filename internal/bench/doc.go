// Package bench holds holdfast's benchmarks: `make bench` runs them. They
// start the real service (the holdfast binary, as its own process, so its
// memory can be read) on a private PostgreSQL and Redis, drive it with one
// load generator in one run, and print a table of requests per second that
// succeeded, latency, 429s and 5xx, with ratios to the unbatched path and to
// GET /health of the same server.
//
// Each benchmark runs for a fixed time (HOLDFAST_BENCH_DURATION, default
// 5s) whatever b.N is; run them with -benchtime=1x.
package bench
