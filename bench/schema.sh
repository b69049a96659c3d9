#!/usr/bin/env bash
# What a JSON Schema costs a batch publish.
#
# Publishes N NDJSON order events (default 1,000,000, about 100 bytes each) in
# one `spool publish` to a queue without a schema and to a queue whose schema
# has 12 rules (types, required fields, minimum and maximum, a pattern, enums,
# no other properties), each on a fresh database, alternating, best of R runs
# (default 3). Prints both rates and their ratio; the target is a ratio of at
# least 0.6.
#
# Usage: cargo build --release && bench/schema.sh [N] [R]
# Uses target/release/spool, or the binary named by $SPOOL.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
runs=${2:-3}
spool=${SPOOL:-target/release/spool}
dir=$(mktemp -d "${TMPDIR:-/tmp}/spool-schema.XXXXXX")
trap 'rm -rf "$dir"' EXIT

awk -v n="$n" 'BEGIN {
  split("EUR USD GBP", cur, " "); split("placed paid shipped", st, " ")
  for (i = 1; i <= n; i++)
    printf "{\"id\":%d,\"customer\":\"c-%05d\",\"amount\":%d.%02d,\"currency\":\"%s\",\"items\":%d,\"status\":\"%s\"}\n",
      i, i % 100000, i % 500, i % 100, cur[i % 3 + 1], i % 9 + 1, st[i % 3 + 1]
}' >"$dir/input.ndjson"

cat >"$dir/order.schema.json" <<'EOF'
{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "customer", "amount", "currency"],
  "additionalProperties": false,
  "properties": {
    "id": {"type": "integer", "minimum": 1},
    "customer": {"type": "string", "pattern": "^c-[0-9]+$"},
    "amount": {"type": "number", "minimum": 0},
    "currency": {"enum": ["EUR", "USD", "GBP"]},
    "items": {"type": "integer", "minimum": 1, "maximum": 100},
    "status": {"enum": ["placed", "paid", "shipped"]}
  }
}
EOF

# Seconds one publish of the whole input takes, on a fresh database.
measure() {
  local db="$dir/bench.db" start end
  rm -f "$db" "$db-wal" "$db-shm"
  export SPOOL_DB=$db
  if [ "$1" = with ]; then
    "$spool" queue create q --schema "$dir/order.schema.json"
  else
    "$spool" queue create q
  fi
  start=$(date +%s.%N)
  "$spool" publish q -q <"$dir/input.ndjson"
  end=$(date +%s.%N)
  if [ "$("$spool" stats q --json | grep -o '"ready":[0-9]*')" != "\"ready\":$n" ]; then
    echo "not every message was published" >&2
    exit 1
  fi
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }'
}

best_without=
best_with=
for _ in $(seq "$runs"); do
  t=$(measure without)
  best_without=$(awk -v a="$t" -v b="${best_without:-$t}" 'BEGIN { print (a < b ? a : b) }')
  t=$(measure with)
  best_with=$(awk -v a="$t" -v b="${best_with:-$t}" 'BEGIN { print (a < b ? a : b) }')
done

awk -v n="$n" -v a="$best_without" -v b="$best_with" -v r="$runs" 'BEGIN {
  printf "%d lines, best of %d runs\n", n, r
  printf "without schema: %6.2f s  %9.0f msg/s\n", a, n / a
  printf "with schema:    %6.2f s  %9.0f msg/s\n", b, n / b
  printf "ratio (with / without): %.2f (target: at least 0.60)\n", a / b
}'
