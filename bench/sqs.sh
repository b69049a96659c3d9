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
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

binary, messages, sync, pg = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ROUND = 50
tmp = tempfile.mkdtemp()
creds = os.path.join(tmp, "creds")
with open(creds, "w") as f:
    f.write("AKIDBENCH benchsecret\n")
db = os.path.join(tmp, "bench.db")
if pg:
    db = f"{pg}{'&' if '?' in pg else '?'}schema=bench_sqs_{secrets.token_hex(4)}"
proc = subprocess.Popen([binary, "--db", db, "--sync", sync, "serve", "--listen", "127.0.0.1:0",
                         "--sqs", "--sqs-credentials", creds],
                        stderr=subprocess.PIPE, text=True)
m = re.search(r"http://([\d.]+):(\d+)", proc.stderr.readline())
if not m:
    proc.kill()
    sys.exit("spool serve did not start")
host, port = m.group(1), int(m.group(2))
log = []
threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
conn = http.client.HTTPConnection(host, port)
auth = SigV4Auth(Credentials("AKIDBENCH", "benchsecret"), "sqs", "us-east-1")
base = f"http://{host}:{port}"


def post(path, body, headers=None):
    conn.request("POST", path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.exit(f"{path}: {r.status} {data[:300]!r}")
    return data


def sqs(action, payload):
    req = AWSRequest(method="POST", url=base + "/", data=json.dumps(payload).encode(),
                     headers={"Content-Type": "application/x-amz-json-1.0",
                              "X-Amz-Target": f"AmazonSQS.{action}"})
    auth.add_auth(req)
    return json.loads(post("/", req.body, dict(req.headers)) or b"{}")


url = sqs("CreateQueue", {"QueueName": "bench-sqs"})["QueueUrl"]
subprocess.run([binary, "--db", db, "queue", "create", "bench-native", "--max-attempts", "0"],
               check=True, capture_output=True)


def native_round(n):
    for i in range(n):
        post("/v1/queues/bench-native/messages?raw=true", b"message %d\n" % i)
        line = post("/v1/queues/bench-native/consume", b"")
        receipt = json.loads(line)["receipt"]
        post("/v1/ack", receipt.encode())


def sqs_round(n):
    for i in range(n):
        sqs("SendMessage", {"QueueUrl": url, "MessageBody": "message %d" % i})
        got = sqs("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1})
        sqs("DeleteMessage", {"QueueUrl": url,
                              "ReceiptHandle": got["Messages"][0]["ReceiptHandle"]})


# A warm-up round of each, not counted.
native_round(50)
sqs_round(50)
import time
time.sleep(0.5)
skip = len(log)
done = 0
while done < messages:
    n = min(ROUND, messages - done)
    native_round(n)
    sqs_round(n)
    done += n
time.sleep(0.5)
proc.terminate()
proc.wait()
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
