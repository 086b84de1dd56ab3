"""A parameter that cannot be read names why: not found, access denied, KMS, throttled. The
errors come from moto, or from botocore itself answering for SSM (a before-call hook on the very
client Powertools uses), so they travel Powertools' real error path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

import parameters_store
from devtools.gainsight_sandbox import Sandbox
from errors import ConfigurationError
from settings import settings
from tests.helpers import identify, post


@pytest.fixture
def ssm_answers(sandbox: Sandbox) -> Callable[[str, str], None]:
    """Make SSM answer GetParameter for one parameter with an AWS error code."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    provider = SSMProvider()
    DEFAULT_PROVIDERS["ssm"] = provider  # the provider get_parameter uses; the sandbox fixture clears it

    def answer(name: str, code: str) -> None:
        def refuse(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            if json.loads(params["body"]).get("Name") != name:  # SSM speaks JSON: the body is serialized
                return None
            parsed = {"Error": {"Code": code, "Message": f"{code} for {name}"}, "ResponseMetadata": {}}
            return AWSResponse("https://ssm.us-east-1.amazonaws.com/", 400, {}, None), parsed

        provider.client.meta.events.register("before-call.ssm.GetParameter", refuse)

    return answer


def _read_error() -> str:
    with pytest.raises(ConfigurationError) as raised:
        parameters_store.destination(settings())
    return raised.value.message


def test_a_missing_parameter_is_named_not_found(sandbox: Sandbox, monkeypatch) -> None:
    # Given the config parameter does not exist (moto answers ParameterNotFound)
    monkeypatch.setenv("DESTINATION_CONFIG_PARAM", "/does/not/exist")
    # When an event arrives
    reply = post("/v1/identify", identify())
    # Then it is kept, and the reason says the parameter is not there
    assert reply.outcomes == ["deferred"]
    assert reply.body["results"][0]["error"] == (
        "queued for retry: SSM parameter /does/not/exist could not be read: not found (ParameterNotFound)"
    )


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("AccessDeniedException", "access denied (AccessDeniedException)"),
        ("InvalidKeyId", "its KMS key cannot be used (InvalidKeyId)"),
        ("KMSAccessDeniedException", "its KMS key cannot be used (KMSAccessDeniedException)"),
        ("KMS.DisabledException", "its KMS key cannot be used (KMS.DisabledException)"),
        ("ThrottlingException", "throttled (ThrottlingException)"),
        ("SomethingNew", "refused (SomethingNew)"),
    ],
)
def test_an_unreadable_parameter_names_the_cause(ssm_answers, code, cause) -> None:
    # Given SSM refuses to hand over the access key
    access_key_param = settings().access_key_param
    ssm_answers(access_key_param, code)
    # When the destination is read
    # Then the error names the parameter and the cause, never "(NoneType)"
    assert _read_error() == f"SSM parameter {access_key_param} could not be read: {cause}"


def test_access_denied_through_lambda_handler(ssm_answers) -> None:
    ssm_answers(settings().destination_config_param, "AccessDeniedException")
    reply = post("/v1/identify", identify())
    assert reply.outcomes == ["deferred"]
    assert reply.body["results"][0]["error"].endswith("could not be read: access denied (AccessDeniedException)")


def test_ssm_out_of_reach_is_named(sandbox: Sandbox, monkeypatch) -> None:
    # Given SSM's endpoint does not answer (nothing listens on port 1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    # Then the cause is the connection, not "(NoneType)"
    assert _read_error().endswith("could not be read: the request to SSM failed (EndpointConnectionError)")


def test_the_code_is_read_from_the_message_when_the_error_is_out_of_reach() -> None:
    # Given a GetParameterError raised from outside any `except` (no __cause__, no __context__)
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    error = GetParameterError("An error occurred (ParameterNotFound) when calling the GetParameter operation: ")
    # Then the cause still comes from botocore's text, and anything else is said to be unknown
    assert parameters_store.read_failure(error) == "not found (ParameterNotFound)"
    assert parameters_store.read_failure(GetParameterError("boom")) == "unknown cause"
