"""The client side of bench/sqs.sh and bench/sqs-instructions.sh: starts
`spool serve --sqs` and sends, receives and deletes messages one at a time
through the native API and through SQS (requests signed by botocore, whose
cost is the client's). Run with the SQS suite's virtual environment."""

import http.client
import json
import os
import re
import subprocess
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY, SECRET = "AKIDBENCH", "benchsecret"
NATIVE_QUEUE, SQS_QUEUE = "bench-native", "bench-sqs"


class Server:
    """`spool serve --sqs` on a free port, run as `tool + [binary, …]`
    (`tool` is empty, or valgrind's command line), with one keep-alive
    connection to it and both queues created."""

    def __init__(self, binary, db, tmp, sync, tool=(), quiet=False):
        creds = os.path.join(tmp, "creds")
        with open(creds, "w") as f:
            f.write(f"{KEY} {SECRET}\n")
        command = [binary, "--db", db, "--sync", sync] + (["--quiet"] if quiet else [])
        self.proc = subprocess.Popen(
            list(tool) + command + ["serve", "--listen", "127.0.0.1:0",
                                    "--sqs", "--sqs-credentials", creds],
            stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"listening on http://([\d.]+):(\d+)", line)
            if m:
                break
        else:
            sys.exit("spool serve did not start")
        host, port = m.group(1), int(m.group(2))
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.auth = SigV4Auth(Credentials(KEY, SECRET), "sqs", "us-east-1")
        self.base = f"http://{host}:{port}"
        subprocess.run([binary, "--db", db, "queue", "create", NATIVE_QUEUE, "--max-attempts", "0"],
                       check=True, capture_output=True)
        self.url = self.sqs("CreateQueue", {"QueueName": SQS_QUEUE})["QueueUrl"]

    def post(self, path, body, headers=None):
        self.conn.request("POST", path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            sys.exit(f"{path}: {r.status} {data[:300]!r}")
        return data

    def sqs(self, action, payload):
        req = AWSRequest(method="POST", url=self.base + "/", data=json.dumps(payload).encode(),
                         headers={"Content-Type": "application/x-amz-json-1.0",
                                  "X-Amz-Target": f"AmazonSQS.{action}"})
        self.auth.add_auth(req)
        return json.loads(self.post("/", req.body, dict(req.headers)) or b"{}")

    def native(self, n):
        """Sends, receives and acks `n` messages through the native API."""
        for i in range(n):
            self.post(f"/v1/queues/{NATIVE_QUEUE}/messages?raw=true", b"message %d\n" % i)
            line = self.post(f"/v1/queues/{NATIVE_QUEUE}/consume", b"")
            self.post("/v1/ack", json.loads(line)["receipt"].encode())

    def via_sqs(self, n):
        """Sends, receives and deletes `n` messages through SQS."""
        for i in range(n):
            self.sqs("SendMessage", {"QueueUrl": self.url, "MessageBody": "message %d" % i})
            got = self.sqs("ReceiveMessage", {"QueueUrl": self.url, "MaxNumberOfMessages": 1})
            self.sqs("DeleteMessage", {"QueueUrl": self.url,
                                       "ReceiptHandle": got["Messages"][0]["ReceiptHandle"]})

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait()
