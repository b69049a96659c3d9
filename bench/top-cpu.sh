#!/usr/bin/env bash
# CPU cost of `spool top` (issue 10), on a release build, run in an 80x24 tmux
# session: the process's user+system CPU time from /proc/PID/stat over a
# window, as a share of one core.
#   1. idle: Q queues (each with a backlog of M messages, some dead), a topic,
#      nobody writing; the queue list refreshes every second;
#   2. the same, on the message list of one queue;
#   3. busy: a writer publishes and acks in a loop while top shows the queues
#      (top's own cost under traffic; the writer's rate is printed with and
#      without top running, to show top does not slow writers down).
#
# Usage: bench/top-cpu.sh [SECONDS] [Q] [M]   (defaults: 10 20 1000)
# Needs tmux. Writes only under target/bench-top.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
Q=${2:-20}
M=${3:-1000}

command -v tmux >/dev/null || { echo "tmux is needed" >&2; exit 1; }
cargo build --release --locked --quiet
BIN=$PWD/target/release/spool
WORK=$PWD/target/bench-top
rm -rf "$WORK"
mkdir -p "$WORK"
export SPOOL_DB=$WORK/spool.db
SOCK=$WORK/tmux.sock
trap 'tmux -S "$SOCK" kill-server 2>/dev/null || true; rm -rf "$WORK"' EXIT

TICK=$(getconf CLK_TCK)

# utime + stime of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# CPU share of one core used by PID over SECS seconds.
measure() {
    local pid=$1 t0 t1 w0 w1
    t0=$(ticks "$pid"); w0=$EPOCHREALTIME
    sleep "$SECS"
    t1=$(ticks "$pid"); w1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" -v hz="$TICK" -v w0="$w0" -v w1="$w1" \
        'BEGIN { cpu = (b - a) / hz; printf "%.3f s CPU in %.1f s = %.2f%% of one core\n", cpu, w1 - w0, 100 * cpu / (w1 - w0) }'
}

# Messages published and acked by a loop of `publish` + `consume --ack` in SECS seconds.
writer_rate() {
    local end=$((SECONDS + SECS)) n=0
    while [ $SECONDS -lt $end ]; do
        "$BIN" publish busy '{"n":1}' >/dev/null
        "$BIN" consume busy --ack >/dev/null
        n=$((n + 1))
    done
    echo "$n publish+ack pairs in $SECS s"
}

echo "building the database: $Q queues of $M messages, a topic"
"$BIN" queue create q00 --max-attempts 1
for i in $(seq -w 0 $((Q - 1))); do
    awk -v n="$M" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"n\":%d}\n", i }' | "$BIN" publish "q$i" >/dev/null
done
"$BIN" consume q00 -n 10 | "$BIN" nack
"$BIN" subscribe events q01
"$BIN" publish busy 1 >/dev/null

tmux -S "$SOCK" -f /dev/null new-session -d -s top -x 80 -y 24 "exec env SPOOL_DB='$SPOOL_DB' '$BIN' top"
PID=$(tmux -S "$SOCK" display-message -p -t top '#{pane_pid}')
sleep 2

echo "1. idle, queue list:      $(measure "$PID")"
tmux -S "$SOCK" send-keys -t top Enter
sleep 1
echo "2. idle, message list:    $(measure "$PID")"
tmux -S "$SOCK" send-keys -t top Escape
sleep 1
echo "   writer without top:    $(tmux -S "$SOCK" kill-session -t top; writer_rate)"
tmux -S "$SOCK" new-session -d -s top -x 80 -y 24 "exec env SPOOL_DB='$SPOOL_DB' '$BIN' top"
PID=$(tmux -S "$SOCK" display-message -p -t top '#{pane_pid}')
sleep 2
writer_rate >"$WORK/rate" &
WRITER=$!
echo "3. busy, queue list:      $(measure "$PID")"
wait "$WRITER"
echo "   writer with top:       $(cat "$WORK/rate")"
