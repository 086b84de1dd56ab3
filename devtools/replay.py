"""Replay the dead-letter queue into the retry queue once the cause is fixed.

    python -m devtools.replay --stack gainsight-destination --dry-run   # count what is there (moves nothing)
    python -m devtools.replay --stack gainsight-destination             # move it back, in order

Messages keep their message group (their person), so each person's events are replayed in the
order they were parked; the retry consumer then delivers them oldest first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any

RECEIVE_BATCH = 10


def queue_urls(cloudformation: Any, stack: str) -> tuple[str, str]:
    """The retry queue and dead-letter queue URLs from the stack's outputs."""
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]
    by_key = {output["OutputKey"]: output["OutputValue"] for output in outputs}
    return by_key["RetryQueueUrl"], by_key["DeadLetterQueueUrl"]


def _kind(body: str) -> str:
    try:
        event = json.loads(body)["event"]
        return str(event.get("type") or "unknown").lower()
    except (KeyError, TypeError, ValueError, AttributeError):
        return "unreadable"


def waiting(sqs: Any, queue_url: str) -> int:
    """Messages in a queue, visible or in flight (SQS's approximate count)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def replay(sqs: Any, dead_letter_url: str, queue_url: str) -> Counter[str]:
    """Move every dead-lettered message back to the retry queue, each group's in order; counts by type.

    Raises:
        RuntimeError: when the retry queue refuses messages; those stay in the dead-letter queue.
    """
    counts: Counter[str] = Counter()
    suffix = f"-replay-{int(time.time())}"  # a new deduplication id, or SQS may drop the replay
    while messages := sqs.receive_message(
        QueueUrl=dead_letter_url,
        MaxNumberOfMessages=RECEIVE_BATCH,
        AttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        VisibilityTimeout=60,
        WaitTimeSeconds=1,
    ).get("Messages", []):
        entries = [
            {
                "Id": str(n),
                "MessageBody": m["Body"],
                "MessageGroupId": m["Attributes"]["MessageGroupId"],
                "MessageDeduplicationId": (m["Attributes"]["MessageDeduplicationId"] + suffix)[-128:],
            }
            for n, m in enumerate(messages)
        ]
        reply = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = {entry["Id"] for entry in reply.get("Successful", [])}
        if sent:
            sqs.delete_message_batch(
                QueueUrl=dead_letter_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                    if str(n) in sent
                ],
            )
        counts.update(_kind(m["Body"]) for n, m in enumerate(messages) if str(n) in sent)
        if len(sent) < len(messages):
            raise RuntimeError(f"the retry queue refused {len(messages) - len(sent)} messages; they stay dead-lettered")
    return counts


def main(argv: list[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help="read both queue URLs from this stack's outputs")
    parser.add_argument("--dead-letter-url")
    parser.add_argument("--queue-url")
    parser.add_argument("--dry-run", action="store_true", help="only count the dead-lettered events")
    args = parser.parse_args(argv)
    if args.stack:
        queue_url, dead_letter_url = queue_urls(boto3.client("cloudformation"), args.stack)
    elif args.queue_url and args.dead_letter_url:
        queue_url, dead_letter_url = args.queue_url, args.dead_letter_url
    else:
        parser.error("give --stack, or both --queue-url and --dead-letter-url")
    sqs = boto3.client("sqs")
    if args.dry_run:
        print(f"{waiting(sqs, dead_letter_url)} events in the dead-letter queue; nothing moved")
        return 0
    counts = replay(sqs, dead_letter_url, queue_url)
    detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "nothing"
    print(f"replayed {sum(counts.values())} events ({detail}); {waiting(sqs, dead_letter_url)} left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
