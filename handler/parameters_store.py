"""SSM Parameter Store at the edge: write keys and the destination, cached by Powertools."""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

from config import Destination, parse_destination
from errors import ConfigurationError
from settings import Settings

# What an operator must fix, by the AWS error code behind a failed read.
_CAUSES = {
    "ParameterNotFound": "not found",
    "ParameterVersionNotFound": "not found",
    "AccessDeniedException": "access denied",
    "AccessDenied": "access denied",
    "UnrecognizedClientException": "credentials not accepted",
    "ExpiredTokenException": "credentials expired",
    "InvalidKeyId": "its KMS key cannot be used",
    "ThrottlingException": "throttled",
    "TooManyRequestsException": "throttled",
    "InternalServerError": "SSM failed",
}
# botocore's ClientError text, for when the error itself is out of reach: "An error occurred (Code) when ..."
_CODE_IN_MESSAGE = re.compile(r"An error occurred \(([\w.]+)\)")


def read_failure(error: BaseException) -> str:
    """Why a parameter read failed, e.g. "not found (ParameterNotFound)", from the botocore error
    behind it. Powertools re-raises every error as a GetParameterError inside its `except`, so the
    original sits in __context__ (not __cause__), or only in the message."""
    seen: set[int] = set()
    current: BaseException | None = error
    code = None
    while current is not None and id(current) not in seen and code is None:
        seen.add(id(current))
        response = getattr(current, "response", None)  # botocore's ClientError
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
        current = current.__cause__ or current.__context__
    if code is None and (match := _CODE_IN_MESSAGE.search(str(error))):
        code = match.group(1)
    if code is None:  # not an AWS answer at all: no route to SSM, no credentials, a timeout
        behind = error.__cause__ or error.__context__
        return f"the request to SSM failed ({type(behind).__name__})" if behind is not None else "unknown cause"
    if code.startswith("KMS") or code.startswith("Kms"):
        return f"its KMS key cannot be used ({code})"
    return f"{_CAUSES.get(code, 'refused')} ({code})"


def _get(name: str, *, secure: bool) -> str:
    # Imported here: Parameters pulls in boto3, which a /health call never needs.
    from aws_lambda_powertools.utilities import parameters

    try:
        # max_age comes from POWERTOOLS_PARAMETERS_MAX_AGE (default 300 s).
        value = parameters.get_parameter(name, decrypt=secure)
    except parameters.exceptions.GetParameterError as error:
        raise ConfigurationError(f"SSM parameter {name} could not be read: {read_failure(error)}") from error
    return str(value)


def write_keys(settings: Settings) -> frozenset[str]:
    """The accepted sender write keys (comma-separated in one SecureString)."""
    raw = _get(settings.write_keys_param, secure=True)
    keys = frozenset(key.strip() for key in raw.split(",") if key.strip())
    if not keys:
        raise ConfigurationError(f"SSM parameter {settings.write_keys_param} holds no write key")
    return keys


@lru_cache(maxsize=4)
def _destination(
    raw: str,
    access_key: str,
    shared_secret: str | None,
    allowed_hosts: frozenset[str],
    allow_loopback: bool,
    *,
    secret_problem: str | None,
) -> Destination:
    parsed = parse_destination(
        raw, access_key, shared_secret, allowed_hosts=allowed_hosts, allow_loopback=allow_loopback
    )
    return dataclasses.replace(parsed, secret_problem=secret_problem) if secret_problem else parsed


def destination(settings: Settings) -> Destination:
    """The validated destination; re-parsed only when a parameter's value changes.

    Raises:
        ConfigurationError: naming the parameter or config key that is wrong.
    """
    shared_secret, problem = None, None
    if settings.shared_secret_param:
        try:
            shared_secret = _get(settings.shared_secret_param, secure=True)
        except ConfigurationError as error:  # only the events that need it wait for it
            problem = error.message
    return _destination(
        _get(settings.destination_config_param, secure=False),
        _get(settings.access_key_param, secure=True),
        shared_secret,
        settings.gainsight_allowed_hosts,
        settings.allow_loopback_gainsight,
        secret_problem=problem,
    )
