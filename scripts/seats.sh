#!/usr/bin/env bash
# seats.sh: a seated on-sale, end to end. It creates a venue through the
# admin API (SECTIONS x ROWS x SEATS seats of one category), runs
# scripts/seats.js (BUYERS buyers asking best available for 2 to 4 seats,
# then 2, then 1 when refused, each hold confirmed), and checks that the
# venue sold out to the last seat: every seat sold once (the database and
# GET /events/{id}/seats agree), none twice, k6's count of seats held equal
# to the venue, and `holdfast check` clean.
#
# It needs the service to run with an admin token, as onsale.sh does
# (ADMIN_TOKEN, or HOLDFAST_ADMIN_TOKEN, or .holdfast/env).
#
# Environment (defaults in brackets):
#   DATABASE_URL, BASE_URL   as in experiment.sh (from .holdfast/env)
#   SECTIONS [2], ROWS [10], SEATS [30]  the venue: 600 seats
#   BUYERS [SECTIONS*ROWS*SEATS/2]  buyers: together they want more than
#                            the venue has
#   VUS [20]                 buyers at a time
#   K6, HOLDFAST, K6_SUMMARY_DIR  as in holds.sh (summary: seats.json)
#
# Exit status: 0 when every expectation held, 1 otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() {
	echo "seats: $*" >&2
	exit 1
}

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
lib_config

SECTIONS="${SECTIONS:-2}"
ROWS="${ROWS:-10}"
SEATS="${SEATS:-30}"
for v in SECTIONS ROWS SEATS; do
	[[ "${!v}" =~ ^[1-9][0-9]{0,3}$ ]] || die "$v must be a positive integer, not '${!v}'"
done
total=$((SECTIONS * ROWS * SEATS))
BUYERS="${BUYERS:-$((total / 2))}"
VUS="${VUS:-20}"
for v in BUYERS VUS; do
	[[ "${!v}" =~ ^[1-9][0-9]{0,6}$ ]] || die "$v must be a positive integer, not '${!v}'"
done
ADMIN_TOKEN="${ADMIN_TOKEN:-${HOLDFAST_ADMIN_TOKEN:-$(lib_env_value HOLDFAST_ADMIN_TOKEN)}}"
[[ -n "$ADMIN_TOKEN" ]] || die "no admin token: start \`holdfast dev --admin-token <16+ characters>\` and set ADMIN_TOKEN to it"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
lib_find_k6
lib_find_holdfast "$tmp"
command -v curl >/dev/null || die "curl is not on PATH"
summary_dir="${K6_SUMMARY_DIR:-$tmp}"
mkdir -p "$summary_dir"
summary="$summary_dir/seats.json"

admin() { # method path body-file: prints the status, the body to $tmp/out.json
	curl -sS -o "$tmp/out.json" -w '%{http_code}' --max-time 30 -X "$1" -H 'Content-Type: application/json' \
		-H "Authorization: Bearer $ADMIN_TOKEN" --data-binary "@$3" "$BASE_URL$2" 2>/dev/null || echo 000
}

printf '{"name":"Seated on-sale %s","event_date":"2030-07-01T18:00:00Z","total_tickets":%d,"ticket_price":"30.00"}' \
	"$(date +%s)" "$total" >"$tmp/event.json"
status="$(admin POST /admin/events "$tmp/event.json")"
[[ "$status" == 201 ]] || die "POST /admin/events answered $status: $(head -c 300 "$tmp/out.json")"
event="$(grep -o '"id":[0-9]*' "$tmp/out.json" | head -n1 | cut -d: -f2)"
category="$(grep -o '"categories":\[{"id":[0-9]*' "$tmp/out.json" | grep -o '[0-9]*$')"
[[ -n "$event" && -n "$category" ]] || die "no event or category id in $(head -c 300 "$tmp/out.json")"

# The map: sections A, B, ... of rows 1..ROWS of seats 1..SEATS.
{
	printf '{"sections":['
	for ((s = 0; s < SECTIONS; s++)); do
		((s > 0)) && printf ','
		printf '{"name":"%s","rows":[' "$(printf "\\x$(printf %x $((65 + s)))")"
		for ((r = 1; r <= ROWS; r++)); do
			((r > 1)) && printf ','
			printf '{"name":"%d","seats":[' "$r"
			for ((n = 1; n <= SEATS; n++)); do
				((n > 1)) && printf ','
				printf '{"number":%d,"category_id":%d}' "$n" "$category"
			done
			printf ']}'
		done
		printf ']}'
	done
	printf ']}'
} >"$tmp/map.json"
status="$(admin PUT "/admin/events/$event/seats" "$tmp/map.json")"
[[ "$status" == 200 ]] || die "PUT /admin/events/$event/seats answered $status: $(head -c 300 "$tmp/out.json")"
echo "seats: event $event, category $category, $total seats; $BUYERS buyers, $VUS at a time"

rc=0
"$K6" run --quiet --summary-export "$summary" -e BASE_URL="$BASE_URL" -e EVENT_ID="$event" -e CATEGORY_ID="$category" \
	-e BUYERS="$BUYERS" -e VUS="$VUS" "$ROOT/scripts/seats.js" || rc=$?

errors=()
((rc == 0)) || errors+=("k6 exited $rc")
held="$(lib_metric "$summary" seats_held)"
holds="$(lib_metric "$summary" holds_made)"
together="$(lib_metric "$summary" side_by_side)"
((held == total)) || errors+=("k6 held $held seats of $total")
sold="$(sql "SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
	WHERE bs.event_id = $event AND bs.live AND b.booking_status = 'confirmed'")"
((sold == total)) || errors+=("the database has $sold of $total seats sold")
twice="$(sql "SELECT count(*) FROM (SELECT seat_id FROM booking_seats WHERE event_id = $event AND live
	GROUP BY seat_id HAVING count(*) > 1) d")"
((twice == 0)) || errors+=("$twice seats sold twice")
curl -sS --max-time 10 "$BASE_URL/events/$event/seats" >"$tmp/seats.json"
shown="$(grep -o '"status":"sold"' "$tmp/seats.json" | wc -l)"
((shown == total)) || errors+=("GET /events/$event/seats shows $shown of $total seats sold")
if ! "$HOLDFAST" check --database-url "$DATABASE_URL" --event "$event" >"$tmp/check.txt" 2>&1; then
	errors+=("holdfast check: $(tail -n 3 "$tmp/check.txt")")
fi

echo "seats: $holds holds, $held seats of $total sold ($together holds side by side in one row), none twice"
if ((${#errors[@]} > 0)); then
	printf 'seats: FAILED: %s\n' "${errors[@]}" >&2
	exit 1
fi
echo "seats: sold out to the last seat, every expectation held"
