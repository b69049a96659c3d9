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
import os
import sys
import tempfile

sys.path.insert(0, "bench")
from sqs_load import Server  # noqa: E402

binary, messages, measure = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TICK = os.sysconf("SC_CLK_TCK")


def run(kind):
    tmp = tempfile.mkdtemp()
    out = os.path.join(tmp, "callgrind.out")
    tool = [] if measure == "cpu" else ["valgrind", "--tool=callgrind",
                                        f"--callgrind-out-file={out}"]
    server = Server(binary, os.path.join(tmp, "bench.db"), tmp, "normal", tool, quiet=True)
    server.native(50)
    server.via_sqs(50)
    if kind == "native":
        server.native(messages)
    elif kind == "sqs":
        server.via_sqs(messages)
    if measure == "cpu":
        with open(f"/proc/{server.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        server.stop()
        # utime and stime, fields 14 and 15 of stat(5), in ns.
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // TICK
    server.stop()
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
