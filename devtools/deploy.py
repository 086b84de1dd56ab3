"""`make deploy`, `make delete`, `make logs`: the SAM CLI for one environment of samconfig.toml.

    python -m devtools.deploy deploy --env dev [--config config/destination.json] [--dry-run]
                                     [--alarm-email ops@example.com] [--allowed-hosts cs.acme.example]
    python -m devtools.deploy delete --env prod [--dry-run]
    python -m devtools.deploy logs --env dev [--tail] [--dry-run]

`deploy` reads the destination config from a JSON file, validates it with the handler's own parser
(handler/config.py) and passes it to `sam deploy --parameter-overrides DestinationConfig=<json>` in
the one form SAM's parser gives back unchanged (see `sam_parameter`). An argv list, never a shell:
nothing is quoted twice.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devtools.local import ROOT, use_handler_path

ENVIRONMENTS = ("dev", "prod")
DEFAULT_CONFIG = ROOT / "config" / "destination.json"
SAMCONFIG = ROOT / "samconfig.toml"
FUNCTIONS = ("DestinationFunction", "DrainFunction")
# A CloudFormation parameter value holds at most 4,096 bytes; so does a standard SSM String.
MAX_CONFIG_BYTES = 4096
# The template's AlarmEmail pattern, checked here so that a typo fails before the build and upload.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# The SecureStrings the stack reads: (what it holds, the template parameter naming it, its default name's tail).
SECURE_STRINGS = (
    ("access_key", "AccessKeyParamName", "access-key"),
    ("write_keys", "WriteKeysParamName", "write-keys"),
    ("shared_secret", "SharedSecretParamName", "shared-secret"),
)


class DeployError(Exception):
    """What is wrong with the command or its input, said so that the user can fix it."""


def stack_name(env: str) -> str:
    """The stack samconfig.toml names for `env`."""
    return str(_samconfig(env, "global").get("stack_name") or f"gainsight-destination-{env}")


def _samconfig(env: str, command: str) -> dict[str, object]:
    config = tomllib.loads(SAMCONFIG.read_text())
    section = config.get(env, {}).get(command, {}).get("parameters", {})
    return dict(section)


def read_destination_config(path: Path, *, allowed_hosts: str = "") -> str:
    """The destination config in `path`, validated as the function will parse it, as compact JSON.

    Raises:
        DeployError: the file is missing, is not JSON, is too long, or the handler's parser refuses it.
    """
    if not path.is_file():
        example = ROOT / "config" / "destination.example.json"
        raise DeployError(f"{path} not found: copy {example.relative_to(ROOT)} to it and edit it")
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise DeployError(f"{path} is not valid JSON: {error}") from None
    use_handler_path()
    from config import parse_destination
    from errors import ConfigurationError
    from settings import parse_settings

    try:
        hosts = parse_settings(
            {"DESTINATION_CONFIG_PARAM": "-", "ACCESS_KEY_PARAM": "-", "WRITE_KEYS_PARAM": "-", "EVENT_TABLE": "-"}
            | {"GAINSIGHT_ALLOWED_HOSTS": allowed_hosts}
        ).gainsight_allowed_hosts
        # Dummy secrets: only the keys and the domain are checked here; the real ones stay in SSM.
        compact = json.dumps(config, separators=(",", ":"), ensure_ascii=True)
        parse_destination(compact, "validation-only", "validation-only", allowed_hosts=hosts)
    except ConfigurationError as error:
        raise DeployError(f"{path}: {error}") from None
    if len(compact.encode()) > MAX_CONFIG_BYTES:
        raise DeployError(f"{path} is {len(compact.encode())} bytes as compact JSON; CloudFormation takes 4096")
    return compact


def sam_parameter(key: str, value: str) -> str:
    """`Key="value"` as SAM CLI's --parameter-overrides parser reads it back to exactly `value`.

    SAM splits overrides on spaces unless a value is in double quotes, and then turns `\\"`, `\\'`
    and `\\ ` into `"`, `'` and a space (samcli/cli/types.py, CfnParameterOverridesType). So the
    value is quoted, its quotes escaped, and — for JSON — every backslash in it is one of JSON's own
    escapes that SAM leaves alone: a backslash or quote inside a JSON string is spelt \\u005c or \\u0022.
    """
    if _is_json(value):
        value = re.sub(r"\\(.)", lambda m: {"\\": r"\u005c", '"': r"\u0022"}.get(m[1], m[0]), value)
    elif "\\" in value:
        raise DeployError(f"{key}: a backslash cannot be passed through SAM's parameter overrides")
    return f'{key}="{value.replace(chr(34), chr(92) + chr(34))}"'


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return value.lstrip().startswith(("{", "["))


def _parameter_overrides(env: str) -> list[str]:
    """The environment's parameter_overrides from samconfig.toml; a command-line list replaces them."""
    configured = _samconfig(env, "deploy").get("parameter_overrides") or []
    items = [configured] if isinstance(configured, str) else list(configured)  # type: ignore[call-overload]
    if any(str(item).lstrip().startswith("DestinationConfig=") for item in items):
        raise DeployError("samconfig.toml: DestinationConfig goes in config/destination.json, not parameter_overrides")
    return [str(item) for item in items]


def template_parameters(env: str) -> dict[str, str]:
    """The template parameters samconfig.toml's parameter_overrides set for `env`, by name."""
    found = {}
    for item in _parameter_overrides(env):
        for word in shlex.split(item):  # one item may hold several, as `Key=value Key2="v 2"`
            key, sep, value = word.partition("=")
            if sep:
                found[key] = value
    return found


def secure_string_names(stack: str, parameters: Mapping[str, str]) -> dict[str, str | None]:
    """The SecureStrings the stack reads, as template.yaml names them: a parameter's value, else
    /<stack>/...; the shared secret's None when SharedSecretParamName is `none`."""
    names: dict[str, str | None] = {}
    for key, parameter, default in SECURE_STRINGS:
        value = parameters.get(parameter, "").strip()
        names[key] = None if value == "none" and key == "shared_secret" else value or f"/{stack}/{default}"
    return names


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """The stack's outputs, by key.

    Raises:
        DeployError: the stack does not exist.
    """
    return {o["OutputKey"]: o["OutputValue"] for o in describe_stack(cloudformation, stack).get("Outputs", [])}


def describe_stack(cloudformation: Any, stack: str) -> dict[str, Any]:
    """CloudFormation's description of the stack.

    Raises:
        DeployError: the stack does not exist.
    """
    from botocore.exceptions import ClientError

    try:
        return dict(cloudformation.describe_stacks(StackName=stack)["Stacks"][0])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ValidationError" and "does not exist" in str(error):
            raise DeployError(
                f"the stack {stack} does not exist in this account and region: make deploy creates it"
            ) from None
        raise


def deploy_command(env: str, config: Path, *, allowed_hosts: str = "", alarm_email: str = "") -> list[str]:
    """The `sam deploy` argv for `env` with the destination config in `config`.

    Raises:
        DeployError: the config is refused, or `alarm_email` is not one email address.
    """
    destination = read_destination_config(config, allowed_hosts=allowed_hosts)
    overrides = [*_parameter_overrides(env), sam_parameter("DestinationConfig", destination)]
    if allowed_hosts:
        overrides.append(sam_parameter("GainsightAllowedHosts", allowed_hosts))
    if alarm_email:
        if not EMAIL.fullmatch(alarm_email):
            raise DeployError(f"ALARM_EMAIL={alarm_email!r} is not one email address (name@example.com)")
        overrides.append(sam_parameter("AlarmEmail", alarm_email))
    return [_sam(), "deploy", "--config-env", env, "--parameter-overrides", *overrides]


def delete_command(env: str) -> list[str]:
    return [_sam(), "delete", "--config-env", env]


def logs_command(env: str, *, tail: bool = False) -> list[str]:
    names = [arg for name in FUNCTIONS for arg in ("--name", name)]
    return [_sam(), "logs", "--config-env", env, *names, *(["--tail"] if tail else [])]


def _sam() -> str:
    # The venv's sam, next to this interpreter; `make` puts it first on PATH as well.
    beside = Path(sys.executable).parent / "sam"
    return str(beside) if beside.exists() else (shutil.which("sam") or "sam")


def retained_note(env: str) -> str:
    stack = stack_name(env)
    return (
        f"Deleting the stack {stack}. Kept afterwards, on purpose:\n"
        f"  - the event table (DeletionPolicy: Retain; it holds events senders were told are safe):\n"
        f"      aws dynamodb list-tables --query \"TableNames[?starts_with(@, '{stack}-EventTable')]\"\n"
        f"      aws dynamodb delete-table --table-name <that name>\n"
        f"  - the API Gateway logs role (SetApiGatewayLogsRole=true), which this region's API Gateway\n"
        f"    settings name for every API's logs:\n"
        f"      aws iam list-roles --query \"Roles[?starts_with(RoleName, '{stack}-ApiGatewayLogsRole')].RoleName\"\n"
        f"  - the SecureStrings, which the stack never owned:\n"
        f"      aws ssm delete-parameters --names /{stack}/access-key /{stack}/shared-secret /{stack}/write-keys"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("deploy", "delete", "logs"))
    parser.add_argument("--env", choices=ENVIRONMENTS, default="dev")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="destination config JSON (deploy)")
    parser.add_argument(
        "--allowed-hosts", default="", help="GainsightAllowedHosts: custom Gainsight domains, comma-separated (deploy)"
    )
    parser.add_argument(
        "--alarm-email", default="", help="AlarmEmail: the address told of every alarm and its recovery (deploy)"
    )
    parser.add_argument("--tail", action="store_true", help="keep following new log lines (logs)")
    parser.add_argument("--dry-run", action="store_true", help="print the sam command instead of running it")
    args = parser.parse_args(argv)
    try:
        if args.action == "deploy":
            command = deploy_command(
                args.env, args.config, allowed_hosts=args.allowed_hosts, alarm_email=args.alarm_email
            )
            print(f"{args.config}: valid destination config for stack {stack_name(args.env)}")
        elif args.action == "delete":
            command = delete_command(args.env)
            print(retained_note(args.env))
        else:
            command = logs_command(args.env, tail=args.tail)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(("would run: " if args.dry_run else "running: ") + shlex.join(command), flush=True)
    if args.dry_run:
        return 0
    env = {**os.environ, "SAM_CLI_TELEMETRY": os.environ.get("SAM_CLI_TELEMETRY", "0")}
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
