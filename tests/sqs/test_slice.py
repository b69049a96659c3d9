"""Queues and messages through boto3: the basic round trip."""

import hashlib


def test_send_receive_delete(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/{name}"
    sent = sqs.send_message(QueueUrl=url, MessageBody="hello\nworld")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello\nworld").hexdigest()
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["hello\nworld"]
    assert got[0]["MessageId"] == sent["MessageId"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
