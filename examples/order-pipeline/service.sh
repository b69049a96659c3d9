#!/usr/bin/env bash
# One service, as it runs in production: a long-running `spool work` on the
# service's queue (under systemd, this line is the unit's ExecStart). It waits
# for events until it gets SIGINT or SIGTERM, then lets its running handlers
# finish and exits.
#
# Usage: ./service.sh payment|inventory|shipping [WORK OPTION…]
#   WORK OPTION  passed to `spool work`, e.g. --concurrency 2, --until-empty
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SPOOL=${SPOOL:-spool}
service=${1:-}
shift || true

case $service in
  payment)
    # Each line payment.sh prints (one PaymentCaptured event per order) is
    # published to the topic `payments` in the same transaction as the ack of
    # the OrderPlaced event it handled: both happen, or neither.
    exec "$SPOOL" work payment --emit payments "$@" -- "$here/payment.sh" ;;
  inventory | shipping)
    exec "$SPOOL" work "$service" "$@" -- "$here/$service.sh" ;;
  *)
    echo "service.sh: no service \`$service\` (payment, inventory, shipping)" >&2
    exit 2 ;;
esac
