#!/usr/bin/env bash
# Benchmark for looking inside and cleaning up (issue 3), on a release build:
#   1. `spool stats` and `spool peek -n 10` at a backlog of N ready messages,
#      against the same commands on an empty queue (median of R runs, wall time
#      of the whole process, as a user sees it);
#   2. the database file's size after publishing N messages to a queue with
#      retention 0 and acking them all (`consume -n 1000 | ack`, N/1000 times);
#   3. the worst case for readers: N delayed messages come due at once and no
#      consumer has claimed since, so every due row is looked at.
#
# Usage: bench/inspect.sh [N] [R]     (defaults: N=1000000, R=21)
# Takes a few minutes at N=1000000; writes only under target/bench-inspect.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-1000000}
R=${2:-21}

cargo build --release --locked --quiet
BIN=$PWD/target/release/spool
WORK=$PWD/target/bench-inspect
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# Median wall time in ms of R runs of a command (stdout discarded).
median_ms() {
    local times=() t0 t1
    for _ in $(seq 1 "$R"); do
        t0=$EPOCHREALTIME
        "$@" >/dev/null
        t1=$EPOCHREALTIME
        times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

messages() { awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"n\":%d,\"payload\":\"order-%d\"}\n", i, i }'; }

echo "== spool inspect benchmark: N=$N, R=$R, $(nproc) cores, $(date -u +%FT%TZ)"

# --- 1. stats and peek at a backlog of N
export SPOOL_DB=$WORK/backlog.db
"$BIN" queue create empty
t0=$EPOCHREALTIME
messages "$N" | "$BIN" -q publish big
t1=$EPOCHREALTIME
echo "publish $N messages in one batch: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
"$BIN" consume big -n 100 --visibility 1h >/dev/null   # some leased ones too
echo "database: $(size_of "$SPOOL_DB") bytes"

printf '%-40s %10s\n' "command" "median ms"
printf '%-40s %10s\n' "spool stats empty" "$(median_ms "$BIN" stats empty)"
printf '%-40s %10s\n' "spool stats big   ($N)" "$(median_ms "$BIN" stats big)"
printf '%-40s %10s\n' "spool stats       (all queues)" "$(median_ms "$BIN" stats)"
printf '%-40s %10s\n' "spool stats --format prometheus" "$(median_ms "$BIN" stats --format prometheus)"
printf '%-40s %10s\n' "spool peek empty -n 10" "$(median_ms "$BIN" peek empty -n 10)"
printf '%-40s %10s\n' "spool peek big -n 10" "$(median_ms "$BIN" peek big -n 10)"
printf '%-40s %10s\n' "spool queue list" "$(median_ms "$BIN" queue list)"
"$BIN" stats big

# --- 2. file size after N publish + ack cycles with retention 0
export SPOOL_DB=$WORK/retention.db
"$BIN" queue create r --retention 0
messages "$N" | "$BIN" -q publish r
echo "retention 0: after publishing $N: $(size_of "$SPOOL_DB") bytes (wal $(size_of "$SPOOL_DB-wal"))"
t0=$EPOCHREALTIME
rounds=0
# With pipefail, the loop ends when consume finds the queue empty (exit 1).
while "$BIN" consume r -n 1000 | "$BIN" ack; do
    rounds=$((rounds + 1))
done
t1=$EPOCHREALTIME
echo "acked all in $rounds rounds of 1000: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
echo "retention 0: after acking all: $(size_of "$SPOOL_DB") bytes (wal $(size_of "$SPOOL_DB-wal"))"
"$BIN" stats r

# --- 3. worst case for readers: N delayed messages all come due and no claim
# has stored that yet, so stats and peek visit every due row.
export SPOOL_DB=$WORK/due.db
messages "$N" | "$BIN" -q publish d --delay 2s
sleep 2.5
printf '%-40s %10s\n' "spool stats d     ($N due, unclaimed)" "$(R=5 median_ms "$BIN" stats d)"
printf '%-40s %10s\n' "spool peek d -n 10 ($N due, unclaimed)" "$(R=5 median_ms "$BIN" peek d -n 10)"
t0=$EPOCHREALTIME
"$BIN" consume d >/dev/null
t1=$EPOCHREALTIME
echo "the first consume stores them: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms"
printf '%-40s %10s\n' "spool stats d     (after that claim)" "$(R=5 median_ms "$BIN" stats d)"
