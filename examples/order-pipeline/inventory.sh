#!/usr/bin/env bash
# Inventory: reserves the items of each order. Run by `spool work inventory`
# once per event (event on stdin, id in SPOOL_ID); exit 0 acks.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
record="$PIPELINE_DIR/inventory/$SPOOL_ID"
[ -e "$record" ] && exit 0 # already reserved: a redelivery changes nothing

mkdir -p "$PIPELINE_DIR/inventory"
echo "reserved $(field items) item(s) for order $(field order_id), attempt $SPOOL_ATTEMPT" >>"$record"
echo "$SPOOL_ID $(field customer)" >>"$PIPELINE_DIR/inventory.log"
