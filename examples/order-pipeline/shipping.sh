#!/usr/bin/env bash
# Shipping: books a parcel for each paid order. Run by `spool work shipping`
# (see service.sh) once per event of the topic `payments`: the event on stdin,
# its id in SPOOL_ID. Exit 0 acks it.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
order=$(field order_id) charge=$(field charge)

# Only a captured payment for an order ships anything. Anything else fails:
# spool retries it, and after the queue's last attempt leaves it dead, for
# a person to look at (`spool peek shipping --state dead`).
if [ "$(field type)" != PaymentCaptured ] || [ -z "$order" ] || [ -z "$charge" ]; then
  echo "shipping: event $SPOOL_ID is not a captured payment for an order; not shipping: $event" >&2
  exit 1
fi
parcels="$PIPELINE_DIR/parcels"
grep -qs "^$SPOOL_ID " "$parcels" && exit 0 # booked before: a redelivery changes nothing

echo "$SPOOL_ID $order $(field customer) $charge attempt $SPOOL_ATTEMPT" >>"$parcels"
