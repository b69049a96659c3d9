#!/usr/bin/env bash
# spool serve's group commit, measured: 8 and 32 concurrent clients each
# POST one message per request (keep-alive) for SECONDS, with group commit
# on and off (`--no-group-commit`), on a fresh SQLite database each time,
# `--sync full`, and with PG_URL also on a fresh PostgreSQL schema each
# time. Prints messages/s and p50/p99 latency.
#
# Usage: bench/serve.sh [SECONDS] [SPOOL_BINARY] [PG_URL]
#   SECONDS defaults to 5; without SPOOL_BINARY (or with an empty one) a
#   release build is made.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
binary="${2:-}"
pg="${3:-}"
if [[ -z "$binary" ]]; then
    cargo build --release --quiet
    binary="$PWD/target/release/spool"
fi
exec python3 - "$binary" "$seconds" "$pg" <<'PY'
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

binary, seconds, pg = sys.argv[1], float(sys.argv[2]), sys.argv[3]


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def start(db, group):
    cmd = [binary, "--db", db, "--sync", "full", "--quiet", "serve", "--listen", "127.0.0.1:0"]
    if not group:
        cmd.append("--no-group-commit")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"http://([\d.]+):(\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"spool serve did not start: {line!r}")
    return proc, m.group(1), int(m.group(2))


def client(host, port, stop, out):
    conn = http.client.HTTPConnection(host, port)
    latencies, sent, n = [], 0, 0
    while not stop.is_set():
        body = b'{"n":%d}\n' % n
        n += 1
        t0 = time.perf_counter()
        conn.request("POST", "/v1/queues/bench/messages", body=body,
                     headers={"Content-Type": "application/x-ndjson"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 201:
            out.append(("error", resp.status))
            return
        latencies.append(time.perf_counter() - t0)
        sent += 1
    conn.close()
    out.append((sent, latencies))


def fresh_db(tmp, backend, n):
    """A new database: a file in `tmp`, or a schema of its own on `pg`."""
    if backend == "sqlite":
        return os.path.join(tmp, "spool.db")
    schema = f"bench_serve_{os.getpid()}_{n}"
    sep = "&" if "?" in pg else "?"
    return f"{pg}{sep}schema={schema}"


def drop_schemas():
    subprocess.run(["psql", pg.split("?")[0], "-qc",
                    f"DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace "
                    f"WHERE nspname LIKE 'bench_serve_{os.getpid()}_%' LOOP "
                    f"EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$"],
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


RUNS = [0]


def run(clients, group, backend):
    RUNS[0] += 1
    with tempfile.TemporaryDirectory() as tmp:
        proc, host, port = start(fresh_db(tmp, backend, RUNS[0]), group)
        try:
            # The queue exists before the clock starts.
            conn = http.client.HTTPConnection(host, port)
            conn.request("POST", "/v1/queues/bench/messages", body=b'{"warm":1}\n')
            conn.getresponse().read()
            conn.close()
            stop, out = threading.Event(), []
            threads = [threading.Thread(target=client, args=(host, port, stop, out))
                       for _ in range(clients)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            time.sleep(seconds)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait()
    errors = [o for o in out if o[0] == "error"]
    if errors:
        sys.exit(f"requests failed: {errors[:3]}")
    sent = sum(o[0] for o in out)
    latencies = [l for o in out for l in o[1]]
    return sent / elapsed, pct(latencies, 50) * 1e3, pct(latencies, 99) * 1e3


print(f"spool serve, --sync full, one message per request, {seconds:g} s each")
print(f"{'backend':<10}  {'clients':>7}  {'group commit':<12}  {'msg/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}")
for backend in ["sqlite"] + (["postgres"] if pg else []):
    try:
        for clients in (8, 32):
            for group in (True, False):
                rate, p50, p99 = run(clients, group, backend)
                print(f"{backend:<10}  {clients:>7}  {'on' if group else 'off':<12}  {rate:>8.0f}"
                      f"  {p50:>7.2f}  {p99:>7.2f}", flush=True)
    finally:
        if backend == "postgres":
            drop_schemas()
PY
