#!/usr/bin/env bash
# onsale.sh: an on-sale through the waiting room, end to end. It creates a
# fresh queued event through the admin API (on_sale_at JOIN_LEAD seconds
# ahead), runs scripts/onsale.js (BUYERS buyers join before the sale, poll
# as told, hold with their pass and confirm or abandon), waits for what was
# abandoned to come back, and checks the database, k6's counts and
# `holdfast check`.
#
# It needs the service to run with an admin token:
#   holdfast dev --admin-token "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" --hold-ttl 5s
# and reads the token from ADMIN_TOKEN (or HOLDFAST_ADMIN_TOKEN, or the
# HOLDFAST_ADMIN_TOKEN line `holdfast dev` writes to .holdfast/env).
#
# Environment (defaults in brackets):
#   DATABASE_URL, BASE_URL   as in experiment.sh (from .holdfast/env)
#   BUYERS [20000]           buyers who join before the sale
#   TICKETS [BUYERS*QUANTITY/10] the event's tickets: fewer than the
#                            buyers want, so the run sells out (a tenth)
#   QUANTITY [1]             tickets per hold, or the least with QUANTITY_MAX
#   QUANTITY_MAX [QUANTITY]  each buyer asks for QUANTITY..QUANTITY_MAX
#                            (then for one if that is refused sold_out)
#   RATE [200]               the queue's admit_per_second
#   PASS_TTL [2m]            the queue's pass_ttl
#   VUS [200]                k6 VUs; each plays BUYERS/VUS buyers
#   JOIN_LEAD [BUYERS/1000+10] seconds from now to on_sale_at: time to join
#   MAX_WAIT [2*BUYERS/RATE+60] seconds after the sale a buyer may wait
#   ABANDON_PCT [25]         holds the buyers walk away from
#   ABANDON_MODE [release]   release (DELETE the hold) or expire (leave it:
#                            needs HOLD_TTL, the server's --hold-ttl)
#   HOLD_TTL [5s], SWEEP_EVERY [1s]  the server's, for the wait after k6
#   PROBE_PCT [2]            buyers who also try what a pass must refuse
#   ORDER_TOLERANCE [1]      seconds a place ahead may lag one behind it
#   STOCK_AWARE [1]          expect the queue that knows the stock: no
#                            admitted buyer finds nothing, every ticket sold
#                            (the abandoned ones again, through the queue),
#                            every remaining place sold_out, the queue's
#                            state sold_out within a second of the last
#                            ticket sold; 0: step 2's queue, which does not
#   K6, HOLDFAST, K6_SUMMARY_DIR  as in holds.sh (summary: onsale.json)
#
# Exit status: 0 when every expectation held, 1 otherwise (a threshold of
# onsale.js failed, an expectation below failed, `holdfast check` failed,
# or the service, the admin API or the database could not be reached).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() {
	echo "onsale: $*" >&2
	exit 1
}

# --- configuration ----------------------------------------------------------

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_config

BUYERS="${BUYERS:-20000}"
QUANTITY="${QUANTITY:-1}"
QUANTITY_MAX="${QUANTITY_MAX:-$QUANTITY}"
TICKETS="${TICKETS:-$(((BUYERS * QUANTITY + 9) / 10))}"
RATE="${RATE:-200}"
PASS_TTL="${PASS_TTL:-2m}"
VUS="${VUS:-200}"
JOIN_LEAD="${JOIN_LEAD:-$((BUYERS / 1000 + 10))}"
MAX_WAIT="${MAX_WAIT:-$((2 * BUYERS / RATE + 60))}"
ABANDON_PCT="${ABANDON_PCT:-25}"
ABANDON_MODE="${ABANDON_MODE:-release}"
HOLD_TTL="${HOLD_TTL:-5s}"
SWEEP_EVERY="${SWEEP_EVERY:-1s}"
PROBE_PCT="${PROBE_PCT:-2}"
ORDER_TOLERANCE="${ORDER_TOLERANCE:-1}"
STOCK_AWARE="${STOCK_AWARE:-1}"
ADMIN_TOKEN="${ADMIN_TOKEN:-${HOLDFAST_ADMIN_TOKEN:-$(lib_env_value HOLDFAST_ADMIN_TOKEN)}}"

for v in BUYERS QUANTITY QUANTITY_MAX TICKETS RATE VUS JOIN_LEAD MAX_WAIT; do
	[[ "${!v}" =~ ^[1-9][0-9]{0,8}$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for v in ABANDON_PCT PROBE_PCT; do
	[[ "${!v}" =~ ^([0-9]|[1-9][0-9]|100)$ ]] || die "$v must be a whole percentage from 0 to 100, not '${!v}'"
done
[[ "$ORDER_TOLERANCE" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "ORDER_TOLERANCE must be a number of seconds, not '$ORDER_TOLERANCE'"
case "$ABANDON_MODE" in release | expire) ;; *) die "ABANDON_MODE must be release or expire, not '$ABANDON_MODE'" ;; esac
case "$STOCK_AWARE" in 0 | 1) ;; *) die "STOCK_AWARE must be 0 or 1, not '$STOCK_AWARE'" ;; esac
[[ "$PASS_TTL" =~ ^[0-9]+(ms|s|m|h)$ ]] || die "PASS_TTL must be a Go duration such as 2m, not '$PASS_TTL'"
[[ -n "$ADMIN_TOKEN" ]] ||
	die "no admin token: start \`holdfast dev --admin-token <16+ characters>\` and set ADMIN_TOKEN to it"

# seconds turns a Go duration of one unit ("5s", "1500ms", "2m") into
# whole seconds, rounded up.
seconds() {
	[[ "$1" =~ ^([0-9]+)(ms|s|m|h)$ ]] || return 1
	local n="${BASH_REMATCH[1]}"
	case "${BASH_REMATCH[2]}" in
	ms) echo $(((n + 999) / 1000)) ;; s) echo "$n" ;; m) echo $((n * 60)) ;; h) echo $((n * 3600)) ;;
	esac
}
hold_ttl_s="$(seconds "$HOLD_TTL")" || die "HOLD_TTL must be a Go duration of one unit such as 5s, not '$HOLD_TTL'"
sweep_s="$(seconds "$SWEEP_EVERY")" || die "SWEEP_EVERY must be a Go duration of one unit such as 1s, not '$SWEEP_EVERY'"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
lib_find_k6
lib_find_holdfast "$tmp"
command -v curl >/dev/null || die "curl is not on PATH"
command -v jq >/dev/null || command -v python3 >/dev/null || die "reading k6's --summary-export needs jq or python3 on PATH"

summary_dir="${K6_SUMMARY_DIR:-$tmp}"
mkdir -p "$summary_dir"
summary="$summary_dir/onsale.json"
RUN_ID="$(date +%s)-$$"

echo "k6:       $K6 ($("$K6" version 2>/dev/null | head -n1))"
echo "holdfast: $HOLDFAST"
echo "service:  $BASE_URL"
echo "run id:   $RUN_ID"

sql 'SELECT 1' >/dev/null || die "cannot reach PostgreSQL at DATABASE_URL (see psql's message above)"

# json_field prints a top-level field of a JSON object on stdin ("" when
# missing or null; objects as compact JSON).
json_field() {
	if command -v jq >/dev/null; then
		jq -rc --arg f "$1" '.[$f] // empty'
	else
		python3 -c 'import json,sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else (json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v))' "$1"
	fi
}

# --- the event --------------------------------------------------------------

now="$(date +%s)"
on_sale_epoch=$((now + JOIN_LEAD))
on_sale_at="$(date -u -d "@$on_sale_epoch" +%Y-%m-%dT%H:%M:%SZ)"
event_date="$(date -u -d "@$((now + 30 * 86400))" +%Y-%m-%dT%H:%M:%SZ)"
create_body="$(printf '{"name":"onsale.sh %s","description":"an on-sale through the waiting room (scripts/onsale.sh)","event_date":"%s","total_tickets":%d,"ticket_price":"25.00","on_sale_at":"%s","queue":{"admit_per_second":%d,"pass_ttl":"%s"}}' \
	"$RUN_ID" "$event_date" "$TICKETS" "$on_sale_at" "$RATE" "$PASS_TTL")"
status="$(curl -sS -o "$tmp/event.json" -w '%{http_code}' --max-time 10 -X POST \
	-H 'Content-Type: application/json' -H "Authorization: Bearer $ADMIN_TOKEN" \
	-d "$create_body" "$BASE_URL/admin/events" 2>/dev/null)" || status=000
case "$status" in
201) ;;
000) die "nothing answers at $BASE_URL: start \`holdfast dev --admin-token ... --hold-ttl $HOLD_TTL\` (or set BASE_URL)" ;;
404) die "POST $BASE_URL/admin/events is 404: the service runs without --admin-token" ;;
401) die "POST $BASE_URL/admin/events is 401: ADMIN_TOKEN is not the service's --admin-token" ;;
*) die "POST $BASE_URL/admin/events answered $status: $(head -c 300 "$tmp/event.json")" ;;
esac
event="$(json_field id <"$tmp/event.json")"
[[ "$event" =~ ^[0-9]+$ ]] || die "POST /admin/events gave no event id: $(head -c 300 "$tmp/event.json")"
[[ -n "$(json_field queue <"$tmp/event.json")" && -n "$(json_field on_sale_at <"$tmp/event.json")" ]] ||
	die "event $event has no queue or on_sale_at in its answer: does this service have the waiting room? $(head -c 300 "$tmp/event.json")"
echo "created event $event: $TICKETS tickets, on sale at $on_sale_at (in ${JOIN_LEAD}s), queue $RATE/s, pass TTL $PASS_TTL"

queue_state() {
	curl -sS --max-time 10 "$BASE_URL/events/$event/queue" 2>/dev/null | json_field state || true
}
state="$(queue_state)"
[[ "$state" == pre_queue ]] || die "GET /events/$event/queue: state '${state:-?}', expected pre_queue before the sale"

# --- k6 ---------------------------------------------------------------------

errors=()
failures=()
args=(run --quiet --summary-export "$summary" -e "BASE_URL=$BASE_URL" -e "RUN_ID=$RUN_ID"
	-e "EVENT_ID=$event" -e "ON_SALE_AT=$on_sale_at" -e "BUYERS=$BUYERS" -e "VUS=$VUS" -e "RATE=$RATE"
	-e "QUANTITY=$QUANTITY" -e "QUANTITY_MAX=$QUANTITY_MAX" -e "ABANDON_PCT=$ABANDON_PCT" -e "ABANDON_MODE=$ABANDON_MODE"
	-e "PROBE_PCT=$PROBE_PCT" -e "ORDER_TOLERANCE=$ORDER_TOLERANCE" -e "MAX_WAIT=$MAX_WAIT"
	"$ROOT/scripts/onsale.js")
# The moment the queue's state first reads sold_out, as the service says
# it to everyone (every waiting place reads it from then on), in epoch ms.
# A bare curl and grep, no JSON parser, so the reading errs late by little
# more than one request.
(
	while :; do
		if curl -sS --max-time 2 "$BASE_URL/events/$event/queue" 2>/dev/null | grep -q '"state":"sold_out"'; then
			date +%s%3N >"$tmp/sold_out_at"
			exit 0
		fi
		sleep 0.05
	done
) &
watcher=$!
echo "k6 ${args[*]}"
if "$K6" "${args[@]}"; then rc=0; else rc=$?; fi
[[ -f "$summary" ]] || die "k6 left no summary at $summary"
m() { lib_metric "$summary" "$@"; }
if ((rc == 99)); then
	for v in hold_without_pass pass_reused admitted_twice out_of_order server_errors unexpected; do
		n="$(m "$v")"
		((n == 0)) || errors+=("k6: $v = $n (a threshold: see VIOLATION and unexpected lines above)")
	done
	errors+=("k6 exited 99: a threshold failed")
elif ((rc != 0)); then
	errors+=("k6 exited $rc")
fi

# Abandoned holds come back: at once when released, one hold TTL plus a
# sweep (and a second) after the last one when left to expire.
wait_s=$((sweep_s + 1))
[[ "$ABANDON_MODE" == expire ]] && wait_s=$((hold_ttl_s + sweep_s + 1))
echo
echo "waiting ${wait_s}s for abandoned holds to come back"
sleep "$wait_s"

# --- the database -----------------------------------------------------------

like="onsale-$RUN_ID-%"
IFS='|' read -r total avail <<<"$(sql "SELECT total_tickets, available_tickets FROM events WHERE id = $event")"
IFS='|' read -r made conf conf_qty rel exp pend foreign <<<"$(sql "SELECT count(*),
	count(*) FILTER (WHERE booking_status = 'confirmed'),
	coalesce(sum(quantity) FILTER (WHERE booking_status = 'confirmed'), 0),
	count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'released'),
	count(*) FILTER (WHERE booking_status = 'failed' AND failure_reason = 'expired'),
	count(*) FILTER (WHERE booking_status = 'pending'),
	count(*) FILTER (WHERE user_email NOT LIKE '$like')
	FROM bookings WHERE event_id = $event")"
# One place per email, one pass per place: an email with two confirmed
# bookings is a pass used twice.
twice="$(sql "SELECT count(*) FROM (SELECT user_email FROM bookings
	WHERE event_id = $event AND booking_status = 'confirmed' GROUP BY user_email HAVING count(*) > 1) t")"
# A hold made when the holds before it (in insertion order) had already
# taken every ticket was served by tickets that came back.
IFS='|' read -r resold_holds resold_conf <<<"$(sql "SELECT count(*), count(*) FILTER (WHERE booking_status = 'confirmed')
	FROM (SELECT booking_status, sum(quantity) OVER (ORDER BY id) AS taken FROM bookings WHERE event_id = $event) t
	WHERE taken > $total")"
state="$(queue_state)"
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
# The last ticket sold, by the database's clock (this machine's, for
# `holdfast dev`), in epoch ms.
last_sold="$(sql "SELECT coalesce((extract(epoch FROM max(confirmed_at)) * 1000)::bigint, 0)
	FROM bookings WHERE event_id = $event AND booking_status = 'confirmed'")"
sold_out_at="$(cat "$tmp/sold_out_at" 2>/dev/null || echo 0)"
told_max="$(m told_sold_out_at max)"
on_sale_ms=$((on_sale_epoch * 1000))
to_state="-" to_last="-"
if ((sold_out_at > 0 && last_sold > 0)); then to_state="$((sold_out_at - last_sold))"; fi
if ((told_max > 0 && last_sold > 0)); then to_last="$((on_sale_ms + told_max - last_sold))"; fi

joined="$(m joined)" admitted="$(m admitted)" k6_made="$(m holds_made)" k6_conf="$(m confirmed)"
abandoned="$(m abandoned)" sold_out="$(m told_sold_out)" nothing="$(m found_nothing)"
lapsed="$(m pass_expired)" waiting="$(m still_waiting)" gave_up="$(m gave_up)"
late="$(m late_joins)" unavailable="$(m unavailable)" fivexx="$(m server_errors)"
tiq_max="$(m time_in_queue max)" probe_holds="$(m probe_holds)"

expect() {
	local what="$1" a="$2" op="$3" b="$4"
	(("$a" $op "$b")) || failures+=("$what: $a, expected $op $b")
}
expect "buyers joined" "$joined" == "$BUYERS"
expect "buyers still waiting when MAX_WAIT ran out" "$waiting" == 0
expect "buyers who gave up after repeated 429/503" "$gave_up" == 0
expect "holds in the database vs k6's holds_made + probe_holds" "$made" == "$((k6_made + probe_holds))"
expect "confirmed bookings vs k6's confirmed" "$conf" == "$k6_conf"
expect "holds still pending ${wait_s}s after the run" "$pend" == 0
expect "bookings by emails that are not this run's buyers" "$foreign" == 0
expect "emails with two confirmed bookings (a pass used twice)" "$twice" == 0
expect "available + confirmed tickets vs total $total" "$((avail + conf_qty))" == "$total"
expect "places admitted" "$admitted" '>' 0
# The admission rate, seen from the buyers: by the last admission seen, T
# seconds after the sale, the queue may have admitted RATE x T plus half a
# second's burst. A poll sees an admission late, so T only errs long and the
# check only errs lenient. Late joins start their clock at the join; skip it.
rate_seen="-"
if ((late == 0 && admitted > 2 * RATE && tiq_max > 0)); then
	rate_seen="$(awk -v a="$admitted" -v t="$tiq_max" 'BEGIN { printf "%.1f", a / (t / 1000) }')"
	awk -v a="$admitted" -v t="$tiq_max" -v r="$RATE" 'BEGIN { exit !(a <= r * (t / 1000) * 1.05 + r / 2 + 1) }' ||
		failures+=("admission rate seen $rate_seen/s over ${tiq_max}ms, above admit_per_second $RATE")
fi
if ((STOCK_AWARE == 1)); then
	expect "admitted buyers who found nothing to buy" "$nothing" == 0
	if ((BUYERS * QUANTITY > TICKETS)); then
		expect "tickets left (every ticket sold)" "$avail" == 0
		expect "places told sold_out vs places never admitted" "$sold_out" == "$((joined - admitted))"
		[[ "$state" == sold_out ]] || failures+=("queue state '$state', expected sold_out")
		# The watcher polls every 50 ms or so: its reading errs late by that.
		if [[ "$to_state" == - ]]; then
			failures+=("the queue's state never read sold_out while k6 ran")
		else
			expect "ms from the last ticket sold to the queue's state sold_out" "$to_state" '<' 1100
		fi
		if ((abandoned > 0)); then
			expect "holds served by returned tickets (abandoned: $abandoned)" "$resold_conf" '>' 0
		fi
	fi
fi

check_verdict=''
echo
echo "holdfast check --event $event --sweep-every $SWEEP_EVERY:"
if out="$("$HOLDFAST" check --event "$event" --sweep-every "$SWEEP_EVERY" 2>&1)"; then crc=0; else crc=$?; fi
echo "$out"
if ((crc == 0)); then
	check_verdict=consistent
elif ((crc == 1)) && grep -q 'break the invariants' <<<"$out"; then
	check_verdict=violation
	failures+=("holdfast check reports a violation on event $event")
else
	check_verdict=error
	errors+=("holdfast check could not run (exit $crc)")
fi

echo
echo "== summary =="
echo "on-sale (event $event, $BUYERS buyers of $QUANTITY..$QUANTITY_MAX, $TICKETS tickets, $RATE/s, abandon $ABANDON_PCT% by $ABANDON_MODE)"
printf '  %-32s %s\n' \
	joined "$joined ($late after the sale opened)" \
	admitted "$admitted (admission rate seen: $rate_seen/s; longest wait $((tiq_max / 1000))s)" \
	holds "$made (k6: $k6_made)" \
	confirmed "$conf ($conf_qty tickets; k6: $k6_conf)" \
	abandoned "$abandoned (database: $rel released, $exp expired)" \
	sold "$conf_qty tickets of $total" \
	"re-admitted from returned stock" "$resold_holds holds served by returned tickets ($resold_conf confirmed)" \
	"told sold out" "$sold_out" \
	"last sold -> state sold_out" "${to_state} ms" \
	"last sold -> last place told" "${to_last} ms (each at its next poll, as poll_after_seconds says)" \
	"admitted, found nothing" "$nothing" \
	"pass lapsed before a hold" "$lapsed" \
	"still waiting" "$waiting" \
	available "$avail of $total" \
	"queue state" "${state:-?}" \
	5xx "$fivexx (and $unavailable 503s, retried)" \
	check "$check_verdict"
echo

# On a failure, what the next person needs to tell a stalled admitter
# (places admitted that booked but still reserve) from the rest: the
# queue's own counts, and each admitted place's bookings by status.
if ((${#errors[@]} + ${#failures[@]} > 0)); then
	echo "queue state: $(curl -sS --max-time 10 "$BASE_URL/events/$event/queue" 2>/dev/null || echo '?')"
	echo "bookings of places, by status (status|places|tickets|first created|last created):"
	sql "SELECT booking_status, count(DISTINCT queue_place), sum(quantity), min(created_at), max(created_at)
		FROM bookings WHERE event_id = $event AND queue_place IS NOT NULL GROUP BY 1 ORDER BY 1" || true
fi

status=0
for e in "${errors[@]}"; do
	echo "ERROR: $e"
	status=1
done
for f in "${failures[@]}"; do
	echo "FAIL: $f"
	status=1
done
((status == 0)) && echo "onsale: every expectation held"
exit "$status"
