#!/usr/bin/env bash
# What 1,000 schedules cost a claim that finds nothing due.
#
#   bench/schedules.sh [CLAIMS] [PG_URL]   (defaults 200, none)
#
# Makes two databases with 2,000 ready messages in queue `q`: `plain`, and
# `sched`, which also holds 1,000 schedules that are not due (their first
# occurrence is tomorrow): 500 publish to `q`, 250 to a topic `q`
# subscribes to, 250 to other queues. So every claim on `q` in `sched`
# reads a queue row that names a schedule, and none fires.
#
# SQLite: the instructions of one `consume q -n 1`, `consume q -n 1 --ack`
# and `consume q -n 100 --ack` on a fresh copy of each (callgrind, when
# valgrind is installed: exact, whatever else the machine does), then
# CLAIMS runs of `consume q --ack` on each, interleaved, and the medians.
# PostgreSQL (with PG_URL): the same timed runs, on two schemas of it.
# Prints sched/plain for each. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
claims=${1:-200}
pg=${2:-}

cargo build --release --quiet
spool=$PWD/target/release/spool
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

tomorrow=$(date -u -d 'tomorrow' +%Y-%m-%dT00:00:00Z)

fill() { # db with-schedules
    local db=$1
    seq 1 2000 | sed 's/.*/{"n":&}/' | "$spool" --db "$db" publish q >/dev/null
    "$spool" --db "$db" subscribe ticks q
    if [ "$2" = yes ]; then
        for i in $(seq 1 1000); do
            local to=q
            if [ "$i" -gt 500 ]; then to=ticks; fi
            if [ "$i" -gt 750 ]; then to="other-$i"; fi
            echo "$i $to"
        done | while read -r i to; do
            "$spool" --db "$db" schedule add "s$i" --every 24h --start "$tomorrow" --to "$to" '{"job":1}'
        done
        local n
        n=$("$spool" --db "$db" schedule list --json | wc -l)
        [ "$n" -eq 1000 ] || { echo "expected 1000 schedules, found $n" >&2; exit 1; }
    fi
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

timed() { # db: prints the ms of one claim
    local t0 t1
    t0=$(date +%s%N)
    "$spool" --db "$1" consume q --ack >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000))
}

compare() { # label plain-db sched-db
    : >"$dir/plain.us"
    : >"$dir/sched.us"
    for _ in $(seq 1 "$claims"); do
        timed "$2" >>"$dir/plain.us"
        timed "$3" >>"$dir/sched.us"
    done
    local a b
    a=$(median <"$dir/plain.us")
    b=$(median <"$dir/sched.us")
    awk -v l="$1" -v a="$a" -v b="$b" \
        'BEGIN { printf "%s consume --ack, median of %d: plain %d us, 1,000 schedules %d us, ratio %.3f\n", l, '"$claims"', a, b, b / a }'
}

fill "$dir/plain.db" no
fill "$dir/sched.db" yes
if command -v sqlite3 >/dev/null; then
    for db in plain sched; do sqlite3 "$dir/$db.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null; done
fi

if command -v valgrind >/dev/null; then
    ir() { # db args...: instructions of one run on a fresh copy
        local db=$1
        shift
        rm -f "$dir/w.db"*
        cp "$dir/$db.db" "$dir/w.db"
        valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
            "$spool" --db "$dir/w.db" "$@" >/dev/null 2>"$dir/cg.err"
        awk '/Collected/ { print $4 }' "$dir/cg.err"
    }
    echo "sqlite instructions: command plain sched sched/plain"
    for args in "consume q -n 1" "consume q -n 1 --ack" "consume q -n 100 --ack"; do
        # shellcheck disable=SC2086
        a=$(ir plain $args)
        # shellcheck disable=SC2086
        b=$(ir sched $args)
        awk -v c="$args" -v a="$a" -v b="$b" 'BEGIN { printf "  %s: %d %d %.4f\n", c, a, b, b / a }'
    done
fi

compare sqlite "$dir/plain.db" "$dir/sched.db"

if [ -n "$pg" ]; then
    sep='?'
    case $pg in *\?*) sep='&' ;; esac
    plain="${pg}${sep}schema=bench_sched_plain"
    sched="${pg}${sep}schema=bench_sched_with"
    psql "$pg" -qc 'DROP SCHEMA IF EXISTS bench_sched_plain CASCADE; DROP SCHEMA IF EXISTS bench_sched_with CASCADE' 2>/dev/null || true
    fill "$plain" no
    fill "$sched" yes
    compare postgres "$plain" "$sched"
    psql "$pg" -qc 'DROP SCHEMA IF EXISTS bench_sched_plain CASCADE; DROP SCHEMA IF EXISTS bench_sched_with CASCADE' 2>/dev/null || true
fi
