"""The local stack: a moto SSM server seeded with demo settings, the Gainsight sandbox, and a
Docker-free way to invoke the handler with API Gateway events as `sam local invoke` would."""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "handler"

DEMO_WRITE_KEY = "demo-write-key"
PARAMS = {
    "DESTINATION_CONFIG_PARAM": "/gainsight-destination/local/config",
    "ACCESS_KEY_PARAM": "/gainsight-destination/local/access-key",
    "SHARED_SECRET_PARAM": "/gainsight-destination/local/shared-secret",
    "WRITE_KEYS_PARAM": "/gainsight-destination/local/write-keys",
}
DEMO_EVENT_NAMES = [{"from": "Ticket Closed", "to": "ticket_closed"}, {"from": "Feature Used", "to": "feature_used"}]
DEMO_EVENT_VERSIONS = [{"from": "Ticket Closed", "to": "1.0"}, {"from": "Feature Used", "to": "2.1"}]


def demo_config(domain: str) -> dict[str, Any]:
    """RudderStack-style destination config pointing at the sandbox."""
    return {
        "domain": domain,
        "tenantId": "sandbox-tenant",
        "topicName": "product_usage",
        "contractId": "default-contract",
        "eventNameMap": DEMO_EVENT_NAMES,
        "eventVersionMap": DEMO_EVENT_VERSIONS,
        "personMap": [{"from": "plan", "to": "Plan__gc"}],
        "companyMap": [{"from": "region", "to": "Region__gc"}],
    }


def use_handler_path() -> None:
    """Put handler/ first on sys.path, as Lambda does with CodeUri: handler/."""
    if str(HANDLER) not in sys.path:
        sys.path.insert(0, str(HANDLER))


@dataclass
class LambdaContext:
    """The attributes of a Lambda context that Powertools and the handler read."""

    function_name: str = "gainsight-destination-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:gainsight-destination-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_seconds: float = 30.0
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def api_event(
    path: str,
    body: str | bytes | dict | None,
    *,
    write_key: str | None = DEMO_WRITE_KEY,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    base64_body: bool = False,
    http_api: bool = False,
) -> dict[str, Any]:
    """An API Gateway proxy event (REST payload 1.0, or HTTP API payload 2.0)."""
    all_headers = {"Content-Type": "application/json"}
    if write_key is not None:
        all_headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    all_headers.update(headers or {})
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    text: str | None
    if isinstance(raw, bytes) and (base64_body or not _is_text(raw)):
        text, encoded = base64.b64encode(raw).decode(), True
    else:
        text, encoded = (raw.decode() if isinstance(raw, bytes) else raw), False
    request_id = str(uuid.uuid4())
    if http_api:
        return {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {k.lower(): v for k, v in all_headers.items()},
            "requestContext": {"requestId": request_id, "http": {"method": method, "path": path}, "stage": "$default"},
            "body": text,
            "isBase64Encoded": encoded,
        }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "requestContext": {"requestId": request_id, "resourcePath": path, "httpMethod": method, "stage": "v1"},
        "body": text,
        "isBase64Encoded": encoded,
    }


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def invoke(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """Call the real lambda_handler in-process, as `sam local invoke -e event.json` would."""
    use_handler_path()
    from app import lambda_handler

    # Two functions in AWS: anything keyed on the function's name must not be shared by accident.
    os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "gainsight-destination-api"
    return lambda_handler(event, context or LambdaContext())


def seed_parameters(
    domain: str,
    *,
    write_keys: str = DEMO_WRITE_KEY,
    access_key: str = "sandbox-access-key",
    shared_secret: str | None = "sandbox-shared-secret",
    config: dict[str, Any] | None = None,
) -> None:
    """Write the demo parameters into whatever SSM the environment points at (moto here)."""
    import boto3

    ssm = boto3.client("ssm")
    values = {
        "DESTINATION_CONFIG_PARAM": ("String", json.dumps(config or demo_config(domain))),
        "ACCESS_KEY_PARAM": ("SecureString", access_key),
        "WRITE_KEYS_PARAM": ("SecureString", write_keys),
    }
    if shared_secret is not None:
        values["SHARED_SECRET_PARAM"] = ("SecureString", shared_secret)
    for env_name, (kind, value) in values.items():
        ssm.put_parameter(Name=PARAMS[env_name], Type=kind, Value=value, Overwrite=True)


RETRY_QUEUE = "gainsight-destination-retry.fifo"
DEAD_LETTER_QUEUE = "gainsight-destination-dlq.fifo"
BARRIER_TABLE = "gainsight-destination-barriers"
IDEMPOTENCY_TABLE = "gainsight-destination-idempotency"
LOCAL_MAX_RECEIVES = 3


def create_resources(*, max_receives: int = LOCAL_MAX_RECEIVES) -> dict[str, str]:
    """The retry queue, its dead-letter queue and the two tables, as template.yaml declares them."""
    import boto3

    sqs: Any = boto3.client("sqs")
    dynamodb: Any = boto3.client("dynamodb")
    fifo = {"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE, Attributes=fifo)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    queue_url = sqs.create_queue(QueueName=RETRY_QUEUE, Attributes=fifo | {"RedrivePolicy": redrive})["QueueUrl"]
    for table, key in ((BARRIER_TABLE, "person"), (IDEMPOTENCY_TABLE, "id")):
        if table not in dynamodb.list_tables()["TableNames"]:
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
    os.environ.update(
        {"RETRY_QUEUE_URL": queue_url, "BARRIER_TABLE": BARRIER_TABLE, "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE}
    )
    return {"queue": queue_url, "dlq": dlq_url}


def sqs_records(messages: list[dict[str, Any]], queue_arn: str) -> list[dict[str, Any]]:
    """Messages from ReceiveMessage as the SQS trigger hands them to Lambda."""
    return [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]


def drain(queue_url: str, *, rounds: int = 50) -> dict[str, int]:
    """Run the retry consumer as the SQS trigger would, until the queue is empty.

    Failed messages are made visible again at once (AWS waits for the visibility timeout), so a
    message that keeps failing reaches the dead-letter queue after its maximum receives.
    """
    import boto3

    use_handler_path()
    from retry_app import lambda_handler as retry_handler

    sqs: Any = boto3.client("sqs")
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    counts = {"invocations": 0, "acknowledged": 0, "retried": 0}
    for _ in range(rounds):
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=30
        ).get("Messages", [])
        if not messages:
            break
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "gainsight-destination-retry"
        context = LambdaContext(function_name="gainsight-destination-retry", timeout_seconds=60)
        response = retry_handler({"Records": sqs_records(messages, arn)}, context)
        counts["invocations"] += 1
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                counts["retried"] += 1
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                counts["acknowledged"] += 1
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return counts


LOCAL_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "gainsight-destination",
    "POWERTOOLS_METRICS_NAMESPACE": "GainsightDestination",
    **PARAMS,
}


@dataclass(frozen=True)
class LocalAws:
    endpoint: str
    queue: str
    dlq: str


@contextmanager
def moto_aws() -> Iterator[LocalAws]:
    """A moto server on loopback for SSM, SQS and DynamoDB; AWS_ENDPOINT_URL points boto3 at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    names = [
        *LOCAL_ENV,
        "AWS_ENDPOINT_URL",
        "RETRY_QUEUE_URL",
        "BARRIER_TABLE",
        "IDEMPOTENCY_TABLE",
        "AWS_LAMBDA_FUNCTION_NAME",
    ]
    previous = {key: os.environ.get(key) for key in names}
    os.environ.update(LOCAL_ENV)
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        queues = create_resources()
        yield LocalAws(endpoint, queues["queue"], queues["dlq"])
    finally:
        server.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
