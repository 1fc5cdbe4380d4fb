#!/usr/bin/env bash
# experiment.sh: the seed article's experiment, end to end. It resets a demo
# event to 10 tickets left, lets a crowd of k6 virtual users book it through
# POST /book/unsafe (which oversells), resets it again, repeats through
# POST /book/safe (which sells exactly 10), and prints what each left behind,
# with `holdfast check` after each phase.
#
# Run `holdfast dev` in one terminal and this in another:
#
#   scripts/experiment.sh
#   VUS=5 DURATION=5s scripts/experiment.sh          # a shorter run
#
# Environment (all optional):
#   DATABASE_URL        PostgreSQL of the running service; when unset it is
#                       read from .holdfast/env (written by `holdfast dev`)
#   BASE_URL            the service; default from HOLDFAST_ADDR in
#                       .holdfast/env when DATABASE_URL came from there,
#                       else http://127.0.0.1:8080
#   EVENT_ID            the demo event, default 1 (oversell_guard off, with a
#                       presale booking leaving 10 tickets)
#   VUS, DURATION       passed to k6 (defaults 20 and 20s)
#   K6                  the k6 binary; else $(go env GOPATH)/bin/k6, else k6
#                       on PATH, else `go install go.k6.io/k6@v1.8.1`
#   HOLDFAST            the holdfast binary; else built from this checkout
#   K6_SUMMARY_DIR      if set, k6 writes unsafe.json and safe.json there
#                       (--summary-export)
#   EXPERIMENT_LENIENT  1: report, but do not fail on, outcomes that differ
#                       from the article's (safe must sell exactly 10 and
#                       leave 0; unsafe must end below zero)
#
# Exit status: 0 when the experiment reproduced the article, 1 otherwise (or
# on any error: server down, k6 saw a 5xx or unexpected status, ...).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PRESALE_EMAIL='presale@holdfast.example'
STOCK=10 # tickets left after a reset

die() {
	echo "experiment: $*" >&2
	exit 1
}

# --- configuration ----------------------------------------------------------

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_config
EVENT_ID="${EVENT_ID:-1}"
[[ "$EVENT_ID" =~ ^[1-9][0-9]{0,9}$ ]] || die "EVENT_ID must be a positive integer, not '$EVENT_ID'"
LENIENT="${EXPERIMENT_LENIENT:-0}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

lib_find_k6
lib_find_holdfast "$tmp"

echo "k6:       $K6 ($("$K6" version 2>/dev/null | head -n1))"
echo "holdfast: $HOLDFAST"
echo "service:  $BASE_URL"
echo "event:    $EVENT_ID"
echo "load:     ${VUS:-20} VUs for ${DURATION:-20s}"

# --- helpers ----------------------------------------------------------------

have_curl=0
command -v curl >/dev/null && have_curl=1

# preflight checks the service answers on the endpoint: an empty body must be
# refused as invalid (400), which proves the route is mounted.
preflight() {
	local endpoint="$1" status
	((have_curl)) || return 0
	status="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--max-time 10 -d '{}' "$BASE_URL/book/$endpoint" 2>/dev/null)" || status=000
	case "$status" in
	400) ;;
	000) die "nothing answers at $BASE_URL: start \`holdfast dev\` (or set BASE_URL)" ;;
	404) die "$BASE_URL/book/$endpoint is not mounted (status 404): the service needs --unsafe-demo, which \`holdfast dev\` turns on" ;;
	*) die "POST $BASE_URL/book/$endpoint with an empty body answered $status, expected 400" ;;
	esac
}

# reset ends the event's bookings but the presale one, so the stock trigger
# gives their tickets back, and then deletes them. The database refuses to
# delete a live booking or to set the stock by hand (schema/008): a
# confirmed booking ends as a cancellation, a pending one as released.
reset_event() {
	local row total guard available
	row="$(sql "SELECT total_tickets, oversell_guard FROM events WHERE id = $EVENT_ID")"
	[[ -n "$row" ]] || die "event $EVENT_ID does not exist: is this holdfast dev's database, with its sample events?"
	IFS='|' read -r total guard <<<"$row"
	if [[ "$guard" == t ]]; then
		echo "warning: event $EVENT_ID has oversell_guard on; the database will refuse to oversell it" >&2
	fi
	sql "BEGIN;
		SELECT 1 FROM events WHERE id = $EVENT_ID FOR UPDATE;
		UPDATE bookings SET booking_status = 'failed', updated_at = now(),
			failure_reason = CASE booking_status WHEN 'confirmed' THEN 'cancelled' ELSE 'released' END
		WHERE event_id = $EVENT_ID AND user_email <> '$PRESALE_EMAIL' AND booking_status IN ('pending', 'confirmed');
		DELETE FROM bookings WHERE event_id = $EVENT_ID AND user_email <> '$PRESALE_EMAIL';
		COMMIT;" >/dev/null
	available="$(sql "SELECT available_tickets FROM events WHERE id = $EVENT_ID")"
	if [[ "$available" != "$STOCK" ]]; then
		die "after the reset event $EVENT_ID has $available of $total tickets available, expected $STOCK: it needs one confirmed booking by $PRESALE_EMAIL for $((total - STOCK)) tickets, as holdfast dev's sample data has"
	fi
	echo "reset event $EVENT_ID: $available of $total tickets available"

	# The service must see the same database.
	if ((have_curl)); then
		local body seen
		body="$(curl -sS --max-time 10 "$BASE_URL/events/$EVENT_ID" 2>/dev/null)" || body=''
		seen="$(grep -o '"available_tickets":-\{0,1\}[0-9]*' <<<"$body" | head -n1 | cut -d: -f2)" || seen=''
		[[ "$seen" == "$available" ]] ||
			die "GET $BASE_URL/events/$EVENT_ID shows available_tickets '${seen:-?}', the database $available: is DATABASE_URL the service's database?"
	fi
}

failures=()  # outcomes that differ from the article's (EXPERIMENT_LENIENT relaxes these)
errors=()    # things that went wrong whatever EXPERIMENT_LENIENT says
summary=()   # one line per phase

# phase runs k6 against one endpoint and reports what it left behind.
phase() {
	local endpoint="$1" k6_rc check_rc bookings available oversold check_out verdict
	echo
	echo "== /book/$endpoint =="
	preflight "$endpoint"
	reset_event

	local args=(run --quiet
		-e "BASE_URL=$BASE_URL" -e "ENDPOINT=$endpoint" -e "EVENT_ID=$EVENT_ID")
	if [[ -n "${VUS:-}" ]]; then args+=(-e "VUS=$VUS"); fi
	if [[ -n "${DURATION:-}" ]]; then args+=(-e "DURATION=$DURATION"); fi
	if [[ -n "${K6_SUMMARY_DIR:-}" ]]; then
		mkdir -p "$K6_SUMMARY_DIR"
		args+=(--summary-export "$K6_SUMMARY_DIR/$endpoint.json")
	fi
	args+=("$ROOT/scripts/booking_test.js")

	echo "k6 ${args[*]}"
	if "$K6" "${args[@]}"; then k6_rc=0; else k6_rc=$?; fi
	if ((k6_rc == 99)); then
		errors+=("/book/$endpoint: k6 exited 99: a threshold failed (5xx or other unexpected answers; see its summary)")
	elif ((k6_rc != 0)); then
		errors+=("/book/$endpoint: k6 exited $k6_rc")
	fi

	bookings="$(sql "SELECT count(*) FROM bookings WHERE event_id = $EVENT_ID AND user_email <> '$PRESALE_EMAIL'")"
	available="$(sql "SELECT available_tickets FROM events WHERE id = $EVENT_ID")"
	oversold=$((available < 0 ? -available : 0))
	echo
	echo "bookings made: $bookings"
	echo "final stock:   $available"
	echo "oversold by $oversold"

	echo
	echo "holdfast check --event $EVENT_ID:"
	if check_out="$("$HOLDFAST" check --event "$EVENT_ID" 2>&1)"; then check_rc=0; else check_rc=$?; fi
	echo "$check_out"
	if ((check_rc == 0)); then
		verdict=consistent
	elif ((check_rc == 1)) && grep -q 'break the invariants' <<<"$check_out"; then
		verdict=violation
	else
		errors+=("/book/$endpoint: holdfast check could not run (exit $check_rc)")
		verdict=error
	fi

	case "$endpoint" in
	unsafe)
		((available < 0)) ||
			failures+=("/book/unsafe left stock $available, expected below zero (the race did not show)")
		;;
	safe)
		((bookings == STOCK)) || failures+=("/book/safe made $bookings bookings, expected exactly $STOCK")
		((available == 0)) || failures+=("/book/safe left stock $available, expected 0")
		[[ "$verdict" == consistent ]] || failures+=("/book/safe: holdfast check reports $verdict")
		;;
	esac

	summary+=("$(printf '%-14s %-9s %-12s %-9s %s' "/book/$endpoint" "$bookings" "$available" "$oversold" "$verdict")")
}

# --- the experiment ---------------------------------------------------------

sql 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at DATABASE_URL (see psql's message above)"

phase unsafe
phase safe

echo
echo "== summary =="
printf '%-14s %-9s %-12s %-9s %s\n' endpoint bookings "final stock" oversold check
printf '%s\n' "${summary[@]}"
echo

status=0
for e in "${errors[@]}"; do
	echo "ERROR: $e"
	status=1
done
for f in "${failures[@]}"; do
	if [[ "$LENIENT" == 1 ]]; then
		echo "differs from the article (EXPERIMENT_LENIENT=1, not failing): $f"
	else
		echo "FAIL: $f"
		status=1
	fi
done
if ((status == 0)) && ((${#failures[@]} == 0)); then
	echo "reproduced: /book/unsafe oversold, /book/safe sold exactly $STOCK and left 0"
fi
exit "$status"
