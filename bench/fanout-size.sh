#!/usr/bin/env bash
# How much the database grows when messages are fanned out by a topic.
#
# Publishes N messages of about 1 KB (default 100,000) three ways, each on a
# fresh database, and prints how much the file grew:
#   topic   to a topic with 3 subscribers (body stored once, 3 delivery rows)
#   queue   to one queue (body once, 1 delivery row)
#   3x      to 3 queues, one publish each (body stored 3 times)
# The topic's growth should be close to the single queue's, not to 3x.
#
# Usage: cargo build --release && bench/fanout-size.sh [N]
# Uses target/release/spool, or the binary named by $SPOOL.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
spool=${SPOOL:-target/release/spool}
dir=$(mktemp -d "${TMPDIR:-/tmp}/spool-fanout.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# {"n":1,"pad":"xxx…"}: 1,000 bytes of padding, about 1 KB per body.
awk -v n="$n" 'BEGIN {
  pad = sprintf("%1000s", ""); gsub(/ /, "x", pad)
  for (i = 1; i <= n; i++) printf "{\"n\":%d,\"pad\":\"%s\"}\n", i, pad
}' >"$dir/input.ndjson"
input=$(stat -c %s "$dir/input.ndjson")

# The database's size on disk: the file plus any WAL left behind.
size() {
  local total=0 f
  for f in "$1" "$1-wal"; do
    if [ -e "$f" ]; then total=$((total + $(stat -c %s "$f"))); fi
  done
  echo "$total"
}

measure() {
  local label=$1 db="$dir/$1.db" before start end after
  shift
  export SPOOL_DB=$db
  "$spool" queue create setup-marker # create the file and schema first
  for q in "$@"; do "$spool" queue create "$q"; done
  if [ "$label" = topic ]; then
    for q in "$@"; do "$spool" subscribe t "$q"; done
    set -- t
  fi
  before=$(size "$db")
  start=$(date +%s.%N)
  for q in "$@"; do "$spool" publish "$q" <"$dir/input.ndjson" >/dev/null; done
  end=$(date +%s.%N)
  after=$(size "$db")
  awk -v l="$label" -v b="$before" -v a="$after" -v s="$start" -v e="$end" -v n="$n" -v i="$input" 'BEGIN {
    printf "%-6s grew %7.1f MB (%5.2f x the input), %6.1f s to publish\n", l, (a - b) / 1e6, (a - b) / i, e - s
  }'
  rm -f "$db" "$db-wal" "$db-shm"
}

echo "$n messages, $(awk -v i="$input" 'BEGIN { printf "%.1f", i / 1e6 }') MB of input"
measure topic a b c
measure queue a
measure 3x a b c
