#!/usr/bin/env bash
# The web shop: places N orders, publishing one OrderPlaced event per order to
# the topic `orders`, as a checkout request would. Writes the event ids it got
# back to $PIPELINE_DIR/events.
set -euo pipefail
n=${1:-20}
: "${PIPELINE_DIR:?set PIPELINE_DIR}"
SPOOL=${SPOOL:-spool}

place_order() {
  local i=$1 order customer event
  order=$(printf 'A-%04d' "$i")
  customer="c-$((i % 4))"
  event=$(printf '{"type":"OrderPlaced","order_id":"%s","customer":"%s","items":%d,"total_cents":%d}' \
    "$order" "$customer" $((i % 3 + 1)) $((i * 137 % 10000 + 500)))
  # --key: a checkout that is retried (a timeout, a double click) publishes
  #   the order once; spool answers with the id it already has.
  # --group: each service handles one customer's orders in the order placed
  #   (the PaymentCaptured events payment emits keep the group).
  "$SPOOL" publish orders "$event" --key "$order" --group "$customer" --header source=web-shop
}

: >"$PIPELINE_DIR/events"
for i in $(seq 1 "$n"); do
  place_order "$i" >>"$PIPELINE_DIR/events"
done
# The first checkout request timed out in the browser and was sent again:
# the same id comes back, and nothing is published twice.
if [ "$n" -ge 1 ]; then
  first=$(head -n 1 "$PIPELINE_DIR/events")
  again=$(place_order 1)
  if [ "$again" != "$first" ]; then
    echo "shop: order A-0001 placed again got id $again, not $first" >&2
    exit 1
  fi
fi
echo "shop: placed $n orders"
