#!/usr/bin/env bash
# The order pipeline, as a chain of services: a web shop publishes
# OrderPlaced events to the topic `orders`; payment and inventory each
# receive every order in a queue of their own; payment announces each charge
# with a PaymentCaptured event on the topic `payments`, which shipping
# receives and ships. Each service is a long-running `spool work`.
#
# Usage: ./run.sh [ORDERS] [DIR]
#   ORDERS  how many orders the shop places (default 20)
#   DIR     where the handlers' records and logs go (default: a new
#           temporary folder)
#
# The database is $SPOOL_DB when set (SPOOL_DB=postgres://… runs it on
# PostgreSQL), else DIR/spool.db: your default spool database is never
# touched. Uses `spool` from PATH, or the binary named by $SPOOL. Builds
# nothing.
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
dir=$(cd "$dir" && pwd)
export SPOOL_DB=${SPOOL_DB:-$dir/spool.db} PIPELINE_DIR=$dir
services=(payment inventory shipping)

# 1. Wiring: the queues and topics (setup.sh).
"$here/setup.sh"

# 2. The services start and wait for events, as they would on a server.
pids=()
stop_services() {
  [ "${#pids[@]}" -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
  return 0
}
trap stop_services EXIT
for service in "${services[@]}"; do
  "$here/service.sh" "$service" --concurrency 2 2>>"$dir/$service.err" &
  pids+=($!)
done

# 3. The web shop places the orders.
"$here/shop.sh" "$orders"

# 4. Wait until every order is reserved and shipped, then stop the services:
#    SIGTERM lets the running handlers finish, and their events are acked.
lines() { if [ -e "$dir/$1" ]; then wc -l <"$dir/$1" | tr -d ' '; else echo 0; fi; }
status=0
deadline=$((SECONDS + 120))
while [ "$(lines reservations)" -lt "$orders" ] || [ "$(lines parcels)" -lt "$orders" ]; do
  for i in "${!services[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      echo "run.sh: the ${services[$i]} service stopped" >&2
      status=1
    fi
  done
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run.sh: after 120s, $(lines reservations) of $orders orders reserved, $(lines parcels) shipped" >&2
    status=1
  fi
  [ "$status" -eq 0 ] || break
  sleep 0.2
done
stop_services
for i in "${!services[@]}"; do
  rc=0
  wait "${pids[$i]}" || rc=$?
  case $rc in
    0 | 4) ;; # 4: some handler failed (a provider timeout); its event was retried
    *) echo "run.sh: spool work ${services[$i]} exited with $rc" >&2; status=1 ;;
  esac
done
pids=()

# 5. What happened: every order paid, reserved and shipped exactly once, one
#    PaymentCaptured event per payment, and nothing left in any queue.
stat_of() { "$SPOOL" stats "$1" --json | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
retried=$(awk '$NF > 1' "$dir/charges" 2>/dev/null | wc -l | tr -d ' ')
announced=$(stat_of shipping published_total)
echo "$orders orders placed: $(lines charges) paid ($retried after a retry), $(lines reservations) reserved, $announced PaymentCaptured, $(lines parcels) shipped"
for ledger in charges reservations parcels; do
  if [ "$(lines "$ledger")" -ne "$orders" ]; then
    echo "run.sh: $ledger has $(lines "$ledger") lines for $orders orders" >&2
    status=1
  fi
  # The second field of each line is the order.
  twice=$(cut -d ' ' -f 2 "$dir/$ledger" 2>/dev/null | sort | uniq -d | tr '\n' ' ')
  if [ -n "$twice" ]; then
    echo "run.sh: $ledger: more than once for $twice" >&2
    status=1
  fi
done
if [ "$announced" != "$(lines charges)" ]; then
  echo "run.sh: $announced PaymentCaptured events for $(lines charges) payments" >&2
  status=1
fi
for service in "${services[@]}"; do
  for state in ready delayed leased dead; do
    n=$(stat_of "$service" "$state")
    if [ "$n" != 0 ]; then
      echo "run.sh: $n message(s) $state in $service" >&2
      status=1
    fi
  done
done
if [ "$status" -ne 0 ]; then
  tail -n 20 "$dir"/*.err >&2
fi
echo "records and logs in $dir"
exit "$status"
