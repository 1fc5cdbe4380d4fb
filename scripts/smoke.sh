#!/usr/bin/env bash
# smoke.sh: short runs of the k6 scripts against a private `holdfast dev`
# that it starts in a temporary directory and stops at the end: the seed's
# experiment (experiment.sh) and the hold experiments (holds.sh), each short,
# the spike once more on an event of two categories, a seated on-sale
# (seats.sh, 600 seats), and a short on-sale through the waiting room (onsale.sh, 500 buyers; ONSALE_SMOKE=0 leaves it
# out). `make test` calls it; it needs HOLDFAST (the
# binary) and K6. Arguments are passed to `holdfast dev`; the hold TTL, the
# sweep interval and the admin token are set here, because the runners must
# know them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOLDFAST="${HOLDFAST:?set HOLDFAST to the holdfast binary}"
K6="${K6:?set K6 to the k6 binary}"
work="$(mktemp -d /tmp/holdfast-smoke.XXXXXX)"
# PostgreSQL runs as the postgres user when we are root: it must reach $work.
chmod 755 "$work"
log="$work/dev.log"
pid=""
hold_ttl=5s
sweep_every=1s
# onsale.sh creates its event through /admin; a fresh token per run.
admin_token="smoke-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

cleanup() {
	local rc=$?
	if ((rc != 0)) && [[ -s "$log" ]]; then
		echo "smoke: failed (exit $rc); the last lines of holdfast dev's log:" >&2
		tail -n 40 "$log" >&2
	fi
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -INT "$pid"
		wait "$pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The service on a free port, with private PostgreSQL and Redis under $work.
"$HOLDFAST" dev --dir "$work/.holdfast" --addr 127.0.0.1:0 --hold-ttl "$hold_ttl" --sweep-every "$sweep_every" --admin-token "$admin_token" "$@" >"$work/dev.out" 2>"$log" &
pid=$!
for _ in $(seq 1 600); do
	grep -q 'is serving on' "$work/dev.out" 2>/dev/null && break
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$work/dev.out" "$log" >&2
		echo "smoke: holdfast dev exited at start" >&2
		exit 1
	fi
	sleep 0.1
done
grep -q 'is serving on' "$work/dev.out" || { cat "$log" >&2; echo "smoke: holdfast dev did not start" >&2; exit 1; }

BASE_URL="$(sed -n 's/.*is serving on \(http:[^ ]*\).*/\1/p' "$work/dev.out")"
DATABASE_URL="$(sed -n 's/^DATABASE_URL=//p' "$work/dev.out")"
export BASE_URL DATABASE_URL HOLDFAST K6
echo "smoke: holdfast dev at $BASE_URL"

echo "smoke: the seed's experiment, short"
VUS=20 DURATION=3s "$ROOT/scripts/experiment.sh"

echo "smoke: the hold flow and the on-sale spike, short"
PHASE=all HOLD_TTL="$hold_ttl" SWEEP_EVERY="$sweep_every" EVENT_ID=4 VUS=20 DURATION=5s THINK= \
	SPIKE_DURATION=5s START_RATE=50 RATE=200 STOCK=100 "$ROOT/scripts/holds.sh"

# A spike on an event of two categories, 40 + 30 under a capacity of 60:
# the capacity binds, holds of one or two categories, sold out exactly.
echo "smoke: the on-sale spike on an event of two categories, short"
PHASE=spike HOLD_TTL="$hold_ttl" SWEEP_EVERY="$sweep_every" SPIKE_DURATION=3s START_RATE=50 RATE=100 \
	STOCK=60 SPIKE_CATEGORIES=40,30 "$ROOT/scripts/holds.sh"

# A seated on-sale: 600 seats, best available 2-4 per buyer, sold out to
# the last seat.
echo "smoke: a seated on-sale, short"
ADMIN_TOKEN="$admin_token" SECTIONS=2 ROWS=10 SEATS=30 VUS=20 "$ROOT/scripts/seats.sh"

# The on-sale through the waiting room runs by default; ONSALE_SMOKE=0 skips
# it (a quicker look at the hold experiments alone).
if [[ "${ONSALE_SMOKE:-1}" == 1 ]]; then
	echo "smoke: the on-sale through the waiting room, short"
	ADMIN_TOKEN="$admin_token" HOLD_TTL="$hold_ttl" SWEEP_EVERY="$sweep_every" BUYERS=500 VUS=20 RATE=100 \
		JOIN_LEAD=8 MAX_WAIT=60 ABANDON_PCT=25 ABANDON_MODE=release PROBE_PCT=5 "$ROOT/scripts/onsale.sh"
fi

echo "smoke: passed"
