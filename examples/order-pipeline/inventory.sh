#!/usr/bin/env bash
# Inventory: reserves the items of each order. Run by `spool work inventory`
# (see service.sh) once per OrderPlaced event: the event on stdin, its id in
# SPOOL_ID. Exit 0 acks it.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
order=$(field order_id)
if [ "$(field type)" != OrderPlaced ] || [ -z "$order" ]; then
  echo "inventory: event $SPOOL_ID is not an order; not reserving: $event" >&2
  exit 1
fi
reservations="$PIPELINE_DIR/reservations"
grep -qs "^$SPOOL_ID " "$reservations" && exit 0 # reserved before: a redelivery changes nothing

echo "$SPOOL_ID $order $(field customer) $(field items) attempt $SPOOL_ATTEMPT" >>"$reservations"
