# holdfast: `make run` serves the demo on private PostgreSQL and Redis,
# `make test` runs every test. Both install what is missing first.

SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
K6 := $(GOBIN)/k6
K6_VERSION := v1.8.1
# staticcheck 2026.2.2: a release that reads go 1.26 modules.
STATICCHECK := $(GOBIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
BIN := bin/holdfast
# Run as root (CI, containers) apt-get needs no sudo; otherwise use it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build run test test-go test-k6 experiment bench callgrind faults ha fuzz vet fmt clean

all: build

# deps installs PostgreSQL, Redis and psql from Debian's packages when they
# are missing, and k6 and staticcheck with `go install`. It runs before the
# tests, never inside them: parallel test binaries would fight over apt's lock.
deps:
	@# The race detector (make test) needs cgo, and so a C compiler: Go's
	@# own tarball brings none.
	@if ! command -v gcc >/dev/null || [ ! -e /usr/include/stdlib.h ]; then \
		echo "deps: installing gcc and libc6-dev (go test -race needs cgo)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc libc6-dev >/dev/null; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || ! command -v redis-server >/dev/null || ! command -v psql >/dev/null \
		|| ! command -v curl >/dev/null || ! command -v jq >/dev/null; then \
		echo "deps: installing postgresql, redis-server, curl and jq (the k6 runners read the service with them)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql postgresql-client redis-server curl jq >/dev/null; \
	fi
	@if ! command -v chromium >/dev/null; then \
		echo "deps: installing chromium (for the status page's browser test)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi
	@# pg_auto_failover is packaged per PostgreSQL major version: the one
	@# the distribution's postgresql installed (15 on bookworm, 17 on trixie).
	@if ! command -v pg_autoctl >/dev/null; then \
		pkg="postgresql-$$(ls /usr/lib/postgresql | sort -n | tail -1)-auto-failover"; \
		echo "deps: installing $$pkg (for the failover tests)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq "$$pkg" >/dev/null; \
	fi
	@# Debian starts the packaged servers; holdfast never uses them.
	@# The pinned versions, not whatever binary a dirty machine has.
	@if [ -x "$(K6)" ] && "$(K6)" version 2>/dev/null | grep -q "k6 $(K6_VERSION)"; then :; else \
		echo "deps: installing k6 $(K6_VERSION)"; GOBIN=$(GOBIN) $(GO) install go.k6.io/k6@$(K6_VERSION); fi
	@if [ -x "$(STATICCHECK)" ] && "$(STATICCHECK)" -version 2>/dev/null | grep -q "($(STATICCHECK_VERSION:v%=%))"; then :; else \
		echo "deps: installing staticcheck $(STATICCHECK_VERSION)"; \
		GOBIN=$(GOBIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); fi
	@echo "deps: postgres $$(ls -d /usr/lib/postgresql/*/bin | tail -1), $$(redis-server --version | cut -d' ' -f3), k6 $(K6), $$($(STATICCHECK) -version)"

build:
	$(GO) build -o $(BIN) ./cmd/holdfast

run: deps build
	$(BIN) dev

# test is what CI runs: the checks of vet, then short k6 runs against a
# private `holdfast dev` (the on-sale through the waiting room included),
# then the Go tests with the race detector, against
# real PostgreSQL and Redis (private ones each package starts, or
# DATABASE_URL and REDIS_URL when set).
test: deps build vet test-k6 test-go

# vet fails when go.mod or go.sum is not what `go mod tidy` would write,
# then runs go vet and staticcheck (installed by deps, never by a test).
vet:
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@[ -x "$(STATICCHECK)" ] || { echo "vet: no staticcheck at $(STATICCHECK): run make deps"; exit 1; }
	$(STATICCHECK) ./...

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

# ONSALE_SMOKE=0 leaves the on-sale out of a quick look.
test-k6: build
	K6=$(K6) HOLDFAST=$(CURDIR)/$(BIN) ONSALE_SMOKE=$${ONSALE_SMOKE:-1} scripts/smoke.sh

# experiment is the article's full run (20 VUs, 20 s) against `make run`.
experiment: deps build
	K6=$(K6) HOLDFAST=$(CURDIR)/$(BIN) scripts/experiment.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# bench starts holdfast as its own process on a private, durable PostgreSQL
# and Redis and drives it with one load generator; see BENCHMARKS.md.
bench: deps build
	HOLDFAST_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/bench/

# callgrind counts the database's instructions per batched hold
# (scripts/callgrind_holds.sh, the method of BENCHMARKS.md's tables), with
# valgrind installed first if missing. EXTRA=file.sql applies a variant.
callgrind: deps build
	@if ! command -v valgrind >/dev/null; then \
		echo "callgrind: installing valgrind"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind >/dev/null; \
	fi
	scripts/callgrind_holds.sh $(CURDIR)/$(BIN) $(EXTRA)

# FUZZTIME is how long `make fuzz` (and `make faults`) fuzzes each target;
# `go test` alone replays their corpora as ordinary tests.
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzRequestDecoding:./sale FuzzFoldASCII:./sale FuzzParseID:./internal/httpapi \
	FuzzCheckKeys:./internal/httpapi FuzzParseHoldID:./hold FuzzHoldJSON:./hold \
	FuzzMoneyArithmetic:./internal/money

# fuzz runs each fuzz target for FUZZTIME, one target per run as go test
# requires. A crasher lands in the package's testdata/fuzz: commit it.
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; pkg=$${t#*:}; \
		echo "fuzz: $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	done

# faults runs the long form of the fault suite (instances killed, Redis
# killed and slowed, PostgreSQL restarted, an instance paused past its lock
# TTL; TestFaultsQueue: the waiting room's Redis killed and restarted on its
# append-only file, an instance killed mid-sale), then fuzzes every target.
faults: deps build
	HOLDFAST_FAULTS=long HOLDFAST_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -v -run TestFaults -timeout 30m ./internal/faults/
	$(MAKE) fuzz

# ha runs the long failover suite: a private pg_auto_failover cluster (a
# monitor and two nodes, fresh for each scenario), two holdfast instances
# under load, the primary lost in each way the suite knows; see the README's
# "Running on a PostgreSQL cluster".
ha: deps build
	HOLDFAST_HA=long HOLDFAST_BIN=$(CURDIR)/$(BIN) $(GO) test -p 1 -count=1 -v -run 'TestAutoFailover|TestFailover' -timeout 30m ./internal/servers/ ./internal/faults/
