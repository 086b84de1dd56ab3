"""Local moto behaves as DynamoDB does where our guarantees depend on it: a transaction is all or
nothing. (devtools.local undoes a failed one item by item instead of by moto's copy of the whole
table, which also wiped what other requests wrote meanwhile and made moto the bottleneck of a load.)"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devtools.local import EVENT_TABLE, LocalAws


def _key(sk: str) -> dict[str, Any]:
    return {"pk": {"S": "moto-test"}, "sk": {"S": sk}}


def _value(dynamodb: Any, sk: str) -> str | None:
    item = dynamodb.get_item(TableName=EVENT_TABLE, Key=_key(sk), ConsistentRead=True).get("Item")
    return item["v"]["S"] if item else None


def test_a_failed_transaction_stores_nothing_of_itself_and_a_successful_one_all_of_it(aws: LocalAws) -> None:
    dynamodb = boto3.client("dynamodb")
    # Given an item the transaction updates, and one it does not touch
    dynamodb.put_item(TableName=EVENT_TABLE, Item=_key("updated") | {"v": {"S": "before"}})
    dynamodb.put_item(TableName=EVENT_TABLE, Item=_key("untouched") | {"v": {"S": "kept"}})

    # When a transaction puts one item and updates another, then fails its last condition
    with pytest.raises(ClientError) as failed:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": EVENT_TABLE, "Item": _key("new") | {"v": {"S": "new"}}}},
                {"Update": {"TableName": EVENT_TABLE, "Key": _key("updated"), "UpdateExpression": "SET v = :v",
                            "ExpressionAttributeValues": {":v": {"S": "after"}}}},
                {"ConditionCheck": {"TableName": EVENT_TABLE, "Key": _key("absent"),
                                    "ConditionExpression": "attribute_exists(pk)"}},
            ]
        )  # fmt: skip

    # Then it is cancelled: nothing of it is stored, and what it did not touch is as it was
    assert failed.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _value(dynamodb, "new") is None
    assert _value(dynamodb, "updated") == "before"
    assert _value(dynamodb, "untouched") == "kept"

    # and a transaction that succeeds writes all of it
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": EVENT_TABLE, "Item": _key("new") | {"v": {"S": "new"}}}},
            {"Delete": {"TableName": EVENT_TABLE, "Key": _key("untouched")}},
        ]
    )
    assert (_value(dynamodb, "new"), _value(dynamodb, "untouched")) == ("new", None)
