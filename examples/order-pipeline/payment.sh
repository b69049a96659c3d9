#!/usr/bin/env bash
# Payment: charges each order, then announces it. Run by
# `spool work payment --emit payments` (see service.sh) once per OrderPlaced
# event: the event on stdin, its id in SPOOL_ID, the delivery number in
# SPOOL_ATTEMPT.
#
# What it prints on stdout, one JSON line, is the PaymentCaptured event:
# spool publishes it to the topic `payments` in the same transaction as the
# ack of the OrderPlaced event. Exit 0: acked and announced. Any other exit:
# nothing announced, and the event is retried after the queue's backoff.
# Messages for people go to stderr.
set -euo pipefail
event=$(cat)
field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$event"; }
order=$(field order_id) customer=$(field customer) total=$(field total_cents)
if [ "$(field type)" != OrderPlaced ] || [ -z "$order" ] || [ -z "$total" ]; then
  echo "payment: event $SPOOL_ID is not an order; not charging: $event" >&2
  exit 1
fi
charges="$PIPELINE_DIR/charges" # the payment provider's ledger, one line per charge

# Idempotent: the event id is the same on every delivery. An order already
# charged (the handler, or spool, died before the ack) is not charged again,
# but it is announced again: the announcement of the earlier delivery was
# never published, as its ack never committed.
if grep -qs "^$SPOOL_ID " "$charges"; then
  echo "payment: order $order (event $SPOOL_ID) was charged before; announcing it" >&2
else
  # The payment provider times out now and then: here on the first attempt
  # for every third order. Nothing is announced; spool retries the event.
  if [ "$SPOOL_ATTEMPT" = 1 ] && [ $((10#${order#A-} % 3)) = 0 ]; then
    echo "payment: provider timed out for order $order; spool will retry" >&2
    exit 1
  fi
  # One line in one write: a kill leaves the charge made or not made.
  echo "$SPOOL_ID $order $customer $total attempt $SPOOL_ATTEMPT" >>"$charges"
fi

printf '{"type":"PaymentCaptured","order_id":"%s","customer":"%s","amount_cents":%s,"charge":"ch-%s"}\n' \
  "$order" "$customer" "$total" "$SPOOL_ID"
