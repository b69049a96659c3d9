"""Queue actions through boto3: create, get, list, attributes, purge, delete."""

import json

import pytest
from botocore.exceptions import ClientError


def code(err):
    return err.value.response["Error"]["Code"]


def test_create_get_list_delete(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/{name}"
    # Again with no attributes, or the same ones: the same queue.
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"] == url
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    other = sqs.create_queue(QueueName=name + "-b")["QueueUrl"]
    listed = sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    assert listed == [url, other]
    page = sqs.list_queues(QueueNamePrefix=name, MaxResults=1)
    assert page["QueueUrls"] == [url]
    assert sqs.list_queues(QueueNamePrefix=name, MaxResults=1,
                           NextToken=page["NextToken"])["QueueUrls"] == [other]
    # A token this server did not hand out is refused, not used as a place.
    with pytest.raises(ClientError) as err:
        sqs.list_queues(QueueNamePrefix=name, MaxResults=1, NextToken=name)
    assert code(err) == "InvalidParameterValue"
    # The queue is spool's: the command line sees it.
    assert name in server.spool("queue", "list", "--json").stdout
    sqs.delete_queue(QueueUrl=other)
    assert sqs.list_queues(QueueNamePrefix=name)["QueueUrls"] == [url]
    with pytest.raises(ClientError) as err:
        sqs.get_queue_url(QueueName=name + "-b")
    assert code(err) == "AWS.SimpleQueueService.NonExistentQueue"
    assert isinstance(err.value, sqs.exceptions.QueueDoesNotExist)


def test_create_with_other_attributes_is_refused(sqs, name):
    sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "40"})
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "50"})
    assert code(err) == "QueueAlreadyExists"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_spool_topics_name_is_refused_saying_so(sqs, server, name):
    server.spool("subscribe", name, name + "-sub")
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=name)
    assert code(err) == "QueueAlreadyExists"
    assert "is the name of a spool topic" in err.value.response["Error"]["Message"]


def test_bad_names_and_attributes_are_refused(sqs, name):
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName="no spaces")
    assert code(err) == "InvalidParameterValue"
    for attrs in ({"Policy": "{}"}, {"DelaySeconds": "5"}, {"ContentBasedDeduplication": "true"}):
        with pytest.raises(ClientError) as err:
            sqs.create_queue(QueueName=name, Attributes=attrs)
        assert code(err) == "InvalidAttributeName", attrs
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "99999"})
    assert code(err) == "InvalidAttributeValue"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    with pytest.raises(ClientError) as err:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nonsense"])
    assert code(err) == "InvalidAttributeName"


def test_attributes_map_onto_settings_and_counts(sqs, server, name):
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": "45", "MessageRetentionPeriod": "7200"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=600)
    sqs.receive_message(QueueUrl=url)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "2"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attrs["VisibilityTimeout"] == "45"
    assert attrs["MessageRetentionPeriod"] == "7200"
    assert attrs["QueueArn"] == f"arn:aws:sqs:eu-west-1:000000000000:{name}"
    assert "RedrivePolicy" not in attrs
    shown = json.loads(server.spool("queue", "show", name, "--json").stdout)
    assert shown["visibility_ms"] == 45000
    assert shown["max_attempts"] == 0
    assert shown["ttl_ms"] == 7_200_000
    # SetQueueAttributes is `queue set`.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={
        "VisibilityTimeout": "60",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": "arn:aws:sqs:eu-west-1:000000000000:dlq",
                                     "maxReceiveCount": 4})})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"])
    assert attrs["Attributes"]["VisibilityTimeout"] == "60"
    assert json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 4
    # PurgeQueue removes ready, delayed and leased messages.
    sqs.purge_queue(QueueUrl=url)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert [attrs[k] for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                               "ApproximateNumberOfMessagesDelayed")] == ["0", "0", "0"]


def test_delete_queue_removes_its_messages(sqs, server, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.delete_queue(QueueUrl=url)
    assert server.spool("peek", name, check=False).returncode == 3
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")
