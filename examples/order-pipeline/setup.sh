#!/usr/bin/env bash
# The wiring, run once before the services start (running it again changes
# nothing): a queue per service, and the two topics that connect them.
#
#   shop.sh ── OrderPlaced ──> topic orders ──┬──> queue payment ───> payment.sh ───┐
#                                             └──> queue inventory ─> inventory.sh  │ PaymentCaptured
#                                                                                   │ (work --emit)
#                            shipping.sh <─── queue shipping <─── topic payments <──┘
#
# Uses `spool` from PATH, or the binary named by $SPOOL; the database is
# $SPOOL_DB (a file, or postgres://…).
set -euo pipefail
SPOOL=${SPOOL:-spool}

# Each service owns a queue with its own settings. A failed delivery is
# retried soon (backoff 200ms, 400ms, …), up to 10 deliveries before the
# message is left dead for a look.
for service in payment inventory shipping; do
  "$SPOOL" queue create "$service" --retry-delay 200ms --max-attempts 10
done

# The shop's OrderPlaced events go to payment and inventory; payment's
# PaymentCaptured events go to shipping. A service that joins later (say,
# fraud checks) subscribes its own queue to a topic and changes no one else.
"$SPOOL" subscribe orders payment
"$SPOOL" subscribe orders inventory
"$SPOOL" subscribe payments shipping
