#!/usr/bin/env bash
# smoke.sh: short runs of the k6 scripts against a private `holdfast dev`
# that it starts in a temporary directory and stops at the end. `make test`
# calls it; it needs HOLDFAST (the binary) and K6.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOLDFAST="${HOLDFAST:?set HOLDFAST to the holdfast binary}"
K6="${K6:?set K6 to the k6 binary}"
work="$(mktemp -d /tmp/holdfast-smoke.XXXXXX)"
# PostgreSQL runs as the postgres user when we are root: it must reach $work.
chmod 755 "$work"
log="$work/dev.log"
pid=""

cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -INT "$pid"
		wait "$pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# The service on a free port, with private PostgreSQL and Redis under $work.
"$HOLDFAST" dev --dir "$work/.holdfast" --addr 127.0.0.1:0 --hold-ttl 5s "$@" >"$work/dev.out" 2>"$log" &
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

echo "smoke: passed"
