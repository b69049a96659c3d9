"""The README's "Using the AWS SDKs" examples, run against the test server:
its boto3 snippet and its `aws` commands, with the endpoint replaced by the
server's."""

import json
import os
import pathlib
import re
import subprocess
import sys

from conftest import ROOT

README_ENDPOINT = "http://127.0.0.1:8910"


def section_blocks(lang):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Using the AWS SDKs", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def test_the_boto3_snippet_runs(server):
    [snippet] = section_blocks("python")
    code = snippet.replace(README_ENDPOINT, server.endpoint)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hello en"
    peek = server.spool("stats", "emails", "--json").stdout
    assert json.loads(peek)["queues"][0]["acked"] == 1


def test_the_aws_commands_run(server):
    [commands] = section_blocks("bash")
    assert "aws --endpoint-url" in commands
    script = commands.replace(README_ENDPOINT, server.endpoint)
    env = dict(os.environ)
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{server.endpoint}/000000000000/reports" in done.stdout
    assert "monthly report" in done.stdout
    assert '"ApproximateNumberOfMessages": "1"' in done.stdout
