#!/usr/bin/env bash
# Measures that the WAL and the database file stay bounded under churn:
# publishers and consumers (consume | ack) run on one queue with retention 0
# for DURATION seconds (default 300) while the file sizes are sampled every
# second. Fails when the WAL reaches 16 MiB or the file keeps growing.
#
#   scripts/wal-churn.sh            # 5 minutes, release build
#   DURATION=60 scripts/wal-churn.sh
#
# Environment: DURATION (s), PUBLISHERS (2), CONSUMERS (4), BATCH (100).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-300}
PUBLISHERS=${PUBLISHERS:-2}
CONSUMERS=${CONSUMERS:-4}
BATCH=${BATCH:-100}
WAL_LIMIT=$((16 << 20))

cargo build --release --locked --quiet
SPOOL=$PWD/target/release/spool
WORK=$(mktemp -d)
export SPOOL_DB=$WORK/churn.db
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$SPOOL" queue create churn --retention 0 --visibility 30s

body=$(printf '{"order":%s,"pad":"%0200d"}' 1 0)
batch=$(for _ in $(seq "$BATCH"); do echo "$body"; done)
stop_at=$((SECONDS + DURATION))

for _ in $(seq "$PUBLISHERS"); do
    (while [ $SECONDS -lt $stop_at ]; do
        printf '%s\n' "$batch" | "$SPOOL" publish churn -q
        sleep 0.05
    done) &
    pids+=($!)
done
for _ in $(seq "$CONSUMERS"); do
    (while [ $SECONDS -lt $((stop_at + 5)) ]; do
        if out=$("$SPOOL" consume churn -n "$BATCH"); then
            printf '%s\n' "$out" | "$SPOOL" ack
        else
            sleep 0.05
        fi
    done) &
    pids+=($!)
done

size() { stat -c %s "$1" 2>/dev/null || echo 0; }
max_wal=0 max_db=0 db_at_1m=0
printf '%6s %12s %12s\n' "t(s)" "db bytes" "wal bytes"
start=$SECONDS
while [ $SECONDS -lt $((stop_at + 5)) ]; do
    sleep 1
    t=$((SECONDS - start))
    db=$(size "$SPOOL_DB") wal=$(size "$SPOOL_DB-wal")
    [ "$wal" -gt "$max_wal" ] && max_wal=$wal
    [ "$db" -gt "$max_db" ] && max_db=$db
    [ $t -ge 60 ] && [ "$db_at_1m" -eq 0 ] && db_at_1m=$db
    [ $((t % 30)) -eq 0 ] && printf '%6d %12d %12d\n' "$t" "$db" "$wal"
done
for pid in "${pids[@]}"; do wait "$pid" || true; done
pids=()

final_db=$(size "$SPOOL_DB") final_wal=$(size "$SPOOL_DB-wal")
counts=$(python3 - "$SPOOL_DB" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(*c.execute("SELECT published_total, n_ready + n_delayed + n_leased, n_acked FROM queues WHERE name = 'churn'").fetchone())
EOF
)
read -r published pending acked <<<"$counts"
echo
echo "churn for ${DURATION}s: $PUBLISHERS publishers, $CONSUMERS consumers, batches of $BATCH, retention 0"
echo "published $published messages ($((published / DURATION))/s); $pending left pending; $acked acked rows kept"
echo "WAL: max $max_wal bytes ($((max_wal >> 20)) MiB), at the end $final_wal"
echo "database file: max $max_db bytes, after 1 minute $db_at_1m, at the end $final_db"
"$SPOOL" doctor --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("doctor: healthy =", d["healthy"], "| free pages", d["database"]["free_pages"], "of", d["database"]["page_count"])'

status=0
if [ "$max_wal" -ge "$WAL_LIMIT" ]; then
    echo "FAIL: the WAL reached $max_wal bytes (limit $WAL_LIMIT)"
    status=1
fi
# Bounded: with the backlog drained, the file must not keep growing past what
# the first minute needed (plus room for a backlog of a few batches).
if [ "$db_at_1m" -gt 0 ] && [ "$max_db" -gt $((db_at_1m * 2 + (8 << 20))) ]; then
    echo "FAIL: the database grew from $db_at_1m to $max_db bytes"
    status=1
fi
[ $status -eq 0 ] && echo "OK: the WAL stayed under 16 MiB and the file stayed bounded"
exit $status
