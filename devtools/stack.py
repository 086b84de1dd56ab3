"""The stack `make doctor`, `make smoke` and `make events` work on, and AWS's errors as sentences.

An environment's deployed stack: its name from samconfig.toml (devtools/deploy.py), its outputs and
parameters from CloudFormation, in the region and with the credentials boto3 finds (AWS_PROFILE,
AWS_DEFAULT_REGION or the profile's region). Or, with LOCAL=1, `make local-stack`: moto, the Gainsight
sandbox and the API on their known loopback ports, with dummy credentials, and the names the local
stack seeds in place of the stack's outputs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devtools import deploy
from devtools.local import EVENT_TABLE, PARAMS, environment
from devtools.local_stack import API_PORT, CONTAINER_HOST, HOST_CONFIG_PARAM, MOTO_PORT, SANDBOX_PORT

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": ""}
LOCAL_REGION = "us-east-1"


class OperatorError(Exception):
    """What stops an operator tool, said as one sentence naming what to do."""


@dataclass(frozen=True, slots=True)
class LocalStack:
    """`make local-stack`'s ports on this machine (tests run one on free ports)."""

    moto_port: int = MOTO_PORT
    sandbox_port: int = SANDBOX_PORT
    api_port: int = API_PORT

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def reachable_domain(self, domain: str) -> str:
        """The config's domain as this machine reaches it: the local stack's config names the
        sandbox as a Lambda container sees it (host.docker.internal), which is this machine."""
        return domain.replace(f"http://{CONTAINER_HOST}:", "http://127.0.0.1:")


@dataclass(frozen=True, slots=True)
class Deployed:
    """What a tool needs of a deployed (or local) stack."""

    name: str
    api_url: str
    event_table: str
    destination_config_param: str
    secure_strings: Mapping[str, str | None]  # access_key, write_keys, shared_secret (None: `none`)


# The SecureStrings of the local stack (make local-stack), by what they hold.
LOCAL_SECURE_STRINGS = {
    "access_key": PARAMS["ACCESS_KEY_PARAM"],
    "write_keys": PARAMS["WRITE_KEYS_PARAM"],
    "shared_secret": PARAMS["SHARED_SECRET_PARAM"],
}


def iso_time(value: str) -> float:
    """An ISO 8601 time given on the command line (2026-11-30T08:00:00Z), as epoch seconds."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a time such as 2026-11-30T08:00:00Z") from None


def add_arguments(parser: Any) -> None:
    """The options every operator tool takes: which environment, or the local stack and its ports."""
    parser.add_argument("--env", choices=deploy.ENVIRONMENTS, default="dev")
    parser.add_argument("--local", action="store_true", help="the local stack (make local-stack), not AWS")
    parser.add_argument("--moto-port", type=int, default=MOTO_PORT, help="with --local")
    parser.add_argument("--sandbox-port", type=int, default=SANDBOX_PORT, help="with --local")
    parser.add_argument("--api-port", type=int, default=API_PORT, help="with --local")


def local_of(args: Any) -> LocalStack | None:
    return LocalStack(args.moto_port, args.sandbox_port, args.api_port) if args.local else None


@contextmanager
def aws_for(local: LocalStack | None) -> Iterator[None]:
    """boto3 pointed at the local stack's moto with dummy credentials, or left as the user set it up."""
    if local is None:
        yield
        return
    values = LOCAL_CREDENTIALS | {"AWS_ENDPOINT_URL": local.endpoint, "AWS_DEFAULT_REGION": LOCAL_REGION}
    with environment(values, also=("AWS_PROFILE",)):
        os.environ.pop("AWS_PROFILE", None)  # a profile's own endpoint or credentials must not win
        yield


def client(service: str) -> Any:
    """A boto3 client with a short timeout and few retries: an operator waits for an answer. From a
    session of its own: the environment as it is now (LOCAL=1's), not as boto3 first found it."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    if not session.region_name:
        # Said now: botocore would otherwise probe the EC2 metadata service for one, and wait.
        from botocore.exceptions import NoRegionError

        raise NoRegionError()
    config = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2})
    return session.client(service, config=config)  # type: ignore[call-overload]


def deployed(env: str, local: LocalStack | None) -> Deployed:
    """The stack's outputs and the SecureStrings it reads.

    Raises:
        OperatorError: the stack does not exist, or AWS could not be asked.
    """
    if local is not None:
        return Deployed(
            name="the local stack",
            api_url=f"http://127.0.0.1:{local.api_port}",
            event_table=EVENT_TABLE,
            destination_config_param=HOST_CONFIG_PARAM,
            secure_strings=dict(LOCAL_SECURE_STRINGS),
        )
    name = deploy.stack_name(env)
    try:
        description = deploy.describe_stack(client("cloudformation"), name)
    except deploy.DeployError as error:
        raise OperatorError(str(error)) from None
    except Exception as error:
        raise OperatorError(aws_sentence(error, f"reading the stack {name}")) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])}
    missing = [key for key in ("ApiUrl", "EventTableName", "DestinationConfigParameterName") if key not in outputs]
    if missing:
        status = description.get("StackStatus", "")
        raise OperatorError(f"the stack {name} ({status}) has no output {', '.join(missing)}: deploy it (make deploy)")
    return Deployed(
        name=name,
        api_url=outputs["ApiUrl"],
        event_table=outputs["EventTableName"],
        destination_config_param=outputs["DestinationConfigParameterName"],
        secure_strings=deploy.secure_string_names(name, parameters),
    )


def aws_sentence(error: BaseException, doing: str, *, local: LocalStack | None = None) -> str:
    """What went wrong `doing` something in AWS, as a sentence naming what to set or fix."""
    from botocore import exceptions

    if isinstance(error, exceptions.NoRegionError):
        return (
            f"{doing}: no AWS region: set AWS_DEFAULT_REGION (export AWS_DEFAULT_REGION=eu-west-1) or your "
            "profile's region (aws configure set region eu-west-1 --profile <name>)"
        )
    if isinstance(error, exceptions.ProfileNotFound):
        profile = os.environ.get("AWS_PROFILE", "")
        return (
            f"{doing}: the AWS profile {profile!r} is not configured: "
            "set AWS_PROFILE to one listed by aws configure list-profiles"
        )
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return (
            f"{doing}: no AWS credentials: set AWS_PROFILE to a configured profile (aws configure, or aws sso "
            "login --profile <name>), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(error, exceptions.SSOError | exceptions.TokenRetrievalError):
        return f"{doing}: the AWS SSO session has expired: aws sso login --profile <name>"
    if isinstance(error, exceptions.EndpointConnectionError | exceptions.ConnectTimeoutError):
        if local is not None:
            return f"{doing}: the local stack does not answer at {local.endpoint}: start it with make local-stack"
        return f"{doing}: AWS could not be reached ({type(error).__name__}): check the network and the region"
    code = _code(error)
    if code is None:
        return f"{doing}: {type(error).__name__}"
    if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        return f"{doing}: your AWS credentials have expired ({code}): renew them (aws sso login, or new keys)"
    if code in ("UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure"):
        return f"{doing}: AWS did not accept your credentials ({code}): check AWS_PROFILE or AWS_ACCESS_KEY_ID"
    if code.startswith("AccessDenied") or code == "UnauthorizedOperation":
        return f"{doing}: AWS denied it ({code}): your credentials need that permission"
    return f"{doing}: AWS refused it ({code})"


def _code(error: BaseException) -> str | None:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
