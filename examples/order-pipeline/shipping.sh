#!/usr/bin/env bash
# Shipping: books a parcel for each order. Run by `spool work shipping` once
# per event (event on stdin, id in SPOOL_ID); exit 0 acks.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
record="$PIPELINE_DIR/shipping/$SPOOL_ID"
[ -e "$record" ] && exit 0 # already booked: a redelivery changes nothing

mkdir -p "$PIPELINE_DIR/shipping"
echo "booked a parcel for order $(field order_id) to customer $(field customer), attempt $SPOOL_ATTEMPT" >>"$record"
echo "$SPOOL_ID $(field customer)" >>"$PIPELINE_DIR/shipping.log"
