#!/usr/bin/env bash
# spool serve --sqs against the native API in the server's own work: its
# instructions under `valgrind --tool=callgrind` (exact, whatever else the
# machine is doing; but valgrind hides the CPU's SHA extensions, so SigV4's
# SHA-256 runs in software there and SQS's figure is too high), or with
# `cpu` as the third argument its CPU time (user + system, from /proc) run
# natively. The server runs three times, on a fresh SQLite database each
# time. Every run first sends, receives and deletes 50 messages through
# each API (so both paths are warm), then run "native" does MESSAGES more
# through the native API, run "sqs" MESSAGES more through SQS, and run
# "base" none. Instructions per message = (run − base) / MESSAGES, over all
# the server's threads: HTTP parsing, signature checks, JSON, MD5, the
# store calls and the request log. The client (botocore signs the SQS
# requests) is not counted.
#
# Usage: bench/sqs-instructions.sh [MESSAGES] [SPOOL_BINARY] [cpu]
#   MESSAGES defaults to 500 (use thousands with cpu: /proc counts in
#   clock ticks); without SPOOL_BINARY (or with an empty one) a release
#   build is made.
#   botocore comes from the SQS suite's virtual environment (target/sqs-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
messages="${1:-500}"
binary="${2:-}"
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
exec "$venv/bin/python" - "$binary" "$messages" "${3:-instructions}" <<'PY'
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

binary, messages, measure = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TICK = os.sysconf("SC_CLK_TCK")


def run(kind):
    tmp = tempfile.mkdtemp()
    creds = os.path.join(tmp, "creds")
    with open(creds, "w") as f:
        f.write("AKIDBENCH benchsecret\n")
    db = os.path.join(tmp, "bench.db")
    subprocess.run([binary, "--db", db, "queue", "create", "bench-native", "--max-attempts", "0"],
                   check=True, capture_output=True)
    out = os.path.join(tmp, "callgrind.out")
    tool = [] if measure == "cpu" else ["valgrind", "--tool=callgrind",
                                        f"--callgrind-out-file={out}"]
    proc = subprocess.Popen(tool + [binary, "--db", db, "--sync", "normal", "--quiet", "serve",
                             "--listen", "127.0.0.1:0", "--sqs", "--sqs-credentials", creds],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            break
    else:
        sys.exit("spool serve did not start")
    host, port = m.group(1), int(m.group(2))
    conn = http.client.HTTPConnection(host, port, timeout=120)
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

    def native(n):
        for i in range(n):
            post("/v1/queues/bench-native/messages?raw=true", b"message %d\n" % i)
            receipt = json.loads(post("/v1/queues/bench-native/consume", b""))["receipt"]
            post("/v1/ack", receipt.encode())

    def via_sqs(n):
        for i in range(n):
            sqs("SendMessage", {"QueueUrl": url, "MessageBody": "message %d" % i})
            got = sqs("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1})
            sqs("DeleteMessage", {"QueueUrl": url,
                                  "ReceiptHandle": got["Messages"][0]["ReceiptHandle"]})

    native(50)
    via_sqs(50)
    if kind == "native":
        native(messages)
    elif kind == "sqs":
        via_sqs(messages)
    conn.close()
    if measure == "cpu":
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        proc.terminate()
        proc.wait()
        # utime and stime, fields 14 and 15 of stat(5), in ns.
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // TICK
    proc.terminate()
    proc.wait()
    with open(out) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    sys.exit("no totals in the callgrind output")


totals = {kind: run(kind) for kind in ("base", "native", "sqs")}
per = {k: (totals[k] - totals["base"]) / messages for k in ("native", "sqs")}
unit = "ns of CPU" if measure == "cpu" else "instructions"
print(f"server {unit}, {messages} messages each (send + receive + delete), SQLite, --sync normal")
print(f"  base run: {totals['base']:,}")
print(f"  native:   {per['native']:,.0f} per message")
print(f"  SQS:      {per['sqs']:,.0f} per message")
print(f"  SQS/native: {per['sqs'] / per['native']:.3f}")
PY
