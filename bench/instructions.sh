#!/usr/bin/env bash
# Instructions per command (callgrind: exact, whatever else the machine does).
#
#   bench/instructions.sh NEW [OLD]
#
# For each build: fills a database with 2,000 messages in queue `q` (each
# build makes its own: an older build cannot open a newer schema), then runs
# each command once under callgrind on a fresh copy of it: `publish` one
# message, `consume -n 1`, `consume -n 100`, `ack` of 100 receipts (from a
# consume run first, not counted), `consume -n 1 --ack`, `consume -n 100
# --ack`, and `--version`. With OLD, prints both counts and NEW/OLD.
set -euo pipefail
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "the sqlite3 CLI is needed" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

counts() { # bin label: prints "name instructions" lines
    local bin=$1 d=$dir/$2
    mkdir -p "$d"
    seq 1 2000 | sed 's/.*/{"n":&}/' | "$bin" --db "$d/tpl.db" publish q >/dev/null
    sqlite3 "$d/tpl.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
    fresh() { rm -f "$d/w.db"*; cp "$d/tpl.db" "$d/w.db"; }
    ir() { # name command...
        local name=$1; shift
        valgrind --tool=callgrind --callgrind-out-file="$d/$name.cg" "$@" >/dev/null 2>"$d/$name.err"
        echo "$name $(awk '/Collected/ { print $4 }' "$d/$name.err")"
    }
    fresh; ir "publish" "$bin" --db "$d/w.db" publish q '{"a":1}'
    fresh; ir "consume-n1" "$bin" --db "$d/w.db" consume q -n 1
    fresh; ir "consume-n100" "$bin" --db "$d/w.db" consume q -n 100
    fresh; "$bin" --db "$d/w.db" consume q -n 100 >"$d/receipts"
    ir "ack-100" "$bin" --db "$d/w.db" ack <"$d/receipts"
    fresh; ir "consume-n1-ack" "$bin" --db "$d/w.db" consume q -n 1 --ack
    fresh; ir "consume-n100-ack" "$bin" --db "$d/w.db" consume q -n 100 --ack
    ir "version" "$bin" --version
}

counts "$1" new >"$dir/new.txt"
if [ $# -lt 2 ]; then
    cat "$dir/new.txt"
    exit 0
fi
counts "$2" old >"$dir/old.txt"
echo "command old new new/old"
paste -d' ' "$dir/old.txt" "$dir/new.txt" | awk '{ printf "%s %s %s %.3f\n", $1, $2, $4, $4 / $2 }'
