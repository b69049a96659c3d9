#!/usr/bin/env bash
# The SQS suite: boto3 and the aws command line (pinned, from PyPI, in a
# virtual environment) against a real `spool serve --sqs`, on SQLite and then
# on PostgreSQL (a fresh schema of the database at SPOOL_TEST_PG).
#
# Builds nothing: it runs $SPOOL_BIN, else target/debug/spool (`cargo build`
# first). The virtual environment is kept in $SPOOL_SQS_VENV, else
# target/sqs-venv, and reused while requirements.txt is unchanged.
# `tests/sqs/run.sh sqlite` runs one backend; more arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export SPOOL_BIN="${SPOOL_BIN:-$root/target/debug/spool}"
if [ ! -x "$SPOOL_BIN" ]; then
    echo "error: no spool binary at $SPOOL_BIN: run \`cargo build\` first, or set SPOOL_BIN" >&2
    exit 2
fi
venv="${SPOOL_SQS_VENV:-$root/target/sqs-venv}"
stamp="$venv/.requirements"
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$stamp"
fi
backends=(sqlite postgres)
case "${1:-}" in sqlite | postgres) backends=("$1"); shift ;; esac
cd "$here"
for backend in "${backends[@]}"; do
    echo "== SQS suite on $backend" >&2
    SPOOL_SQS_BACKEND="$backend" \
        SPOOL_TEST_PG="${SPOOL_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}" \
        "$venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
done
