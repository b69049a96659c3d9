"""Signatures and the shape of errors, as SQS sends them."""

import datetime
import json
import urllib.error
import urllib.request

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, REGION, SECRET


def code(err):
    return err.value.response["Error"]["Code"]


def raw(server, action, body, sign=True, secret=SECRET, when=None, tamper=None):
    """One SQS request by hand: (status, headers, JSON body)."""
    req = AWSRequest(method="POST", url=server.endpoint + "/", data=json.dumps(body).encode(),
                     headers={"Content-Type": "application/x-amz-json-1.0",
                              "X-Amz-Target": f"AmazonSQS.{action}"})
    if sign:
        auth = SigV4Auth(Credentials(ACCESS_KEY, secret), "sqs", REGION)
        if when is None:
            auth.add_auth(req)
        else:
            # Signed as if the client's clock were at `when`.
            real = botocore.auth.get_current_datetime
            botocore.auth.get_current_datetime = lambda: when
            try:
                auth.add_auth(req)
            finally:
                botocore.auth.get_current_datetime = real
    data = req.body if tamper is None else tamper
    http = urllib.request.Request(req.url, data=data, method="POST", headers=dict(req.headers))
    try:
        with urllib.request.urlopen(http, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"{}")


def test_a_signed_request_by_hand_is_answered(server):
    status, _, body = raw(server, "ListQueues", {})
    assert status == 200
    assert "QueueUrls" in body


def test_wrong_secret_is_refused(server):
    with pytest.raises(ClientError) as err:
        server.client(secret="not-the-secret").list_queues()
    assert code(err) == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_key_is_refused(server):
    with pytest.raises(ClientError) as err:
        server.client(key="AKIDNOBODY").list_queues()
    assert code(err) == "InvalidClientTokenId"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_tampered_body_is_refused(server, name):
    status, headers, body = raw(server, "CreateQueue", {"QueueName": name},
                                tamper=json.dumps({"QueueName": name + "x"}).encode())
    assert status == 403
    assert headers["x-amzn-query-error"] == "SignatureDoesNotMatch;Sender"
    assert body["__type"].endswith("#InvalidSignatureException")
    assert name + "x" not in server.spool("queue", "list", "--json").stdout


def test_wrong_date_is_refused(server):
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    status, headers, _ = raw(server, "ListQueues", {}, when=old)
    assert status == 400
    assert headers["x-amzn-query-error"] == "RequestExpired;Sender"


def test_unsigned_request_is_refused(server):
    status, headers, _ = raw(server, "ListQueues", {}, sign=False)
    assert status == 403
    assert headers["x-amzn-query-error"] == "MissingAuthenticationToken;Sender"


def test_errors_carry_type_and_query_error(server):
    status, headers, body = raw(server, "GetQueueUrl", {"QueueName": "no-such-queue"})
    assert status == 400
    assert body["__type"] == "com.amazonaws.sqs#QueueDoesNotExist"
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    status, headers, _ = raw(server, "TagQueue", {"QueueUrl": "x", "Tags": {"a": "b"}})
    assert (status, headers["x-amzn-query-error"]) == (
        400, "AWS.SimpleQueueService.UnsupportedOperation;Sender")


def test_native_api_still_answers(server):
    with urllib.request.urlopen(server.endpoint + "/v1/health", timeout=10) as resp:
        assert resp.status == 200
