"""A real `spool serve --sqs` for the SQS suite, on SQLite or PostgreSQL.

The binary is $SPOOL_BIN, else target/debug/spool (this suite builds
nothing). The backend is $SPOOL_SQS_BACKEND: `sqlite` (default) or
`postgres`, in a fresh schema of the database at $SPOOL_TEST_PG.
"""

import os
import pathlib
import re
import secrets
import subprocess
import threading
import uuid

import boto3
import pytest
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCESS_KEY = "AKIDSPOOLTEST"
SECRET = "spool-test-secret"
REGION = "eu-west-1"
# The key pair the README's examples sign with.
README_PAIR = ("AKIDLOCAL", "verysecret")


def spool_bin():
    return os.environ.get("SPOOL_BIN") or str(ROOT / "target" / "debug" / "spool")


class Server:
    """`spool serve --sqs` on a free port; its stderr is kept."""

    def __init__(self, tmp, db, extra=()):
        self.db = db
        self.tmp = tmp
        self.credentials = tmp / "credentials"
        self.credentials.write_text(
            f"# test keys\n{ACCESS_KEY} {SECRET}\n{README_PAIR[0]} {README_PAIR[1]}\n")
        self.log = []
        self.proc = subprocess.Popen(
            [spool_bin(), "--db", db, "serve", "--listen", "127.0.0.1:0",
             "--sqs", "--sqs-credentials", str(self.credentials), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=self.env())
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.match(r"spool: listening on (\w+)://(\S+)", line)
            if m:
                self.endpoint = f"{m.group(1)}://{m.group(2)}"
                break
        else:
            self.proc.wait()
            raise RuntimeError("spool serve did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPOOL_")}
        env["HOME"] = str(self.tmp)
        return env

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def spool(self, *args, input=None, check=True):
        """Runs the spool command line on the server's database."""
        done = subprocess.run([spool_bin(), "--db", self.db, *args], input=input,
                              capture_output=True, text=True, env=self.env())
        if check and done.returncode != 0:
            raise AssertionError(f"spool {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def client(self, secret=SECRET, key=ACCESS_KEY, retries=0):
        return boto3.client(
            "sqs", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": retries + 1, "mode": "standard"}))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def database(tmp):
    backend = os.environ.get("SPOOL_SQS_BACKEND", "sqlite")
    if backend == "sqlite":
        return str(tmp / "spool.db"), None
    if backend != "postgres":
        raise RuntimeError(f"SPOOL_SQS_BACKEND is `{backend}`: use sqlite or postgres")
    url = os.environ.get("SPOOL_TEST_PG")
    if not url:
        raise RuntimeError("SPOOL_SQS_BACKEND=postgres needs SPOOL_TEST_PG (a PostgreSQL URL)")
    schema = "sqs_" + secrets.token_hex(6)
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}schema={schema}", (url, schema)


def drop_schema(pg):
    url, schema = pg
    subprocess.run(["psql", "-q", url, "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                   capture_output=True, check=False)


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spool")
    db, pg = database(tmp)
    srv = Server(tmp, db)
    yield srv
    srv.stop()
    if pg:
        drop_schema(pg)


@pytest.fixture
def sqs(server):
    return server.client()


@pytest.fixture
def name():
    """A queue name of this test's own."""
    return "t-" + uuid.uuid4().hex[:12]
