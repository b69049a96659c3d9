#!/usr/bin/env bash
# Payment: charges each order. Run by `spool work payment` once per event, with
# the event on stdin, its id in SPOOL_ID and the delivery number in
# SPOOL_ATTEMPT. Exit 0 acks the event; any other exit makes spool retry it
# after the queue's backoff.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
record="$PIPELINE_DIR/payment/$SPOOL_ID"

# Idempotent: the event id is the same in every queue and on every redelivery,
# so a payment already made is not made again.
[ -e "$record" ] && exit 0

# The payment provider times out now and then: here on the first attempt for
# every third event. The event is retried after the backoff.
if [ "$SPOOL_ATTEMPT" = 1 ] && [ $((SPOOL_ID % 3)) = 0 ]; then
  echo "payment: provider timed out for order $(field order_id); spool will retry" >&2
  exit 1
fi

mkdir -p "$PIPELINE_DIR/payment"
echo "charged $(field total_cents) cents for order $(field order_id), attempt $SPOOL_ATTEMPT" >>"$record"
echo "$SPOOL_ID $(field customer)" >>"$PIPELINE_DIR/payment.log"
