"""Replay the dead-letter queue into the retry queue once the cause is fixed.

    python -m devtools.replay --stack gainsight-destination --dry-run   # count what is there
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


def replay(sqs: Any, dead_letter_url: str, queue_url: str, *, dry_run: bool) -> Counter[str]:
    """Move every dead-lettered message back to the retry queue (or only count them); counts by type."""
    counts: Counter[str] = Counter()
    held: list[str] = []
    suffix = f"-replay-{int(time.time())}"  # a new deduplication id, or SQS may drop the replay
    while messages := sqs.receive_message(
        QueueUrl=dead_letter_url,
        MaxNumberOfMessages=RECEIVE_BATCH,
        AttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        VisibilityTimeout=60,
    ).get("Messages", []):
        counts.update(_kind(m["Body"]) for m in messages)
        if dry_run:
            held += [m["ReceiptHandle"] for m in messages]
            continue
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
        if reply.get("Failed"):
            raise RuntimeError(f"the retry queue refused {len(reply['Failed'])} messages; nothing of them was removed")
        sqs.delete_message_batch(
            QueueUrl=dead_letter_url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
        )
    for start in range(0, len(held), RECEIVE_BATCH):  # a dry run leaves every message where it was
        sqs.change_message_visibility_batch(
            QueueUrl=dead_letter_url,
            Entries=[{"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                     for n, h in enumerate(held[start : start + RECEIVE_BATCH])],
        )  # fmt: skip
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
    counts = replay(boto3.client("sqs"), dead_letter_url, queue_url, dry_run=args.dry_run)
    verb = "would replay" if args.dry_run else "replayed"
    detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(counts.items())) or "nothing"
    print(f"{verb} {sum(counts.values())} events ({detail})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
