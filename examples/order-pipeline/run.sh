#!/usr/bin/env bash
# The order pipeline: a web shop publishes OrderPlaced events to the topic
# `orders`; payment, inventory and shipping each receive every event in a queue
# of their own and handle it with a small script run by `spool work`.
#
# Usage: ./run.sh [ORDERS] [DIR]
#   ORDERS  how many orders the shop places (default 20)
#   DIR     where the database and the handlers' records go (default: a new
#           temporary folder; your own spool database is never touched)
#
# Uses `spool` from PATH, or the binary named by $SPOOL. Builds nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
orders=${1:-20}
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/order-pipeline.XXXXXX")}
export SPOOL=${SPOOL:-spool}
if ! command -v "$SPOOL" >/dev/null; then
  echo "run.sh: cannot find \`$SPOOL\`. Put spool on PATH (cargo install --path .) or set SPOOL=/path/to/spool" >&2
  exit 2
fi
mkdir -p "$dir"
export SPOOL_DB="$dir/spool.db" PIPELINE_DIR="$dir"
services=(payment inventory shipping)

# 1. Wiring. Each service owns a queue with its own settings; payment retries
#    quickly (backoff 200ms, 400ms, …). One topic fans every event out to all three.
"$SPOOL" queue create payment --retry-delay 200ms
"$SPOOL" queue create inventory
"$SPOOL" queue create shipping
for service in "${services[@]}"; do
  "$SPOOL" subscribe orders "$service"
done

# 2. The web shop places the orders.
"$here/shop.sh" "$orders"

# 3. Each service drains its queue, all three at once. `--until-empty` stops
#    when nothing is deliverable now, like a cron job; a payment that failed
#    waits out its backoff, so run again until every order is handled.
handled() { find "$dir/$1" -type f 2>/dev/null | wc -l; }
drain() {
  local service=$1 deadline=$((SECONDS + 120)) rc
  while [ "$(handled "$service")" -lt "$orders" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "run.sh: $service handled only $(handled "$service") of $orders orders in 120s" >&2
      return 1
    fi
    rc=0
    "$SPOOL" work "$service" --until-empty --concurrency 2 -- "$here/$service.sh" || rc=$?
    case $rc in
      0 | 4) ;; # 4: some handler failed; its message is retried after a backoff
      *) echo "run.sh: spool work $service exited with $rc" >&2; return "$rc" ;;
    esac
    sleep 0.2
  done
}
pids=()
for service in "${services[@]}"; do
  drain "$service" 2>>"$dir/$service.err" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done

# 4. What happened: every order paid, reserved and shipped exactly once.
shopt -s nullglob
retried=$(grep -l "attempt [2-9]" "$dir"/payment/* 2>/dev/null | wc -l)
echo "$orders orders placed: $(handled payment) paid ($retried after a retry), $(handled inventory) reserved, $(handled shipping) shipped"
for service in "${services[@]}"; do
  for record in "$dir/$service"/*; do
    if [ "$(wc -l <"$record")" -ne 1 ]; then
      echo "run.sh: $service handled event $(basename "$record") more than once" >&2
      status=1
    fi
  done
done
if [ "$status" -ne 0 ]; then
  tail -n 20 "$dir"/*.err >&2
fi
echo "records and logs in $dir"
exit "$status"
