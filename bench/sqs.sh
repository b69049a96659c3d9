#!/usr/bin/env bash
# spool serve --sqs against the native API: the server's own time per
# message, from its request log (the `ms` of each request's JSON line: from
# the request's headers to its answer, body read and store calls included).
# One keep-alive client sends, receives (one at a time) and deletes MESSAGES
# messages through each API, in alternating rounds of 50, on one fresh
# database; the SQS requests are signed (SigV4) by botocore, whose cost is
# the client's and not counted. Printed: server ms per message (send +
# receive + delete, and each), and the SQS/native ratio, as plain means and
# as means without each step's slowest tenth (on a shared machine a request
# now and then waits for a CPU, which says nothing about either API).
#
# Usage: bench/sqs.sh [MESSAGES] [SPOOL_BINARY] [SYNC] [PG_URL]
#   MESSAGES defaults to 2000; without SPOOL_BINARY (or with an empty one) a
#   release build is made; SYNC is full (default) or normal; with PG_URL the
#   database is a fresh schema there instead of an SQLite file.
#   botocore comes from the SQS suite's virtual environment
#   (target/sqs-venv, made from tests/sqs/requirements.txt if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${1:-2000}"
binary="${2:-}"
sync="${3:-full}"
pg="${4:-}"
if [[ -z "$binary" ]]; then
    cargo build --release --quiet
    binary="$PWD/target/release/spool"
fi
venv="${SPOOL_SQS_VENV:-$PWD/target/sqs-venv}"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/sqs/requirements.txt
    cp tests/sqs/requirements.txt "$venv/.requirements"
fi
exec "$venv/bin/python" - "$binary" "$messages" "$sync" "$pg" <<'PY'
import json
import os
import secrets
import sys
import tempfile
import threading
import time

sys.path.insert(0, "bench")
from sqs_load import Server  # noqa: E402

binary, messages, sync, pg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ROUND = 50
tmp = tempfile.mkdtemp()
db = os.path.join(tmp, "bench.db")
if pg:
    db = f"{pg}{'&' if '?' in pg else '?'}schema=bench_sqs_{secrets.token_hex(4)}"
server = Server(binary, db, tmp, sync)
log = []
threading.Thread(target=lambda: log.extend(server.proc.stderr), daemon=True).start()

# A warm-up round of each, not counted.
server.native(50)
server.via_sqs(50)
time.sleep(0.5)
skip = len(log)
done = 0
while done < messages:
    n = min(ROUND, messages - done)
    server.native(n)
    server.via_sqs(n)
    done += n
time.sleep(0.5)
server.stop()
lines = [json.loads(l) for l in log[skip:] if l.startswith("{")]
samples = {k: [] for k in ("native-send", "native-receive", "native-delete",
                           "sqs-send", "sqs-receive", "sqs-delete")}
sqs_steps = ["sqs-send", "sqs-receive", "sqs-delete"]
sqs_i = 0
for l in lines:
    p = l["path"]
    if p == "/":
        key = sqs_steps[sqs_i % 3]
        sqs_i += 1
    elif p.endswith("/messages"):
        key = "native-send"
    elif p.endswith("/consume"):
        key = "native-receive"
    elif p == "/v1/ack":
        key = "native-delete"
    else:
        continue
    samples[key].append(l["ms"])


def mean(values, trim):
    values = sorted(values)[: max(1, int(len(values) * (1 - trim)))]
    return sum(values) / len(values)


print(f"backend {'postgres' if pg else 'sqlite'}, --sync {sync}, {messages} messages each")
print("| step | native ms | SQS ms | SQS/native | native ms, fastest 90% | SQS ms, fastest 90% | SQS/native |")
print("|---|--:|--:|--:|--:|--:|--:|")
totals = [0.0, 0.0, 0.0, 0.0]
for step in ("send", "receive", "delete"):
    a, b = mean(samples["native-" + step], 0), mean(samples["sqs-" + step], 0)
    c, d = mean(samples["native-" + step], 0.1), mean(samples["sqs-" + step], 0.1)
    totals = [totals[0] + a, totals[1] + b, totals[2] + c, totals[3] + d]
    print(f"| {step} | {a:.3f} | {b:.3f} | {b / a:.2f} | {c:.3f} | {d:.3f} | {d / c:.2f} |")
a, b, c, d = totals
print(f"| per message | {a:.3f} | {b:.3f} | {b / a:.2f} | {c:.3f} | {d:.3f} | {d / c:.2f} |")
print(f"(requests counted: { {k: len(v) for k, v in samples.items()} })")
PY
