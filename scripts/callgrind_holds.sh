#!/usr/bin/env bash
# callgrind_holds.sh counts the database's instructions per hold of a
# batched one-item hold, the way BENCHMARKS.md's tables count them: a
# single-user PostgreSQL backend under valgrind's callgrind runs WARM calls
# of hold_batch_events to warm up, then CALLS calls of N holds each, all
# new buyers on one event; the same run without the CALLS is subtracted and
# the rest divided by CALLS x N. Instructions, unlike times, do not move
# with a noisy machine, so two trees (or a change to one database) can be
# told apart by a few percent.
#
# usage: scripts/callgrind_holds.sh [holdfast binary] [extra.sql]
#   WARM=20 CALLS=50 N=30 (the defaults)
#   extra.sql, if given, is applied after the migrations (a variant to try).
# Needs valgrind and PostgreSQL's server binaries; run as root (the backend
# runs as the postgres user, in a directory under /tmp it owns).
set -euo pipefail

bin=${1:-./bin/holdfast}
extra=${2:-}
warm=${WARM:-20} calls=${CALLS:-50} n=${N:-30}
pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
command -v valgrind >/dev/null || { echo "callgrind_holds: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }

dir=$(mktemp -d /tmp/holdfast-callgrind.XXXXXX)
chown postgres "$dir"
trap 'rm -rf "$dir"' EXIT
as_pg() { su postgres -c "$*"; }

as_pg "$pgbin/initdb -D $dir/data -A trust >/dev/null"
as_pg "$pgbin/pg_ctl -D $dir/data -o '-k $dir -c listen_addresses= -c fsync=off' -l $dir/log -w start >/dev/null"
as_pg "$pgbin/createdb -h $dir cg"
url="host=$dir dbname=cg user=postgres sslmode=disable"
"$bin" migrate --database-url "$url" >/dev/null
psql -h "$dir" -U postgres cg -qc "INSERT INTO events (name, event_date, total_tickets, available_tickets, ticket_price)
    VALUES ('hot', now() + interval '30 days', 10000000, 10000000, 50)"
if [ -n "$extra" ]; then
    psql -h "$dir" -U postgres cg -v ON_ERROR_STOP=1 -qf "$extra"
fi
as_pg "$pgbin/pg_ctl -D $dir/data -w stop >/dev/null"
cp -a "$dir/data" "$dir/template"

# list ITEM prints n copies of ITEM, comma-separated, {i} in each its index.
list() {
    local i sep="" out=""
    for ((i = 0; i < n; i++)); do out+="$sep${1//\{i\}/$i}"; sep=","; done
    printf '%s' "$out"
}

# calls FIRST COUNT prints COUNT calls of n holds, buyers b<call>-<i>.
calls() {
    local c emails
    for ((c = $1; c < $1 + $2; c++)); do
        emails=$(list "'b$c-{i}@example.com'")
        printf "SELECT count(*) FROM hold_batch_events(ARRAY[%s]::bigint[], ARRAY[%s]::text[], ARRAY[%s]::text[], ARRAY[%s]::inet[], ARRAY[%s]::int[], ARRAY[%s]::int[], ARRAY[%s]::int[], 600000000, 10, 0, ARRAY[%s]::text[], true);\n" \
            "$(list 1)" "$emails" "$emails" "$(list NULL)" "$(seq -s, 1 "$n")" "$(list NULL)" "$(list 1)" "$(list "''")"
    done
}

# run COUNT prints the instructions of a backend running warm-up and COUNT calls.
run() {
    rm -rf "$dir/data" && cp -a "$dir/template" "$dir/data" && chown -R postgres "$dir"
    { calls 0 "$warm"; calls "$warm" "$1"; } > "$dir/in.sql"
    as_pg "valgrind --tool=callgrind --callgrind-out-file=$dir/cg.out.$1 $pgbin/postgres --single -D $dir/data \
        -c fsync=off -c synchronous_commit=off cg < $dir/in.sql > $dir/out.$1 2> $dir/vg.$1"
    if grep -qi 'error' "$dir/out.$1"; then
        grep -i -m3 'error' "$dir/out.$1" >&2
        exit 1
    fi
    grep -o 'Collected : [0-9]*' "$dir/vg.$1" | awk '{print $3}'
}

base=$(run 0)
all=$(run "$calls")
echo "instructions a hold: $(( (all - base) / (calls * n) )) ($calls calls of $n after $warm to warm up)"
