"""Message actions through boto3: receipts, batches, visibility, long polls,
FIFO groups, attributes and dead letters, and the command line on the same
queues."""

import hashlib
import json
import struct
import threading
import time

import pytest
from botocore.exceptions import ClientError


def code(err):
    return err.value.response["Error"]["Code"]


def md5_of_attributes(attrs):
    """MD5OfMessageAttributes as the SQS documentation describes it."""
    data = b""
    for name in sorted(attrs):
        a = attrs[name]
        for part in (name, a["DataType"]):
            raw = part.encode()
            data += struct.pack(">I", len(raw)) + raw
        value = a["StringValue"].encode()
        data += b"\x01" + struct.pack(">I", len(value)) + value
    return hashlib.md5(data).hexdigest()


def test_send_receive_delete(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello\nworld")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello\nworld").hexdigest()
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                              MessageSystemAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["hello\nworld"]
    assert got[0]["MessageId"] == sent["MessageId"]
    assert got[0]["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert got[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    assert int(got[0]["Attributes"]["SentTimestamp"]) > 0
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(ClientError) as err:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt")
    assert code(err) == "ReceiptHandleIsInvalid"


def test_batches_fail_entry_by_entry(sqs, server, name):
    url = sqs.create_queue(QueueName=name, Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    out = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"},
        {"Id": "b", "MessageBody": "x" * 2000},
        {"Id": "c", "MessageBody": "three"},
    ])
    assert sorted(e["Id"] for e in out["Successful"]) == ["a", "c"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in out["Failed"]] == [
        ("b", "InvalidParameterValue", True)]
    for e in out["Successful"]:
        body = {"a": b"one", "c": b"three"}[e["Id"]]
        assert e["MD5OfMessageBody"] == hashlib.md5(body).hexdigest()
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["one", "three"]
    out = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "y", "ReceiptHandle": "bogus"},
        {"Id": "z", "ReceiptHandle": got[1]["ReceiptHandle"]},
    ])
    assert sorted(e["Id"] for e in out["Successful"]) == ["x", "z"]
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("y", "ReceiptHandleIsInvalid")]
    assert json.loads(server.spool("stats", name, "--json").stdout)["queues"][0]["acked"] == 2
    with pytest.raises(ClientError) as err:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "same", "MessageBody": "1"},
                                                      {"Id": "same", "MessageBody": "2"}])
    assert code(err) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    with pytest.raises(ClientError) as err:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": "m"} for i in range(11)])
    assert code(err) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"


def test_visibility_timeout_and_change_of_visibility(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=600)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    # Visible again at once: delivered a second time.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"],
                                  VisibilityTimeout=0)
    second = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1,
                                 AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    # The old receipt no longer holds a lease.
    with pytest.raises(ClientError) as err:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"],
                                      VisibilityTimeout=30)
    assert code(err) == "AWS.SimpleQueueService.MessageNotInflight"
    # A lease of one second runs out by itself: the message comes back.
    third = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10,
                                AttributeNames=["All"])["Messages"][0]
    assert third["Attributes"]["ApproximateReceiveCount"] == "3"
    out = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "ok", "ReceiptHandle": third["ReceiptHandle"], "VisibilityTimeout": 300},
        {"Id": "old", "ReceiptHandle": second["ReceiptHandle"], "VisibilityTimeout": 300}])
    assert [e["Id"] for e in out["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [
        ("old", "AWS.SimpleQueueService.MessageNotInflight")]


def test_a_receipt_works_only_with_its_own_queues_url(sqs, name):
    a = sqs.create_queue(QueueName=name + "-a")["QueueUrl"]
    b = sqs.create_queue(QueueName=name + "-b")["QueueUrl"]
    sqs.send_message(QueueUrl=a, MessageBody="belongs to a")
    handle = sqs.receive_message(QueueUrl=a, VisibilityTimeout=600)["Messages"][0]["ReceiptHandle"]
    for call in (
        lambda: sqs.delete_message(QueueUrl=b, ReceiptHandle=handle),
        lambda: sqs.change_message_visibility(QueueUrl=b, ReceiptHandle=handle,
                                              VisibilityTimeout=0),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == "ReceiptHandleIsInvalid"
    out = sqs.delete_message_batch(QueueUrl=b, Entries=[{"Id": "x", "ReceiptHandle": handle}])
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("x", "ReceiptHandleIsInvalid")]
    out = sqs.change_message_visibility_batch(QueueUrl=b, Entries=[
        {"Id": "x", "ReceiptHandle": handle, "VisibilityTimeout": 0}])
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("x", "ReceiptHandleIsInvalid")]
    # Still leased by its consumer on a, which can delete it there.
    assert "Messages" not in sqs.receive_message(QueueUrl=a)
    sqs.delete_message(QueueUrl=a, ReceiptHandle=handle)
    with pytest.raises(ClientError) as err:
        sqs.delete_message(QueueUrl=a + "-gone", ReceiptHandle=handle)
    assert code(err) == "AWS.SimpleQueueService.NonExistentQueue"


def test_bodies_sqs_refuses_are_refused_and_batches_weigh_as_one_message(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    for body in ("a\x00b", "a\x01b", "a\ufffeb"):
        with pytest.raises(ClientError) as err:
            sqs.send_message(QueueUrl=url, MessageBody=body)
        assert code(err) == "InvalidMessageContents"
    out = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "ok", "MessageBody": "tab\tand é and 😀"},
        {"Id": "bad", "MessageBody": "bell\x07"}])
    assert [e["Id"] for e in out["Successful"]] == ["ok"]
    assert [(e["Id"], e["Code"]) for e in out["Failed"]] == [("bad", "InvalidMessageContents")]
    # Ten bodies of 200 KiB: each fits, together they are over 1 MiB.
    with pytest.raises(ClientError) as err:
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": "x" * (200 << 10)} for i in range(10)])
    assert code(err) == "AWS.SimpleQueueService.BatchRequestTooLong"
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["tab\tand é and 😀"]


def test_long_poll_is_answered_by_a_send(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    got = {}

    def poll():
        start = time.monotonic()
        got["reply"] = server.client().receive_message(QueueUrl=url, WaitTimeSeconds=20)
        got["elapsed"] = time.monotonic() - start

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    sqs.send_message(QueueUrl=url, MessageBody="wake up")
    poller.join(30)
    assert [m["Body"] for m in got["reply"]["Messages"]] == ["wake up"]
    # Woken by the send, not by the end of its 20 s wait.
    assert got["elapsed"] < 20


def test_fifo_groups_and_deduplication(sqs, name):
    fifo = name + ".fifo"
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=fifo)
    assert code(err) == "InvalidParameterValue"
    url = sqs.create_queue(QueueName=fifo, Attributes={"FifoQueue": "true"})["QueueUrl"]
    ids = {}
    for body, group, dedup in [("a1", "A", "d1"), ("a2", "A", "d2"), ("b1", "B", "d3")]:
        out = sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group,
                               MessageDeduplicationId=dedup)
        ids[body] = out["MessageId"]
        assert out["SequenceNumber"]
    # The same deduplication id again adds nothing and answers the same id.
    again = sqs.send_message(QueueUrl=url, MessageBody="a1 again", MessageGroupId="A",
                             MessageDeduplicationId="d1")
    assert again["MessageId"] == ids["a1"]
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d9")
    assert code(err) == "MissingParameter"
    # One message of a group at a time, in order.
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                              AttributeNames=["All"])["Messages"]
    assert sorted(m["Body"] for m in got) == ["a1", "b1"]
    first_a = next(m for m in got if m["Body"] == "a1")
    assert first_a["Attributes"]["MessageGroupId"] == "A"
    assert first_a["Attributes"]["MessageDeduplicationId"] == "d1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first_a["ReceiptHandle"])
    nxt = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in nxt] == ["a2"]


def test_message_attributes_round_trip(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attrs = {
        "lang": {"DataType": "String", "StringValue": "en"},
        "price": {"DataType": "Number", "StringValue": "12.50"},
        "count": {"DataType": "Number.int", "StringValue": "7"},
        "note": {"DataType": "String.label", "StringValue": "héllo wörld"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="with attributes", MessageAttributes=attrs)
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"][0]
    assert got["MessageAttributes"] == attrs
    assert got["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    # The command line sees them as headers.
    peeked = json.loads(server.spool("peek", name, "--state", "all", "--json").stdout.splitlines()[0])
    assert peeked["headers"]["lang"] == "en"
    assert peeked["headers"]["price"] == "12.50"
    # Only the attributes asked for, and their digest.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"], VisibilityTimeout=0)
    some = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["lang"])["Messages"][0]
    assert some["MessageAttributes"] == {"lang": attrs["lang"]}
    assert some["MD5OfMessageAttributes"] == md5_of_attributes({"lang": attrs["lang"]})
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="b", MessageAttributes={
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}})
    assert code(err) == "InvalidParameterValue"


def test_redrive_policy_then_replay(sqs, server, name):
    policy = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:eu-west-1:000000000000:{name}-dlq",
                         "maxReceiveCount": "2"})
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        m = sqs.receive_message(QueueUrl=url)["Messages"][0]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                                      VisibilityTimeout=0)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    dead = [json.loads(line) for line in
            server.spool("peek", name, "--state", "dead", "--json").stdout.splitlines()]
    assert [(str(d["id"]), d["body"]) for d in dead] == [(sent["MessageId"], "poison")]
    assert server.spool("replay", name, "--dead").stdout.strip() == "1"
    back = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"][0]
    assert back["MessageId"] == sent["MessageId"]
    assert back["Body"] == "poison"
    assert back["Attributes"]["ApproximateReceiveCount"] == "1"


def test_sqs_and_the_command_line_share_queues(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="from boto3",
                     MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    consumed = json.loads(server.spool("consume", name).stdout)
    assert consumed["body"] == "from boto3"
    assert consumed["headers"] == {"k": "v"}
    server.spool("ack", consumed["receipt"])
    server.spool("publish", name, "--raw", "--header", "source=cli", "from spool")
    server.spool("publish", name, '{"json": true}')
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                              MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in got] == ["from spool", '{"json": true}']
    assert got[0]["MessageAttributes"] == {"source": {"DataType": "String", "StringValue": "cli"}}
    assert got[0]["MD5OfBody"] == hashlib.md5(b"from spool").hexdigest()


def test_a_full_queue_answers_service_unavailable(server, name):
    sqs = server.client(retries=0)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    server.spool("queue", "set", name, "--max-length", "1")
    sqs.send_message(QueueUrl=url, MessageBody="fits")
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="does not fit")
    assert code(err) == "ServiceUnavailable"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    out = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "no room"}])
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in out["Failed"]] == [
        ("a", "ServiceUnavailable", False)]
