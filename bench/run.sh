#!/usr/bin/env bash
# Builds spool in release mode and runs the benchmark suite.
#   bench/run.sh            # full suite, under 10 minutes on a 2-core machine
#   bench/run.sh --quick    # small sizes, under a minute
#   bench/run.sh --only single,batch --out results.json
#   bench/run.sh --only single,drain,pop,loops --baseline /path/to/older/spool   # before/after in one run
#   (`loops` is the comparison with Redis of the targets: 8 shell-style loops
#   against `redis-cli RPOP` loops on a Redis with `appendfsync always`)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet
exec python3 bench/bench.py target/release/spool "$@"
