"""Shared fixtures: one moto SSM server and one Gainsight sandbox per session, both on loopback;
every test starts from an empty sandbox, freshly seeded parameters and cleared caches."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator

import pytest

from devtools.gainsight_sandbox import Sandbox
from devtools.local import EVENT_TABLE, LOCAL_ENV, LocalAws, moto_aws, seed_parameters, use_handler_path

# Powertools reads these when the handler modules are imported, before any fixture runs.
for _name in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
    os.environ.setdefault(_name, LOCAL_ENV[_name])
use_handler_path()

import ingest  # noqa: E402
import parameters_store  # noqa: E402
from observability import metrics  # noqa: E402
from settings import settings  # noqa: E402


@pytest.fixture(scope="session")
def aws() -> Iterator[LocalAws]:
    """moto on loopback: SSM and the event store table."""
    with moto_aws() as local:
        yield local


def empty_aws() -> None:
    import boto3

    dynamodb = boto3.client("dynamodb")
    for item in dynamodb.scan(TableName=EVENT_TABLE, ProjectionExpression="pk, sk")["Items"]:
        dynamodb.delete_item(TableName=EVENT_TABLE, Key=item)


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[Sandbox]:
    with Sandbox() as server:
        yield server


def clear_caches() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    settings.cache_clear()
    parameters_store._destination.cache_clear()
    metrics.clear_metrics()
    if ingest._container is not None:
        ingest._container.executor.shutdown(wait=False)
        ingest._container = None  # a fresh container: no company Gsids remembered


@pytest.fixture
def sandbox(sandbox_server: Sandbox, aws: LocalAws) -> Iterator[Sandbox]:
    """The Gainsight sandbox, empty, with the demo destination config pointing at it, and an empty
    event store."""
    sandbox_server.state.reset()
    empty_aws()
    seed_parameters(sandbox_server.url)
    clear_caches()
    yield sandbox_server
    clear_caches()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test, formatted as in CloudWatch."""
    from observability import logger

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    yield stream
    logger._logger.removeHandler(handler)
