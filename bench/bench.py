#!/usr/bin/env python3
"""spool's benchmark suite: spool side by side with the floor (`true`,
`spool --version`), Redis and the sqlite3 CLI, interleaved, printing medians,
p99s and ratios. Run it through bench/run.sh, which builds a release binary.

Usage: bench/bench.py SPOOL_BINARY [--quick] [--only NAME,...] [--out FILE]
                      [--baseline OLD_SPOOL_BINARY]

With --baseline, the scenarios that support it (single, drain, pop, loops) also run
an older build, interleaved with the new one in the same run, and print the
ratio new/old: the way to measure a change on a shared, noisy machine.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = []


def log(text=""):
    print(text, flush=True)


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def record(scenario, name, **fields):
    RESULTS.append({"scenario": scenario, "name": name, **fields})


def run(cmd, stdin=None, env=None, check=True):
    """Runs cmd, returns (seconds, maxrss_kb, stdout bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err.decode(errors='replace')}")
    return elapsed, out, err, proc.returncode


def run_rss(cmd, stdin_path, env=None):
    """Runs cmd with a file on stdin; returns (seconds, peak RSS in MB)."""
    with open(stdin_path, "rb") as f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}: {proc.stderr.read().decode(errors='replace')}")
    return elapsed, usage.ru_maxrss / 1024


class Bench:
    def __init__(self, spool, quick, workdir, baseline=None):
        self.spool = str(spool)
        self.baseline = str(baseline) if baseline else None
        self.quick = quick
        self.dir = Path(workdir)
        self.n = 0

    def db(self, name):
        self.n += 1
        path = self.dir / f"{name}-{self.n}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return str(path)

    def sp(self, db, *args, binary=None):
        return [binary or self.spool, "--db", db, *map(str, args)]

    def builds(self):
        """The builds to compare: the one under test, and the baseline if any."""
        builds = {"": self.spool}
        if self.baseline:
            builds[" (baseline)"] = self.baseline
        return builds

    # ---------------------------------------------------------------- facts
    def facts(self):
        cpu = "unknown"
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        _, out, _, _ = run([self.spool, "--version"])
        fsync = self.fsync_latency()
        facts = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cpu": cpu,
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "spool": out.decode().strip().replace("\n", " "),
            "sqlite3_cli": subprocess.run(["sqlite3", "--version"], capture_output=True, text=True).stdout.split()[0]
            if shutil.which("sqlite3") else "missing",
            "fsync_p50_ms": round(fsync, 3),
            "sync_mode": "full (spool default)",
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=Path(__file__).parent).stdout.strip(),
        }
        log("machine:")
        for k, v in facts.items():
            log(f"  {k}: {v}")
        record("facts", "machine", **facts)

    def fsync_latency(self):
        path = self.dir / "fsync.test"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY)
        times = []
        for _ in range(200):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t) * 1000)
        os.close(fd)
        path.unlink()
        return statistics.median(times)

    # ------------------------------------------------- 1. one message per process
    def single(self):
        rounds = 60 if self.quick else 300
        log(f"\n[1] one message per process ({rounds} interleaved rounds each)")
        spool_db = self.db("single")
        run(self.sp(spool_db, "queue", "create", "q"))
        lite = self.db("sqlite-cli")
        run(["sqlite3", lite, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT);"])
        body = '{"order":1,"total":9.5}'
        cmds = {
            "true": ["true"],
            "spool --version": [self.spool, "--version"],
            "spool publish": self.sp(spool_db, "publish", "q", body),
            "sqlite3 insert (WAL, FULL)": ["sqlite3", lite,
                                           f"PRAGMA synchronous=FULL; INSERT INTO t (body) VALUES ('{body}');"],
        }
        if redis_up(6379):
            cmds["redis-cli LPUSH"] = ["redis-cli", "-p", "6379", "LPUSH", "bench:q", body]
        if self.baseline:
            base_db = self.db("single-base")
            run(self.sp(base_db, "queue", "create", "q", binary=self.baseline))
            cmds["spool publish (baseline)"] = self.sp(base_db, "publish", "q", body, binary=self.baseline)
        times = {k: [] for k in cmds}
        for _ in range(rounds):
            for name in random.sample(list(cmds), len(cmds)):
                t, _, _, _ = run(cmds[name])
                times[name].append(t * 1000)
        version = statistics.median(times["spool --version"])
        for name, ts in times.items():
            p50, p99 = statistics.median(ts), pct(ts, 99)
            log(f"  {name:28s} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
            record("single", name, p50_ms=round(p50, 3), p99_ms=round(p99, 3))
        pub = statistics.median(times["spool publish"])
        log(f"  spool publish - spool --version: {pub - version:+.2f} ms (target <= 1.5 ms)")
        lite_p50 = statistics.median(times["sqlite3 insert (WAL, FULL)"])
        log(f"  spool publish / sqlite3 insert: {pub / lite_p50:.2f}x (target <= 1.0)")
        if "redis-cli LPUSH" in times:
            log(f"  spool publish / redis-cli LPUSH: {pub / statistics.median(times['redis-cli LPUSH']):.2f}x (target < 1.0)")
        record("single", "ratios", over_version_ms=round(pub - version, 3), vs_sqlite=round(pub / lite_p50, 3))
        if self.baseline:
            base = statistics.median(times["spool publish (baseline)"])
            log(f"  spool publish / baseline: {pub / base:.3f}x")
            record("single", "vs baseline", ratio=round(pub / base, 4))

    # ------------------------------------------------- 2. batch publish
    def batch(self):
        n = 100_000 if self.quick else 1_000_000
        log(f"\n[2] {n:,} NDJSON lines of ~100 bytes through one process")
        lines = self.dir / "batch.ndjson"
        with open(lines, "w") as f:
            for i in range(n):
                f.write('{"id":%d,"user":"user-%06d","amount":%d.%02d,"items":["sku-%04d","sku-%04d"],"ok":true}\n'
                        % (i, i % 100000, i % 1000, i % 100, i % 7919, i % 4001))
        resp = self.dir / "batch.resp"
        with open(lines, "rb") as src, open(resp, "wb") as dst:
            for line in src:
                line = line.rstrip(b"\n")
                dst.write(b"*3\r\n$5\r\nLPUSH\r\n$7\r\nbench:b\r\n$%d\r\n%s\r\n" % (len(line), line))
        fsync_redis = start_redis(6391, fsync=True, workdir=self.dir)
        contenders = {
            "spool publish": lambda: run_rss(self.sp(self.db("batch"), "publish", "q", "-q"), lines),
            "sqlite3 .import (one txn)": lambda: self.sqlite_import(lines),
        }
        if redis_up(6379):
            contenders["redis-cli --pipe (no fsync)"] = lambda: self.redis_pipe(6379, resp)
        if fsync_redis:
            contenders["redis-cli --pipe (appendfsync always)"] = lambda: self.redis_pipe(6391, resp)
        rounds = 1 if self.quick else 3
        results = {k: [] for k in contenders}
        for _ in range(rounds):
            for name in random.sample(list(contenders), len(contenders)):
                results[name].append(contenders[name]())
        rates = {}
        for name, rs in results.items():
            secs = statistics.median(r[0] for r in rs)
            rss = max(r[1] for r in rs)
            rates[name] = n / secs
            log(f"  {name:40s} {n / secs:>10,.0f} msg/s  peak RSS {rss:6.1f} MB")
            record("batch", name, msgs_per_s=round(n / secs), peak_rss_mb=round(rss, 1), seconds=round(secs, 3))
        spool_rate = rates["spool publish"]
        log(f"  spool / sqlite3 .import: {spool_rate / rates['sqlite3 .import (one txn)']:.2f}x (target >= 0.5)")
        if "redis-cli --pipe (appendfsync always)" in rates:
            log(f"  spool / redis (appendfsync always): {spool_rate / rates['redis-cli --pipe (appendfsync always)']:.2f}x (target > 1)")
        stop_redis(fsync_redis)

    def sqlite_import(self, lines):
        db = self.db("import")
        run(["sqlite3", db, "PRAGMA journal_mode=WAL; CREATE TABLE t (body TEXT);"])
        script = f".mode ascii\n.separator \"\\037\" \"\\n\"\nPRAGMA synchronous=FULL;\n.import {lines} t\n"
        start = time.perf_counter()
        proc = subprocess.Popen(["sqlite3", db], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        proc.stdin.write(script.encode())
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        return time.perf_counter() - start, usage.ru_maxrss / 1024

    def redis_pipe(self, port, resp):
        run(["redis-cli", "-p", str(port), "DEL", "bench:b"])
        return run_rss(["redis-cli", "-p", str(port), "--pipe"], resp)

    # ------------------------------------------------- 3. drain
    def drain(self):
        log("\n[3] draining with parallel consumers (consume -n B, then ack the batch)")
        sizes = {1: 2_000, 10: 20_000, 100: 100_000}
        if self.quick:
            sizes = {1: 500, 10: 5_000, 100: 20_000}
        combos = [(c, b) for b in (1, 10, 100) for c in (1, 4, 16)]
        if self.quick:
            combos = [(1, 1), (16, 1), (16, 100)]
        for consumers, batch in combos:
            total = sizes[batch]
            rates = {}
            builds = self.builds()
            for label in random.sample(list(builds), len(builds)):
                binary = builds[label]
                db = self.db("drain")
                publish_n(self, db, total, binary)
                rate, calls, problems = drain_queue(self, db, consumers, batch, binary)
                rates[label] = rate
                log(f"  {consumers:2d} consumers, batch {batch:3d}{label}: {rate:>8,.0f} msg/s over {total:,}  "
                    f"call p50 {pct(calls, 50):6.1f} ms p99 {pct(calls, 99):6.1f} ms max {max(calls):7.1f} ms  "
                    f"problems: {problems or 'none'}")
                record("drain", f"{consumers}x{batch}{label}", msgs_per_s=round(rate), messages=total,
                       call_p50_ms=round(pct(calls, 50), 2), call_p99_ms=round(pct(calls, 99), 2),
                       call_max_ms=round(max(calls), 2), problems=problems)
            if len(rates) == 2:
                log(f"  {consumers:2d} consumers, batch {batch:3d}: new / baseline {rates[''] / rates[' (baseline)']:.3f}x")
        if redis_up(6379):
            rate = redis_rpop_drain(8, 100, 20_000 if self.quick else 100_000)
            log(f"  reference: 8 redis-cli 'RPOP q 100' loops: {rate:,.0f} msg/s")
            record("drain", "redis 8xRPOP100", msgs_per_s=round(rate))

    # ------------------------------------------------- 3b. pop
    def pop(self):
        log("\n[3b] popping with 8 parallel consumers (consume -n B --ack: the like-for-like of RPOP)")
        total = {1: 500, 100: 20_000} if self.quick else {1: 2_000, 100: 100_000}
        for batch in (1, 100):
            rates = {}
            builds = self.builds()
            for label in random.sample(list(builds), len(builds)):
                binary = builds[label]
                db = self.db("pop")
                publish_n(self, db, total[batch], binary)
                rate, calls, problems = drain_queue(self, db, 8, batch, binary, pop=True)
                rates[label] = rate
                log(f"   8 consumers, batch {batch:3d}{label}: {rate:>8,.0f} msg/s over {total[batch]:,}  "
                    f"call p50 {pct(calls, 50):6.1f} ms p99 {pct(calls, 99):6.1f} ms  problems: {problems or 'none'}")
                record("pop", f"8x{batch}{label}", msgs_per_s=round(rate), messages=total[batch],
                       call_p50_ms=round(pct(calls, 50), 2), call_p99_ms=round(pct(calls, 99), 2), problems=problems)
            if redis_up(6379):
                rate = redis_rpop_drain(8, batch, total[batch])
                rates["redis"] = rate
                log(f"   8 redis-cli 'RPOP q {batch}' loops: {rate:,.0f} msg/s (spool / redis {rates[''] / rate:.2f}x)")
                record("pop", f"redis 8xRPOP{batch}", msgs_per_s=round(rate))
            if " (baseline)" in rates:
                log(f"   batch {batch:3d}: new / baseline {rates[''] / rates[' (baseline)']:.3f}x")

    # ------------------------------------------------- 3c. shell loops against Redis
    def loops(self):
        """The issue-22 comparisons: 8 parallel shell-style loops draining a
        queue, spool against `redis-cli RPOP` loops on a Redis that fsyncs
        every write (`appendfsync always`), interleaved round by round."""
        rounds = 1 if self.quick else 3
        log(f"\n[3c] 8 parallel loops, spool against redis-cli RPOP (appendfsync always), {rounds} interleaved rounds")
        redis = start_redis(6392, fsync=True, workdir=self.dir)
        if not redis:
            log("  skipped: redis-server is not installed")
            return
        try:
            cases = [
                # (name, batch, pop, messages)
                ("consume -n 100 + ack", 100, False, 20_000 if self.quick else 100_000),
                ("consume -n 1 --ack", 1, True, 500 if self.quick else 2_000),
                ("consume -n 1 + ack", 1, False, 500 if self.quick else 2_000),
            ]
            for name, batch, pop, total in cases:
                rates = {}
                for _ in range(rounds):
                    contenders = {f"spool{label}": binary for label, binary in self.builds().items()}
                    contenders["redis"] = None
                    for who in random.sample(list(contenders), len(contenders)):
                        if who == "redis":
                            rate = redis_rpop_drain(8, batch, total, port=6392)
                        else:
                            db = self.db("loops")
                            publish_n(self, db, total, contenders[who])
                            rate, _, problems = drain_queue(self, db, 8, batch, contenders[who], pop=pop)
                            if problems:
                                log(f"  {name}, {who}: problems {problems}")
                        rates.setdefault(who, []).append(rate)
                med = {who: statistics.median(rs) for who, rs in rates.items()}
                redis_rate = med["redis"]
                log(f"  8 x {name:22s} spool {med['spool']:>8,.0f} msg/s, redis-cli 'RPOP q {batch}' "
                    f"{redis_rate:>8,.0f} msg/s: {med['spool'] / redis_rate:.2f}x")
                fields = {"spool_msgs_per_s": round(med["spool"]), "redis_msgs_per_s": round(redis_rate),
                          "vs_redis": round(med["spool"] / redis_rate, 3)}
                if "spool (baseline)" in med:
                    base = med["spool (baseline)"]
                    log(f"  8 x {name:22s} baseline {base:>8,.0f} msg/s: {base / redis_rate:.2f}x of redis; "
                        f"new / baseline {med['spool'] / base:.3f}x")
                    fields.update(baseline_msgs_per_s=round(base), baseline_vs_redis=round(base / redis_rate, 3))
                record("loops", f"8x {name}", **fields)
        finally:
            stop_redis(redis)

    # ------------------------------------------------- PostgreSQL next to SQLite
    def postgres(self):
        log(f"\n[6] PostgreSQL ({PG_URL}) next to SQLite, same run")
        if not pg_up():
            log("  skipped: PostgreSQL is not reachable (set SPOOL_BENCH_PG)")
            return
        schemas = []

        def pg_db(name):
            schema = f"spool_bench_{os.getpid()}_{name}_{len(schemas)}"
            schemas.append(schema)
            pg_drop(schema)
            sep = "&" if "?" in PG_URL else "?"
            return f"{PG_URL}{sep}schema={schema}"

        try:
            rounds = 60 if self.quick else 200
            # Each publish is a new process, so a new connection: TLS is
            # negotiated where the server offers it (sslmode=prefer), and
            # `sslmode=disable` shows what that costs.
            dbs = {"sqlite": self.db("single-pg"), "postgres": pg_db("single"),
                   "pg-notls": pg_db("single_notls") + "&sslmode=disable"}
            for db in dbs.values():
                run(self.sp(db, "queue", "create", "q"))
            body = '{"order":1,"total":9.5}'
            times = {k: [] for k in dbs}
            for _ in range(rounds):
                for name in random.sample(list(dbs), len(dbs)):
                    t, _, _, _ = run(self.sp(dbs[name], "publish", "q", body))
                    times[name].append(t * 1000)
            for name, ts in times.items():
                log(f"  publish, one per process, {name:8s}  p50 {statistics.median(ts):6.2f} ms  p99 {pct(ts, 99):6.2f} ms")
                record("postgres", f"single {name}", p50_ms=round(statistics.median(ts), 3), p99_ms=round(pct(ts, 99), 3))
            sizes = {1: 500 if self.quick else 2_000, 100: 20_000 if self.quick else 100_000}
            for batch in (1, 100):
                for name in ("sqlite", "postgres"):
                    db = self.db("drain-pg") if name == "sqlite" else pg_db(f"drain{batch}")
                    publish_n(self, db, sizes[batch])
                    rate, calls, problems = drain_queue(self, db, 16, batch)
                    log(f"  16 consumers, batch {batch:3d}, {name:8s}: {rate:>8,.0f} msg/s  "
                        f"call p50 {pct(calls, 50):6.1f} ms p99 {pct(calls, 99):6.1f} ms max {max(calls):7.1f} ms  "
                        f"problems: {problems or 'none'}")
                    record("postgres", f"drain 16x{batch} {name}", msgs_per_s=round(rate),
                           call_p50_ms=round(pct(calls, 50), 2), call_p99_ms=round(pct(calls, 99), 2),
                           call_max_ms=round(max(calls), 2), problems=problems)
        finally:
            for schema in schemas:
                pg_drop(schema)

    # ------------------------------------------------- work
    def work(self):
        n = 2_000 if self.quick else 10_000
        log(f"\n[3b] spool work --until-empty --concurrency 2 -- true, over {n:,} messages")
        loop_t, _, _, _ = run(["bash", "-c", f"for i in $(seq {n}); do /bin/true; done"])
        db = self.db("work")
        publish_n(self, db, n)
        work_t, _, _, _ = run(self.sp(db, "work", "q", "--until-empty", "--concurrency", "2", "-q", "--", "true"))
        loop_rate, work_rate = n / loop_t, n / work_t
        log(f"  bash loop spawning /bin/true: {loop_rate:8,.0f} /s")
        log(f"  spool work -- true:           {work_rate:8,.0f} msg/s  ({work_rate / loop_rate:.2f}x, target >= 0.7)")
        record("work", "true", loop_per_s=round(loop_rate), work_msgs_per_s=round(work_rate),
               ratio=round(work_rate / loop_rate, 3))

        # A pipeline stage: the handler prints one JSON line. Without --emit
        # spool passes it through (to a pipe here); with --emit it publishes
        # it in the ack's transaction. Interleaved, best of three each.
        log(f"\n[3c] spool work --concurrency 2 -- echo '{{\"ok\":1}}', over {n:,} messages, with and without --emit")
        echo = shutil.which("echo") or "/bin/echo"
        best = {"plain": 0.0, "emit": 0.0}
        for i in range(3):
            for kind in ("plain", "emit"):
                db = self.db(f"work-{kind}-{i}")
                publish_n(self, db, n)
                emit = ["--emit", "next"] if kind == "emit" else []
                t, _, _, _ = run(self.sp(db, "work", "q", "--until-empty", "--concurrency", "2", "-q",
                                         *emit, "--", echo, '{"ok":1}'))
                best[kind] = max(best[kind], n / t)
        ratio = best["emit"] / best["plain"]
        log(f"  without --emit: {best['plain']:8,.0f} msg/s")
        log(f"  with --emit:    {best['emit']:8,.0f} msg/s  ({ratio:.2f}x, target >= 0.9)")
        record("work", "emit", plain_msgs_per_s=round(best["plain"]), emit_msgs_per_s=round(best["emit"]),
               ratio=round(ratio, 3))

    # ------------------------------------------------- 4. backlog
    def backlog(self):
        sizes = [1_000, 100_000] if self.quick else [1_000, 100_000, 1_000_000]
        log(f"\n[4] backlog sensitivity: consume -n 10 + ack at {', '.join(f'{s:,}' for s in sizes)}")
        reps = 30 if self.quick else 100
        dbs = {}
        for size in sizes:
            dbs[size] = self.db(f"backlog{size}")
            publish_n(self, dbs[size], size)
        times = {s: [] for s in sizes}
        for _ in range(reps):
            for size in random.sample(sizes, len(sizes)):
                db = dbs[size]
                t, out, _, _ = run(self.sp(db, "consume", "q", "-n", "10"))
                t2, _, _, _ = run(self.sp(db, "ack"), stdin=None) if False else ack_lines(self, db, out)
                times[size].append((t + t2) * 1000)
        base = statistics.median(times[sizes[0]])
        for size in sizes:
            m = statistics.median(times[size])
            log(f"  backlog {size:>9,}: consume+ack p50 {m:6.2f} ms  ({m / base:.2f}x of {sizes[0]:,}; target <= 1.3)")
            record("backlog", f"consume+ack@{size}", p50_ms=round(m, 3), ratio=round(m / base, 3))
        big = dbs[sizes[-1]]
        empty = self.db("empty")
        run(self.sp(empty, "queue", "create", "q"))
        for name, args in (("stats", ["stats", "--json"]), ("peek -n 10", ["peek", "q", "-n", "10", "--json"])):
            at_big = [run(self.sp(big, *args))[0] * 1000 for _ in range(reps // 2)]
            at_empty = [run(self.sp(empty, *args))[0] * 1000 for _ in range(reps // 2)]
            b, e = statistics.median(at_big), statistics.median(at_empty)
            log(f"  {name:10s} at {sizes[-1]:,}: p50 {b:6.2f} ms (empty queue {e:6.2f} ms, {b / e:.2f}x)")
            record("backlog", f"{name}@{sizes[-1]}", p50_ms=round(b, 3), empty_p50_ms=round(e, 3))

    # ------------------------------------------------- 5. end-to-end latency
    def latency(self):
        count = 100 if self.quick else 400
        rate = 50
        log(f"\n[5] end-to-end latency: {count} messages at {rate}/s with `spool work` running")
        db = self.db("e2e")
        run(self.sp(db, "queue", "create", "q"))
        stamps = self.dir / "stamps"
        stamps.unlink(missing_ok=True)
        handler = self.dir / "stamp.sh"
        handler.write_text(f"#!/bin/sh\necho \"$SPOOL_ID $(date +%s%N)\" >> {stamps}\n")
        handler.chmod(0o755)
        worker = subprocess.Popen(self.sp(db, "work", "q", "--concurrency", "4", "-q", "--", str(handler)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        sent = {}
        for i in range(count):
            t = time.time_ns()
            _, out, _, _ = run(self.sp(db, "publish", "q", f'{{"n":{i}}}'))
            sent[int(out.decode().strip())] = t
            time.sleep(max(0.0, 1 / rate - (time.time_ns() - t) / 1e9))
        deadline = time.time() + 10
        while time.time() < deadline:
            if stamps.exists() and len(stamps.read_text().splitlines()) >= count:
                break
            time.sleep(0.1)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        lat = []
        for line in stamps.read_text().splitlines():
            mid, ns = line.split()
            lat.append((int(ns) - sent[int(mid)]) / 1e6)
        log(f"  publish start -> handler start: p50 {pct(lat, 50):6.1f} ms  p99 {pct(lat, 99):6.1f} ms "
            f"({len(lat)} of {count} seen)")
        record("latency", "publish->handler", p50_ms=round(pct(lat, 50), 2), p99_ms=round(pct(lat, 99), 2),
               seen=len(lat))


def ack_lines(bench, db, consumed):
    return run(bench.sp(db, "ack"), stdin=None) if not consumed else _ack(bench, db, consumed)


def _ack(bench, db, consumed):
    start = time.perf_counter()
    proc = subprocess.run(bench.sp(db, "ack"), input=consumed, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"ack failed: {proc.stderr.decode()}")
    return time.perf_counter() - start, proc.stdout, proc.stderr, 0


def publish_n(bench, db, n, binary=None):
    data = "".join('{"n":%d,"pad":"%s"}\n' % (i, "x" * 64) for i in range(n)).encode()
    proc = subprocess.run(bench.sp(db, "publish", "q", "-q", binary=binary), input=data, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"publish failed: {proc.stderr.decode()}")


def drain_queue(bench, db, consumers, batch, binary=None, pop=False):
    calls = []
    problems = {}
    done = [0]
    lock = threading.Lock()

    def consumer():
        while True:
            t0 = time.perf_counter()
            args = ["consume", "q", "-n", batch] + (["--ack"] if pop else [])
            c = subprocess.run(bench.sp(db, *args, binary=binary), capture_output=True)
            t1 = time.perf_counter()
            note(c)
            if c.returncode == 1:
                with lock:
                    calls.append((t1 - t0) * 1000)
                return
            if c.returncode != 0:
                continue
            if pop:
                with lock:
                    calls.append((t1 - t0) * 1000)
                    done[0] += c.stdout.count(b"\n")
                continue
            a = subprocess.run(bench.sp(db, "ack", binary=binary), input=c.stdout, capture_output=True)
            t2 = time.perf_counter()
            note(a)
            with lock:
                calls.append((t1 - t0) * 1000)
                calls.append((t2 - t1) * 1000)
                done[0] += c.stdout.count(b"\n")

    def note(proc):
        err = proc.stderr.decode(errors="replace")
        key = None
        if "locked" in err:
            key = "database is locked"
        elif proc.returncode not in (0, 1):
            key = f"exit {proc.returncode}"
        if key:
            with lock:
                problems[key] = problems.get(key, 0) + 1

    start = time.perf_counter()
    threads = [threading.Thread(target=consumer) for _ in range(consumers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return done[0] / elapsed, calls, problems


PG_URL = os.environ.get("SPOOL_BENCH_PG", "postgres://postgres@127.0.0.1:5432/test")


def pg_up():
    """Whether PostgreSQL answers at PG_URL (needs psql)."""
    if not shutil.which("psql"):
        return False
    return subprocess.run(["psql", PG_URL, "-qAtc", "SELECT 1"], capture_output=True).returncode == 0


def pg_drop(schema):
    subprocess.run(["psql", PG_URL, "-qc", f"DROP SCHEMA IF EXISTS {schema} CASCADE"], capture_output=True)


def redis_up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port, fsync, workdir):
    if not shutil.which("redis-server"):
        return None
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    if fsync:
        args += ["--appendonly", "yes", "--appendfsync", "always"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if redis_up(port):
            return proc
        time.sleep(0.1)
    proc.kill()
    return None


def stop_redis(proc):
    if proc:
        proc.terminate()
        proc.wait(timeout=10)


def redis_rpop_drain(loops, batch, total, port=6379):
    port = str(port)
    run(["redis-cli", "-p", port, "DEL", "bench:d"])
    data = b"".join(b"*3\r\n$5\r\nLPUSH\r\n$7\r\nbench:d\r\n$%d\r\n%s\r\n" % (len(m), m)
                    for m in (b'{"n":%d}' % i for i in range(total)))
    subprocess.run(["redis-cli", "-p", port, "--pipe"], input=data, capture_output=True, check=True)
    count = [0]
    lock = threading.Lock()

    def loop():
        while True:
            out = subprocess.run(["redis-cli", "-p", port, "RPOP", "bench:d", str(batch)], capture_output=True).stdout
            n = len([l for l in out.splitlines() if l.strip()])
            if n == 0:
                return
            with lock:
                count[0] += n

    start = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0] / (time.perf_counter() - start)


SCENARIOS = ["single", "batch", "drain", "pop", "loops", "work", "backlog", "latency", "postgres"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spool")
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--baseline", help="an older spool binary to run interleaved with SPOOL (single, drain, pop, loops)")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="spool-bench-", dir=os.environ.get("BENCH_DIR")) as workdir:
        baseline = Path(args.baseline).resolve() if args.baseline else None
        bench = Bench(Path(args.spool).resolve(), args.quick, workdir, baseline)
        bench.facts()
        for name in args.only.split(","):
            getattr(bench, name)()
    log(f"\ntotal {time.time() - started:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(RESULTS, indent=2) + "\n")


if __name__ == "__main__":
    main()
