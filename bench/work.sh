#!/usr/bin/env bash
# Throughput of `spool work` against the cost of starting the handler.
#
#   bench/work.sh [N]        (default N = 10000)
#
# Publishes N messages, runs `spool work --until-empty --concurrency 2 -- true`
# over them, then spawns `true` N times from a shell loop, and prints both rates
# and their ratio (the target is at least 70%). Builds the release binary first.
# Uses a temporary database with the default `--sync full`.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}

cargo build --release --quiet
spool=$PWD/target/release/spool
true_bin=$(type -P true)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export SPOOL_DB=$dir/spool.db

now() { date +%s%N; }
rate() { awk -v n="$1" -v ns="$2" 'BEGIN { printf "%.0f", n / (ns / 1e9) }'; }

seq 1 "$n" | "$spool" publish bench >/dev/null

start=$(now)
"$spool" work bench --until-empty --concurrency 2 -q -- true
work_ns=$(( $(now) - start ))
left=$("$spool" consume bench >/dev/null 2>&1 && echo some || echo none)
[ "$left" = none ] || { echo "messages left in the queue" >&2; exit 1; }

start=$(now)
for ((i = 0; i < n; i++)); do "$true_bin"; done
loop_ns=$(( $(now) - start ))

work_rate=$(rate "$n" "$work_ns")
loop_rate=$(rate "$n" "$loop_ns")
echo "spool work --concurrency 2 -- true: $n messages in $((work_ns / 1000000)) ms = $work_rate msg/s"
echo "shell loop spawning $true_bin:       $n runs in $((loop_ns / 1000000)) ms = $loop_rate runs/s"
awk -v w="$work_rate" -v l="$loop_rate" 'BEGIN { printf "ratio: %.0f%% (target: at least 70%%)\n", 100 * w / l }'
