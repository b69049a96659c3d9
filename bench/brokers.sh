#!/usr/bin/env bash
# spool serve against durable brokers, driven by one Rust load generator
# (bench/loadgen): RabbitMQ (durable queue, persistent messages, publisher
# confirms, manual acks), NATS JetStream (file storage, work-queue
# retention, explicit acks) and Redis (`appendfsync always`, LPUSH and
# BLMOVE/LREM), with spool serve at `--sync full` and `--sync normal`.
#
# Scenarios, each run against every system before the next scenario:
#   produce       8 producers, one message per request, each confirmed
#   consume 1     8 consumers receiving and acking one message at a time
#   consume 100   the same, 100 at a time
#   latency 1     send to receive at 1,000 msg/s in all (8 producers),
#   latency 100   8 consumers taking 1, or up to 100, at a time
#
# It starts its own redis-server and nats-server (free ports, a temporary
# folder), two spool serve (fresh SQLite databases), and with PG_URL one
# more on a fresh PostgreSQL schema; it uses the machine's RabbitMQ at
# RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/%2f) with queues
# of its own, deleted afterwards. It prints a line per run, then a table
# with the servers' peak RSS (VmHWM), and stops everything it started.
#
# Usage: bench/brokers.sh [SECONDS] [PG_URL]
#   SECONDS (default 10) bounds each timed run; PG_URL (or SPOOL_BENCH_PG),
#   like postgres://postgres@127.0.0.1:5432/test, adds spool on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
pg="${2:-${SPOOL_BENCH_PG:-}}"
rabbit_url="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml --target-dir target
spool="$PWD/target/release/spool"
loadgen="$PWD/target/release/spool-loadgen"

tmp="$(mktemp -d)"
tag="brokers_$$"
pids=()
cleanup() {
    # Everything here is tried, whatever fails (no `set -e`).
    set +e
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    # Queues a failed run left behind.
    if command -v rabbitmqctl >/dev/null; then
        rabbitmqctl list_queues -q name 2>/dev/null | grep "^${tag}_" | while read -r q; do
            rabbitmqctl delete_queue -q "$q" >/dev/null 2>&1
        done
    fi
    if [[ -n "$pg" ]]; then
        psql "${pg%%\?*}" -qc "DROP SCHEMA IF EXISTS ${tag} CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local i
    for i in $(seq 100); do
        answers "$1" && return 0
        sleep 0.1
    done
    echo "error: nothing answers on port $1 ($2)" >&2
    exit 1
}
peak_rss() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo ""; }

systems=()   # label system url pid
add() { systems+=("$1 $2 $3 $4"); }

# spool serve: --sync is a global option; the port is read from its first line.
start_spool() {
    local label="$1" db="$2" sync="$3" err="$tmp/$1.err" port="" i
    "$spool" --db "$db" --sync "$sync" --quiet serve --listen 127.0.0.1:0 2>"$err" &
    local pid=$!
    pids+=("$pid")
    for i in $(seq 100); do
        port="$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$err" | head -1)"
        [[ -n "$port" ]] && break
        sleep 0.1
    done
    [[ -n "$port" ]] || { echo "error: spool serve ($label) did not start: $(cat "$err")" >&2; exit 1; }
    add "$label" spool "http://127.0.0.1:$port" "$pid"
}
start_spool spool-full "$tmp/full.db" full
start_spool spool-normal "$tmp/normal.db" normal
if [[ -n "$pg" ]]; then
    sep='?'
    [[ "$pg" == *\?* ]] && sep='&'
    start_spool spool-pg "${pg}${sep}schema=${tag}" full
fi

if answers 5672 && [[ "$rabbit_url" == *127.0.0.1:5672* ]]; then
    rabbit_pid="$(ss -ltnpH 'sport = :5672' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1)"
    add rabbitmq rabbitmq "$rabbit_url" "${rabbit_pid:--}"
elif [[ "$rabbit_url" != *127.0.0.1:5672* ]]; then
    add rabbitmq rabbitmq "$rabbit_url" -
else
    echo "note: no RabbitMQ answers on 127.0.0.1:5672; it is left out" >&2
fi

if command -v nats-server >/dev/null; then
    nats_port="$(free_port)"
    mkdir -p "$tmp/nats"
    nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" -l "$tmp/nats.log" &
    pids+=("$!")
    add nats-js nats "nats://127.0.0.1:$nats_port" "$!"
    wait_port "$nats_port" nats-server
else
    echo "note: no nats-server; NATS JetStream is left out" >&2
fi

if command -v redis-server >/dev/null; then
    redis_port="$(free_port)"
    mkdir -p "$tmp/redis"
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" \
        --appendonly yes --appendfsync always --save '' --logfile "$tmp/redis.log" &
    pids+=("$!")
    add redis redis "redis://127.0.0.1:$redis_port" "$!"
    wait_port "$redis_port" redis-server
else
    echo "note: no redis-server; Redis is left out" >&2
fi

results="$tmp/results.jsonl"
echo "commit $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$seconds s per run at most; 8 producers / 8 consumers"
run() {
    local scenario="$1" batch="$2" messages="$3" entry label system url pid
    for entry in "${systems[@]}"; do
        read -r label system url pid <<<"$entry"
        "$loadgen" --system "$system" --url "$url" --label "$label" --json \
            --scenario "$scenario" --batch "$batch" --clients 8 --seconds "$seconds" \
            --messages "$messages" --rate 1000 --queue "${tag}_${label//-/_}_${scenario}_${batch}" \
            | while read -r line; do
                if [[ "$line" == "{"* ]]; then echo "$line" >>"$results"; else echo "$line"; fi
            done || { echo "error: the $label $scenario run failed (its error is above)" >&2; exit 1; }
    done
}
run produce 1 0
run consume 1 $((seconds * 5000))
run consume 100 $((seconds * 20000))
run latency 1 0
run latency 100 0
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

rss="$tmp/rss"
for entry in "${systems[@]}"; do
    read -r label system url pid <<<"$entry"
    [[ "$pid" != - ]] && echo "$label $(peak_rss "$pid")" >>"$rss"
done
touch "$rss"

python3 - "$results" "$rss" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rss = dict(l.split() for l in open(sys.argv[2]) if len(l.split()) == 2)
labels = list(dict.fromkeys(r["label"] for r in rows))
cell = {(r["label"], r["scenario"], r["batch"]): r for r in rows}
def thr(l, s, b):
    r = cell.get((l, s, b))
    return f"{r['rate']:,.0f}" if r else "-"
def lat(l, s, b):
    r = cell.get((l, s, b))
    return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "-"
print()
print("| system | produce msg/s | produce p50 / p99 ms | consume 1 msg/s | consume 100 msg/s "
      "| e2e at 1,000/s, 1 at a time, p50 / p99 ms | e2e at 1,000/s, up to 100, p50 / p99 ms | peak RSS MiB |")
print("|---|--:|--:|--:|--:|--:|--:|--:|")
for l in labels:
    mib = f"{int(rss[l]) / 1024:,.0f}" if l in rss else "-"
    print(f"| {l} | {thr(l, 'produce', 1)} | {lat(l, 'produce', 1)} | {thr(l, 'consume', 1)} "
          f"| {thr(l, 'consume', 100)} | {lat(l, 'latency', 1)} | {lat(l, 'latency', 100)} | {mib} |")
PY
