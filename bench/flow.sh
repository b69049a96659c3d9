#!/usr/bin/env bash
# The cost of a claim on a queue with an in-flight cap and a rate, by backlog.
#
#   bench/flow.sh [SMALL] [LARGE] [CLAIMS]   (defaults 1000, 1000000, 50)
#
# Fills two SQLite databases with SMALL and LARGE ready messages in a queue
# created with `--max-in-flight 1000000 --rate 1000000/1s` (both set, both
# checked by every claim, neither ever the limit), then times CLAIMS runs
# of `spool consume q --ack` on each and prints the median per claim and the
# ratio LARGE/SMALL. A claim stays O(1) in the backlog when the ratio is
# near 1. With valgrind installed, also the instructions of one claim.
# Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-1000}
large=${2:-1000000}
claims=${3:-50}

cargo build --release --quiet
spool=$PWD/target/release/spool
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

fill() { # db n
    SPOOL_DB=$1 "$spool" queue create q --max-in-flight 1000000 --rate 1000000/1s
    seq 1 "$2" | SPOOL_DB=$1 "$spool" publish q >/dev/null
    # The fill leaves a large write-ahead log; fold it into the file first,
    # so the claims measured do not pay for that checkpoint.
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$1" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
    fi
    for _ in 1 2 3; do SPOOL_DB=$1 "$spool" consume q --ack >/dev/null; done
}
medians_us() { # small.db large.db: claims alternate between the two, so a
    # noisy machine slows both alike
    python3 - "$spool" "$1" "$2" "$claims" <<'PY'
import os, subprocess, sys, time
spool, dbs, n = sys.argv[1], sys.argv[2:4], int(sys.argv[4])
times = {db: [] for db in dbs}
for _ in range(n):
    for db in dbs:
        t = time.perf_counter()
        subprocess.run([spool, "consume", "q", "--ack"], env=dict(os.environ, SPOOL_DB=db),
                       stdout=subprocess.DEVNULL, check=True)
        times[db].append(time.perf_counter() - t)
print(" ".join(str(int(sorted(times[db])[n // 2] * 1e6)) for db in dbs))
PY
}
instructions() { # db
    command -v valgrind >/dev/null || { echo "-"; return; }
    local out=$dir/cg.out
    SPOOL_DB=$1 valgrind --tool=callgrind --callgrind-out-file="$out" "$spool" consume q --ack >/dev/null 2>&1
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

fill "$dir/small.db" "$small"
fill "$dir/large.db" "$large"
read -r s l < <(medians_us "$dir/small.db" "$dir/large.db")
si=$(instructions "$dir/small.db"); li=$(instructions "$dir/large.db")
echo "claim with a cap and a rate, median of $claims (SQLite, --sync full):"
echo "  $small ready:   ${s} us  (${si} instructions)"
echo "  $large ready: ${l} us  (${li} instructions)"
awk -v a="$s" -v b="$l" 'BEGIN { printf "  ratio: %.3f\n", b / a }'
