#!/usr/bin/env bash
# holds.sh: the hold experiments, end to end, each checked in the database
# and with `holdfast check` after the holds left behind have expired.
#
#   flow   hold_flow.js against the large event (4): buyers hold, think, then
#          confirm, release or walk away. After the hold TTL + sweep interval
#          + 1s every hold of the run must be confirmed, released or expired,
#          none pending, and the database must agree with what k6 saw.
#   spike  a fresh event with STOCK tickets, then spike.js: arrivals far above
#          the stock, every hold confirmed at once. After the wait the event
#          must be sold out exactly: 0 available, STOCK confirmed, as many
#          confirmed bookings as k6 saw 200s on confirm, nothing pending.
#          With SPIKE_CATEGORIES the event has those categories and every
#          hold asks for one or two of them; each category must then add up
#          (available + confirmed = total, never below zero) and be at 0
#          when the categories fit the capacity.
#
# Run `holdfast dev --hold-ttl 5s` in one terminal and this in another:
#
#   scripts/holds.sh
#   PHASE=spike RATE=200 STOCK=100 DURATION=5s scripts/holds.sh   # a short spike
#   PHASE=spike STOCK=60 SPIKE_CATEGORIES=40,30 RATE=100 DURATION=3s scripts/holds.sh
#
# Environment (all optional):
#   DATABASE_URL   PostgreSQL of the running service; when unset it is read
#                  from .holdfast/env (written by `holdfast dev`)
#   BASE_URL       the service; default from HOLDFAST_ADDR in .holdfast/env
#                  when DATABASE_URL came from there, else
#                  http://127.0.0.1:8080
#   PHASE          flow, spike or all (default all)
#   HOLD_TTL       the server's --hold-ttl, default 5s; the script checks it
#                  against the holds the server made and fails on a mismatch
#   SWEEP_EVERY    the server's --sweep-every, default 1s
#   EVENT_ID       the flow's event, default 4
#   VUS            the flow's virtual users, default 50
#   DURATION       how long each phase's load lasts, default 30s
#   SPIKE_DURATION the spike's ramp, default DURATION
#   THINK          the flow's think time in seconds, default random 0.2-1
#   RATE           the spike's final arrival rate per second, default 400
#   START_RATE     the spike's first arrival rate per second, default 50
#   PRE_VUS, MAX_VUS  the spike's VU pool, default 100 and 400
#   STOCK          tickets of the spike's event, default 200
#   SPIKE_CATEGORIES  sizes of the spike event's categories, e.g. 40,30
#                  (two or more, each at most STOCK); default one category
#   K6             the k6 binary; else $(go env GOPATH)/bin/k6, else k6 on
#                  PATH, else `go install go.k6.io/k6@v1.8.1`
#   HOLDFAST       the holdfast binary; else built from this checkout
#   K6_SUMMARY_DIR if set, k6 writes flow.json and spike.json there
#                  (--summary-export); else they go to a temporary directory
#
# Exit status: 0 when every expectation held, 1 otherwise (or on any error:
# server down, k6 saw a 5xx or unexpected status, `holdfast check` failed).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() {
	echo "holds: $*" >&2
	exit 1
}

# --- configuration ----------------------------------------------------------

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_config

PHASE="${PHASE:-all}"
case "$PHASE" in flow | spike | all) ;; *) die "PHASE must be flow, spike or all, not '$PHASE'" ;; esac
HOLD_TTL="${HOLD_TTL:-5s}"
SWEEP_EVERY="${SWEEP_EVERY:-1s}"
EVENT_ID="${EVENT_ID:-4}"
VUS="${VUS:-50}"
DURATION="${DURATION:-30s}"
SPIKE_DURATION="${SPIKE_DURATION:-$DURATION}"
RATE="${RATE:-400}"
START_RATE="${START_RATE:-50}"
PRE_VUS="${PRE_VUS:-100}"
MAX_VUS="${MAX_VUS:-400}"
STOCK="${STOCK:-200}"
# The spike event's categories, their sizes (e.g. 40,30): empty for one.
SPIKE_CATEGORIES="${SPIKE_CATEGORIES:-}"

for v in EVENT_ID VUS RATE START_RATE PRE_VUS MAX_VUS STOCK; do
	[[ "${!v}" =~ ^[1-9][0-9]{0,8}$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ -z "$SPIKE_CATEGORIES" || "$SPIKE_CATEGORIES" =~ ^[1-9][0-9]{0,8}(,[1-9][0-9]{0,8})+$ ]] ||
	die "SPIKE_CATEGORIES must be two or more positive sizes such as 40,30, not '$SPIKE_CATEGORIES'"

# duration_ms turns a Go duration ("5s", "1500ms", "1m30s") into
# milliseconds, or fails.
duration_ms() {
	local s="$1" total=0 num unit factor
	[[ "$s" == 0 ]] && { echo 0; return; }
	[[ -n "$s" ]] || return 1
	while [[ -n "$s" ]]; do
		[[ "$s" =~ ^([0-9]+(\.[0-9]*)?|\.[0-9]+)([a-zµ]+) ]] || return 1
		num="${BASH_REMATCH[1]}" unit="${BASH_REMATCH[3]}"
		s="${s:${#BASH_REMATCH[0]}}"
		case "$unit" in
		h) factor=3600000 ;; m) factor=60000 ;; s) factor=1000 ;; ms) factor=1 ;;
		us | µs) factor=0.001 ;; ns) factor=0.000001 ;;
		*) return 1 ;;
		esac
		total="$(awk -v t="$total" -v n="$num" -v f="$factor" 'BEGIN { printf "%.6f", t + n * f }')"
	done
	awk -v t="$total" 'BEGIN { printf "%d", t + 0.5 }'
}
ttl_ms="$(duration_ms "$HOLD_TTL")" && ((ttl_ms > 0)) || die "HOLD_TTL must be a positive Go duration such as 5s, not '$HOLD_TTL'"
sweep_ms="$(duration_ms "$SWEEP_EVERY")" && ((sweep_ms >= 1000)) ||
	die "SWEEP_EVERY must be a Go duration of at least 1s, not '$SWEEP_EVERY'"
for v in DURATION SPIKE_DURATION; do
	duration_ms "${!v}" >/dev/null || die "$v must be a Go duration such as 30s, not '${!v}'"
done
# The wait after a run: the last hold lapses one TTL after k6 ends at the
# latest, and the sweeper has one interval plus one second to give it back.
wait_ms=$((ttl_ms + sweep_ms + 1000))
wait_s="$(awk -v m="$wait_ms" 'BEGIN { printf "%.3f", m / 1000 }')"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

lib_find_k6
lib_find_holdfast "$tmp"

if command -v jq >/dev/null; then
	json_tool=jq
elif command -v python3 >/dev/null; then
	json_tool=python3
else
	die "reading k6's --summary-export needs jq or python3 on PATH"
fi
command -v curl >/dev/null || die "curl is not on PATH"

summary_dir="${K6_SUMMARY_DIR:-$tmp}"
mkdir -p "$summary_dir"
RUN_ID="$(date +%s)-$$"

echo "k6:       $K6 ($("$K6" version 2>/dev/null | head -n1))"
echo "holdfast: $HOLDFAST"
echo "service:  $BASE_URL"
echo "hold TTL: $HOLD_TTL, sweep every $SWEEP_EVERY (wait after each run: ${wait_s}s)"
echo "run id:   $RUN_ID"

# --- helpers ----------------------------------------------------------------

# metric prints a counter's count (or another field) from a --summary-export
# file; 0 when k6 did not record it.
metric() {
	local file="$1" name="$2" field="${3:-count}"
	if [[ "$json_tool" == jq ]]; then
		jq -r --arg n "$name" --arg f "$field" '.metrics[$n][$f] // 0 | floor' "$file"
	else
		python3 - "$file" "$name" "$field" <<-'EOF'
			import json, sys
			m = json.load(open(sys.argv[1]))["metrics"].get(sys.argv[2], {})
			print(int(m.get(sys.argv[3], 0)))
		EOF
	fi
}

# preflight checks the service answers POST /holds (an empty body must be
# refused as invalid, which proves the route is mounted) and sees the same
# database: its available_tickets for the event must be the database's.
preflight() {
	local event="$1" status body seen available
	status="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		--max-time 10 -d '{}' "$BASE_URL/holds" 2>/dev/null)" || status=000
	case "$status" in
	400) ;;
	000) die "nothing answers at $BASE_URL: start \`holdfast dev --hold-ttl $HOLD_TTL\` (or set BASE_URL)" ;;
	*) die "POST $BASE_URL/holds with an empty body answered $status, expected 400: does this service have holds?" ;;
	esac
	available="$(sql "SELECT available_tickets FROM events WHERE id = $event")"
	[[ -n "$available" ]] || die "event $event does not exist: is this holdfast dev's database, with its sample events?"
	body="$(curl -sS --max-time 10 "$BASE_URL/events/$event" 2>/dev/null)" || body=''
	seen="$(grep -o '"available_tickets":-\{0,1\}[0-9]*' <<<"$body" | head -n1 | cut -d: -f2)" || seen=''
	[[ "$seen" == "$available" ]] ||
		die "GET $BASE_URL/events/$event shows available_tickets '${seen:-?}', the database $available: is DATABASE_URL the service's database?"
}

# run_k6 runs a script and records a threshold failure or other exit.
run_k6() {
	local label="$1" script="$2" export_file="$3" rc
	shift 3
	local args=(run --quiet --summary-export "$export_file" -e "BASE_URL=$BASE_URL" -e "RUN_ID=$RUN_ID" "$@" "$ROOT/scripts/$script")
	echo "k6 ${args[*]}"
	if "$K6" "${args[@]}"; then rc=0; else rc=$?; fi
	if ((rc == 99)); then
		errors+=("$label: k6 exited 99: a threshold failed (5xx or other unexpected answers; see its summary)")
	elif ((rc != 0)); then
		errors+=("$label: k6 exited $rc")
	fi
	[[ -f "$export_file" ]] || die "$label: k6 left no summary at $export_file"
}

# check_ttl compares the TTL of the holds the server made (where) with
# HOLD_TTL: waiting on the wrong TTL would blame the sweeper for nothing.
check_ttl() {
	local where="$1" ttls
	# To the tenth of a second: the expiry is set when the hold is inserted
	# (clock_timestamp), its created_at when its transaction began.
	ttls="$(sql "SELECT string_agg(DISTINCT round(extract(epoch FROM expires_at - created_at) * 10)::bigint::text, ',')
		FROM bookings WHERE $where AND expires_at IS NOT NULL")"
	[[ -z "$ttls" || "$ttls" == "$(( (ttl_ms + 50) / 100 ))" ]] ||
		die "the server's holds last ${ttls} tenths of a second, but HOLD_TTL=$HOLD_TTL (${ttl_ms}ms): set HOLD_TTL to the server's --hold-ttl"
}

wait_for_expiry() {
	echo
	echo "waiting ${wait_s}s (hold TTL $HOLD_TTL + sweep $SWEEP_EVERY + 1s) for the holds left to expire and come back"
	sleep "$wait_s"
}

# run_check runs `holdfast check` on one event; it prints the table and
# sets check_verdict to consistent, violation or error.
run_check() {
	local label="$1" event="$2" out rc
	echo
	echo "holdfast check --event $event --sweep-every $SWEEP_EVERY:"
	if out="$("$HOLDFAST" check --event "$event" --sweep-every "$SWEEP_EVERY" 2>&1)"; then rc=0; else rc=$?; fi
	echo "$out"
	if ((rc == 0)); then
		check_verdict=consistent
	elif ((rc == 1)) && grep -q 'break the invariants' <<<"$out"; then
		check_verdict=violation
		failures+=("$label: holdfast check reports a violation on event $event")
	else
		check_verdict=error
		errors+=("$label: holdfast check could not run (exit $rc)")
	fi
}

# expect records a failure unless "$2 $3 $4" holds (an arithmetic
# comparison), with $1 saying what it means.
expect() {
	local what="$1" a="$2" op="$3" b="$4"
	if ! (("$a" $op "$b")); then
		failures+=("$what: $a, expected $op $b")
	fi
}

errors=()   # things that went wrong: server down, k6 threshold, check error
failures=() # expectations that did not hold
report=()   # the summary block, line by line
check_verdict=''

# --- flow -------------------------------------------------------------------

phase_flow() {
	local file="$summary_dir/flow.json" where k6_made k6_conf k6_rel k6_aband k6_exp k6_gave
	echo
	echo "== flow: hold, think, confirm / release / walk away on event $EVENT_ID =="
	preflight "$EVENT_ID"
	echo "event $EVENT_ID before: $(sql "SELECT available_tickets || ' of ' || total_tickets || ' tickets available' FROM events WHERE id = $EVENT_ID")"

	local args=(-e "EVENT_ID=$EVENT_ID" -e "VUS=$VUS" -e "DURATION=$DURATION")
	if [[ -n "${THINK:-}" ]]; then args+=(-e "THINK=$THINK"); fi
	run_k6 flow hold_flow.js "$file" "${args[@]}"

	where="event_id = $EVENT_ID AND user_email LIKE 'flow-$RUN_ID-%'"
	check_ttl "$where"
	wait_for_expiry

	local made conf rel exp pend
	IFS='|' read -r made conf rel exp pend <<<"$(sql "SELECT count(*),
		count(*) FILTER (WHERE booking_status = 'confirmed'),
		count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'released'),
		count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'expired'),
		count(*) FILTER (WHERE booking_status = 'pending')
		FROM bookings WHERE $where")"
	k6_made="$(metric "$file" holds_made)" k6_conf="$(metric "$file" confirmed)"
	k6_rel="$(metric "$file" released)" k6_aband="$(metric "$file" abandoned)"
	k6_exp="$(metric "$file" hold_expired)" k6_gave="$(metric "$file" gave_up)"

	echo
	echo "this run's holds in the database (emails flow-$RUN_ID-*):"
	printf '  %-10s %8s %8s\n' "" database k6
	printf '  %-10s %8s %8s\n' made "$made" "$k6_made"
	printf '  %-10s %8s %8s\n' confirmed "$conf" "$k6_conf"
	printf '  %-10s %8s %8s\n' released "$rel" "$k6_rel"
	printf '  %-10s %8s %8s\n' expired "$exp" "$((k6_aband + k6_exp + k6_gave))"
	printf '  %-10s %8s %8s\n' pending "$pend" -
	echo "  (k6's expired: walked away $k6_aband, lapsed before confirm or release $k6_exp, gave up after 429s $k6_gave)"
	echo "event $EVENT_ID after: $(sql "SELECT available_tickets || ' of ' || total_tickets || ' tickets available' FROM events WHERE id = $EVENT_ID")"

	expect "flow: holds in the database vs k6's holds_made" "$made" == "$k6_made"
	expect "flow: confirmed bookings vs k6's confirmed" "$conf" == "$k6_conf"
	expect "flow: released holds vs k6's released" "$rel" == "$k6_rel"
	expect "flow: expired holds vs k6's abandoned + hold_expired + gave_up" "$exp" == "$((k6_aband + k6_exp + k6_gave))"
	expect "flow: holds still pending ${wait_s}s after the run" "$pend" == 0
	expect "flow: holds made" "$made" '>' 0

	run_check flow "$EVENT_ID"

	report+=(
		"flow (event $EVENT_ID, $VUS VUs, $DURATION)"
		"  requests        $(metric "$file" http_reqs)"
		"  holds made      $made"
		"  confirmed       $conf"
		"  released        $rel"
		"  expired         $exp (walked away $k6_aband)"
		"  pending left    $pend"
		"  sold_out        $(metric "$file" sold_out)"
		"  busy answers    $(metric "$file" busy)"
		"  check           $check_verdict"
	)
}

# --- spike ------------------------------------------------------------------

phase_spike() {
	local file="$summary_dir/spike.json" event
	echo
	echo "== spike: $START_RATE/s rising to $RATE/s over $SPIKE_DURATION on $STOCK tickets =="
	event="$(sql "INSERT INTO events (name, description, event_date, total_tickets, available_tickets, ticket_price)
		VALUES ('holds.sh spike $RUN_ID', 'an on-sale spike of scripts/holds.sh', now() + interval '30 days',
			$STOCK, $STOCK, 25.00)
		RETURNING id")"
	[[ "$event" =~ ^[0-9]+$ ]] || die "could not create the spike's event: '$event'"
	echo "created event $event with $STOCK tickets"
	local cat_ids='' cat_sum=0 sizes size i
	if [[ -n "$SPIKE_CATEGORIES" ]]; then
		# As holdfast dev's festival: the default category (the trigger's,
		# with the event's whole stock) takes the first size, and each other
		# size is a category of its own. Its total and available move by the
		# same amount, which is the one change of its stock the database takes.
		IFS=',' read -r -a sizes <<<"$SPIKE_CATEGORIES"
		for size in "${sizes[@]}"; do
			((size <= STOCK)) || die "SPIKE_CATEGORIES: a category of $size is larger than the event's $STOCK"
			cat_sum=$((cat_sum + size))
		done
		sql "UPDATE categories SET name = 'c1', total_tickets = ${sizes[0]}, available_tickets = ${sizes[0]}
			WHERE event_id = $event" >/dev/null || die "could not size event $event's default category"
		for ((i = 1; i < ${#sizes[@]}; i++)); do
			sql "INSERT INTO categories (event_id, name, price, total_tickets, available_tickets)
				VALUES ($event, 'c$((i + 1))', 25.00, ${sizes[i]}, ${sizes[i]})" >/dev/null ||
				die "could not add a category to event $event"
		done
		cat_ids="$(sql "SELECT string_agg(id::text, ',' ORDER BY id) FROM categories WHERE event_id = $event")"
		echo "  in categories of $SPIKE_CATEGORIES (ids $cat_ids; $cat_sum in all, under a capacity of $STOCK)"
	fi
	preflight "$event"

	local k6_args=(-e "EVENT_ID=$event" -e "RATE=$RATE" -e "START_RATE=$START_RATE"
		-e "DURATION=$SPIKE_DURATION" -e "PRE_VUS=$PRE_VUS" -e "MAX_VUS=$MAX_VUS")
	if [[ -n "$cat_ids" ]]; then k6_args+=(-e "CATEGORIES=$cat_ids"); fi
	run_k6 spike spike.js "$file" "${k6_args[@]}"

	check_ttl "event_id = $event"
	wait_for_expiry

	local total avail made conf conf_qty rel exp pend
	IFS='|' read -r total avail <<<"$(sql "SELECT total_tickets, available_tickets FROM events WHERE id = $event")"
	IFS='|' read -r made conf conf_qty rel exp pend <<<"$(sql "SELECT count(*),
		count(*) FILTER (WHERE booking_status = 'confirmed'),
		coalesce(sum(quantity) FILTER (WHERE booking_status = 'confirmed'), 0),
		count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'released'),
		count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'expired'),
		count(*) FILTER (WHERE booking_status = 'pending')
		FROM bookings WHERE event_id = $event")"
	local reqs k6_made k6_conf k6_exp k6_gave k6_sold k6_busy dropped
	reqs="$(metric "$file" http_reqs)" k6_made="$(metric "$file" holds_made)" k6_conf="$(metric "$file" confirmed)"
	k6_exp="$(metric "$file" hold_expired)" k6_gave="$(metric "$file" gave_up)"
	k6_sold="$(metric "$file" sold_out)" k6_busy="$(metric "$file" busy)"
	dropped="$(metric "$file" dropped_iterations)"

	echo
	echo "event $event in the database: $avail of $total available, $conf_qty confirmed in $conf bookings, $pend pending, $exp expired, $rel released ($made holds made)"
	echo "k6 saw: $k6_made holds made, $k6_conf confirmed, $((k6_exp + k6_gave)) lapsed before confirm, $k6_sold sold_out, $k6_busy busy"

	expect "spike: k6 saw sold_out answers (demand above the stock)" "$k6_sold" '>' 0
	expect "spike: holds in the database vs k6's holds_made" "$made" == "$k6_made"
	expect "spike: confirmed bookings vs k6's confirmed (200 on confirm)" "$conf" == "$k6_conf"
	expect "spike: holds still pending ${wait_s}s after the run" "$pend" == 0
	expect "spike: expired holds vs k6's hold_expired + gave_up" "$exp" == "$((k6_exp + k6_gave))"
	expect "spike: released holds (the spike releases none)" "$rel" == 0
	expect "spike: available + confirmed tickets vs total $total" "$((avail + conf_qty))" == "$total"
	expect "spike: tickets left (sold out exactly)" "$avail" == 0
	expect "spike: tickets confirmed (sold out exactly)" "$conf_qty" == "$STOCK"
	if ((k6_exp + k6_gave > 0 && avail > 0)); then
		failures+=("spike: $((k6_exp + k6_gave)) holds lapsed before their confirm got through (see busy/hold_expired), and their tickets came back after the spike was over")
	fi

	# Each category: its stock plus its confirmed items make its total,
	# never below zero; all sold out when the categories add up to no more
	# than the capacity, else the capacity binds (checked above) and the
	# confirmed items add up to it.
	local cat_lines=() cid cname ctotal cavail cconf items_sum=0 cats_ok=yes nfail=${#failures[@]}
	if [[ -n "$cat_ids" ]]; then
		while IFS='|' read -r cid cname ctotal cavail cconf; do
			[[ -n "$cid" ]] || continue
			echo "category $cid ($cname): $cavail of $ctotal available, $cconf confirmed"
			cat_lines+=("$(printf '  %-15s %s' "category $cid" "$cconf of $ctotal confirmed, $cavail available")")
			items_sum=$((items_sum + cconf))
			expect "spike: category $cid available + confirmed vs its total $ctotal" "$((cavail + cconf))" == "$ctotal"
			expect "spike: category $cid available (never below zero)" "$cavail" '>=' 0
			if ((cat_sum <= STOCK)); then
				expect "spike: category $cid available (sold out exactly)" "$cavail" == 0
			fi
		done <<<"$(sql "SELECT c.id, c.name, c.total_tickets, c.available_tickets,
			coalesce((SELECT sum(i.quantity) FROM booking_items i JOIN bookings b ON b.id = i.booking_id
				WHERE i.category_id = c.id AND b.booking_status = 'confirmed'), 0)
			FROM categories c WHERE c.event_id = $event ORDER BY c.id")"
		expect "spike: confirmed items of every category vs confirmed tickets" "$items_sum" == "$conf_qty"
		((${#failures[@]} == nfail)) || cats_ok=no
	fi

	run_check spike "$event"

	local sold_exactly=no
	((avail == 0 && conf_qty == total && pend == 0)) && [[ "$cats_ok" == yes ]] && sold_exactly=yes
	report+=(
		"spike (event $event, $STOCK tickets${SPIKE_CATEGORIES:+ in categories of $SPIKE_CATEGORIES}, $START_RATE->$RATE/s over $SPIKE_DURATION)"
		"  requests        $reqs"
		"  holds made      $made"
		"  confirmed       $conf ($conf_qty tickets; k6 saw $k6_conf)"
		"  expired         $exp"
		"  pending left    $pend"
		"  sold_out        $k6_sold"
		"  busy answers    $k6_busy"
		"  dropped         $dropped (arrivals k6 had no VU for)"
		"  available       $avail of $total (sold out exactly: $sold_exactly)"
		"${cat_lines[@]}"
		"  check           $check_verdict"
	)
}

# --- the experiments --------------------------------------------------------

sql 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at DATABASE_URL (see psql's message above)"

case "$PHASE" in
flow) phase_flow ;;
spike) phase_spike ;;
all)
	phase_flow
	phase_spike
	;;
esac

echo
echo "== summary =="
printf '%s\n' "${report[@]}"
echo

status=0
for e in "${errors[@]}"; do
	echo "ERROR: $e"
	status=1
done
for f in "${failures[@]}"; do
	echo "FAIL: $f"
	status=1
done
if ((status == 0)); then
	echo "holds: every expectation held"
fi
exit "$status"
