"""`make doctor ENV=dev`: everything a deploy needs, checked before it, one line per check.

    make doctor ENV=dev [CONFIG=config/destination.json] [ALLOWED_HOSTS=cs.acme.example] [ALARM_EMAIL=ops@example.com]
    make doctor LOCAL=1                 # against `make local-stack` (moto, the sandbox) instead of AWS
    python -m devtools.doctor --env prod [--config PATH] [--offline]

Each line is ✓ (fine), ✗ (what to do), ! (works, but worth a look) or · (not checked, because an
earlier check failed). The exit status is 1 when any line is ✗. The checks:

- AWS credentials and region resolve (boto3 reads AWS_PROFILE, AWS_DEFAULT_REGION or the profile's
  region; one STS GetCallerIdentity call);
- the destination config file parses with the function's own parser (devtools/deploy.py's
  read_destination_config), and still holds none of the example's placeholders (its tenantId and
  domain, read from config/destination.example.json). With LOCAL=1 and no CONFIG, the config the
  local stack holds;
- each SecureString the stack reads (access key, write keys, shared secret: their names from
  samconfig.toml's parameter_overrides, else the deployed stack's parameters, else /<stack>/...)
  exists and can be decrypted. Names only: a value is never printed. Without a shared secret
  (SharedSecretParamName=none) Events Framework tracks are rejected (kept for a replay); one that is
  named but missing makes them wait, and only them;
- Gainsight's host answers and accepts the access key: one Company query for a name no company has,
  which costs one call of the tenant's API quota;
- the stack's state, when it exists (CloudFormation DescribeStacks);
- alarms reach someone: a warning when neither AlarmEmail (ALARM_EMAIL=) nor AlarmTopicArn is set in
  samconfig.toml's parameter_overrides or on the deployed stack.

`make deploy` runs the doctor first and stops when a check fails (SKIP_DOCTOR=1 skips it). A dry run
(`make deploy DRY_RUN=1`) runs `--offline`: only the config is checked, as a dry run talks to
nothing, so an unedited example config fails it too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import deploy
from devtools.local import PARAMS, ROOT, use_handler_path
from devtools.local_stack import CONTAINER_HOST
from devtools.stack import LOCAL_SECURE_STRINGS, LocalStack, add_arguments, aws_for, aws_sentence, client, local_of

EXAMPLE_CONFIG = ROOT / "config" / "destination.example.json"
# A name no company has: the query finds nothing, and proves the host and the key.
PROBE_COMPANY = "gainsight-destination doctor probe"
MARKS = {"ok": "✓", "fail": "✗", "warn": "!", "skip": "·"}
# Stack states, by what they mean for a deploy.
BUSY_SUFFIX = "_IN_PROGRESS"
BROKEN_STATES = {
    "ROLLBACK_COMPLETE": "its first deploy failed and was rolled back: delete it (make delete) and deploy again",
    "ROLLBACK_FAILED": "its first deploy failed and could not be rolled back: delete it (make delete)",
    "DELETE_FAILED": "it could not be deleted: see its events in the CloudFormation console, then make delete",
    "UPDATE_ROLLBACK_FAILED": (
        "an update failed and could not be rolled back: continue the rollback in the CloudFormation console"
    ),
    "CREATE_FAILED": "it could not be created: see its events in the CloudFormation console, then make delete",
}


@dataclass(frozen=True, slots=True)
class Line:
    """One check's answer."""

    status: str  # ok | fail | warn | skip
    text: str

    def __str__(self) -> str:
        return f"{MARKS[self.status]} {self.text}"


@dataclass
class Findings:
    """What earlier checks learnt that later ones need (the access key stays in memory only)."""

    aws: bool = False
    config: dict[str, Any] | None = None
    config_source: str = ""
    secrets: dict[str, str | None] = field(default_factory=dict)  # the value read, by what it holds
    stack: dict[str, Any] | None = None  # CloudFormation's description, when the stack exists


@dataclass(frozen=True, slots=True)
class Options:
    env: str
    local: LocalStack | None
    config: Path | None
    allowed_hosts: str
    alarm_email: str
    offline: bool = False


def run(options: Options, out: Callable[[str], None] = print) -> int:
    """Run every check, printing a line for each; 1 when any failed, else 0."""
    lines: list[Line] = []
    for line in checks(options):
        out(str(line))
        lines.append(line)
    failed = sum(1 for line in lines if line.status == "fail")
    target = "LOCAL=1" if options.local else f"ENV={options.env}"
    if failed:
        them = "it" if failed == 1 else "them"
        out(f"{failed} check{'s' if failed > 1 else ''} failed: fix {them} and run make doctor {target} again.")
        return 1
    if options.offline:
        out("The config is ready; make doctor checks AWS, the SecureStrings and Gainsight too.")
    elif options.local:
        out("The local stack is ready: make smoke LOCAL=1")
    else:
        out(f"Ready to deploy: make deploy {target}")
    return 0


def checks(options: Options) -> Iterator[Line]:
    found = Findings()
    if options.offline:
        yield check_config(options, found)
        return
    with aws_for(options.local):
        yield check_aws(options, found)
        overrides = {} if options.local else _overrides(options.env)
        if found.aws and not options.local:
            found.stack = _describe(deploy.stack_name(options.env))
        yield check_config(options, found)
        yield from check_secure_strings(options, found, overrides)
        yield check_gainsight(options, found)
        yield check_stack(options, found)
        if not options.local:
            yield check_alarms(options, found, overrides)


# -- the checks -------------------------------------------------------------------------------


def check_aws(options: Options, found: Findings) -> Line:
    """Credentials and region, with one STS call."""
    import boto3

    try:
        identity = client("sts").get_caller_identity()
        region = boto3.session.Session().region_name
    except Exception as error:
        return Line("fail", aws_sentence(error, "AWS", local=options.local))
    found.aws = True
    if options.local:
        return Line("ok", f"AWS: the local stack's moto at {options.local.endpoint} (dummy credentials, {region})")
    return Line("ok", f"AWS: account {identity['Account']} in {region}, as {identity['Arn']}")


def check_config(options: Options, found: Findings) -> Line:
    """The destination config, parsed as the function parses it, with no example placeholder left."""
    if options.config is None and options.local:
        return _check_local_config(options, found)
    path = options.config or deploy.DEFAULT_CONFIG
    shown = _shown(path)
    try:
        compact = deploy.read_destination_config(path, allowed_hosts=_allowed_hosts(options))
    except deploy.DeployError as error:
        return Line("fail", str(error).replace(str(path), shown, 1))
    config = json.loads(compact)
    if left := placeholders(config):
        listed = " and ".join(f"{key} {value!r}" for key, value in left.items())
        what = " and ".join(PLACEHOLDER_ADVICE[key] for key in left)
        return Line("fail", f"{shown} still holds the example's {listed}: set {what}")
    found.config, found.config_source = config, shown
    return Line(
        "ok", f"{shown}: a valid destination config for tenant {config.get('tenantId')!r} at {config['domain']}"
    )


PLACEHOLDER_ADVICE = {
    "tenantId": "your Gainsight tenant id",
    "domain": "your tenant's host (<name>.gainsightcloud.com)",
}


def placeholders(config: Mapping[str, Any]) -> dict[str, str]:
    """The example config's placeholder values `config` still holds, by key."""
    example = json.loads(EXAMPLE_CONFIG.read_text())
    return {key: str(config[key]) for key in PLACEHOLDER_ADVICE if key in config and config[key] == example.get(key)}


def _check_local_config(options: Options, found: Findings) -> Line:
    name = PARAMS["DESTINATION_CONFIG_PARAM"]
    try:
        raw = client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except Exception as error:
        return Line("fail", _parameter_failure(error, name, options, kind="String", value="<the config JSON>"))
    use_handler_path()
    from config import parse_destination
    from errors import ConfigurationError

    try:
        parse_destination(raw, "-", None, allowed_hosts=_allowed_hosts(options), allow_loopback=True)
    except ConfigurationError as error:
        return Line("fail", f"the local stack's config ({name}): {error.message}")
    found.config, found.config_source = json.loads(raw), name
    return Line("ok", f"the local stack's config ({name}): valid, for {found.config['domain']}")


def check_secure_strings(options: Options, found: Findings, overrides: Mapping[str, str]) -> Iterator[Line]:
    """Each SecureString the stack reads exists and decrypts; names only, never a value."""
    if options.local:
        names: dict[str, str | None] = dict(LOCAL_SECURE_STRINGS)
    else:
        stack = deploy.stack_name(options.env)
        names = deploy.secure_string_names(stack, {**_stack_parameters(found), **overrides})
    for key, name in names.items():
        if not found.aws:
            yield Line("skip", f"{SECRET_TITLES[key]}: not checked (needs AWS)")
        elif name is None:
            found.secrets[key] = None
            yield Line(
                "warn",
                "no shared secret (SharedSecretParamName=none): track events for the Events Framework are "
                "rejected (kept for a replay); identify, group events and Timeline activities are delivered",
            )
        else:
            yield _check_secure_string(key, name, found, options)


SECRET_TITLES = {"access_key": "access key", "write_keys": "write keys", "shared_secret": "shared secret"}
SECRET_VALUES = {
    "access_key": "<the Gainsight access key>",
    "write_keys": "<write key>[,<another>]",
    "shared_secret": "<the Events Framework shared secret>",
}


def _check_secure_string(key: str, name: str, found: Findings, options: Options) -> Line:
    title = f"SecureString {name} ({SECRET_TITLES[key]})"
    try:
        parameter = client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except Exception as error:
        why = _parameter_failure(error, name, options, value=SECRET_VALUES[key])
        if key == "shared_secret" and "ParameterNotFound" in why:
            return Line(
                "fail",
                f"{why}. Track events will wait for it (identify and group events are delivered); or set "
                "SharedSecretParamName=none in samconfig.toml's parameter_overrides to send no track events "
                "to the Events Framework",
            )
        return Line("fail", why)
    value = str(parameter.get("Value", ""))
    found.secrets[key] = value
    if key == "write_keys":
        count = len([k for k in value.split(",") if k.strip()])
        if not count:
            return Line("fail", f"{title} holds no write key: every sender would be refused; put one in it")
        detail = f"holds {count} write key{'s' if count > 1 else ''}"
    elif not value.strip():
        return Line("fail", f"{title} is empty: put the {SECRET_TITLES[key]} in it")
    else:
        detail = "exists and decrypts"
    if parameter.get("Type") != "SecureString":
        return Line(
            "warn", f"{title} {detail}, but is a {parameter.get('Type')}, stored unencrypted: make it a SecureString"
        )
    return Line("ok", f"{title} {detail}")


def _parameter_failure(
    error: BaseException, name: str, options: Options, *, kind: str = "SecureString", value: str = "<value>"
) -> str:
    """Why the parameter `name` could not be read, and what to do."""
    use_handler_path()
    from parameters_store import read_failure

    if getattr(error, "response", None) is None:  # not an AWS answer: no credentials, no route
        return aws_sentence(error, f"reading {name}", local=options.local)
    why = read_failure(error)
    if "ParameterNotFound" in why:
        return f"{kind} {name}: {why}; create it: aws ssm put-parameter --name {name} --type {kind} --value '{value}'"
    return f"{kind} {name}: {why}"


def check_gainsight(options: Options, found: Findings) -> Line:
    """One Company query: the host answers and the access key works. Costs one call of the quota."""
    access_key = found.secrets.get("access_key")
    if found.config is None or not access_key:
        return Line("skip", "Gainsight: not checked (needs a valid config and the access key)")
    use_handler_path()
    import urllib3

    from config import parse_destination
    from errors import ConfigurationError, GainsightError
    from gainsight import Gainsight

    config = dict(found.config)
    if options.local:
        config["domain"] = options.local.reachable_domain(str(config["domain"]))
    try:
        destination = parse_destination(
            json.dumps(config),
            access_key,
            None,
            allowed_hosts=_allowed_hosts(options),
            allow_loopback=bool(options.local),
        )
    except ConfigurationError as error:
        return Line("fail", f"Gainsight: {error.message}")
    quota = "one Company query: one call of the tenant's API quota"
    http = urllib3.PoolManager(retries=False)
    gainsight = Gainsight(destination, deadline=time.monotonic() + 15, http=http, max_retries=0)
    try:
        gainsight.query_companies([PROBE_COMPANY])
    except GainsightError as error:
        return Line(
            "fail",
            f"Gainsight at {destination.base_url}: {error.message}; {_gainsight_advice(error, found)} ({quota})",
        )
    finally:
        http.clear()
    return Line("ok", f"Gainsight at {destination.base_url} answered and accepted the access key ({quota})")


def _gainsight_advice(error: Any, found: Findings) -> str:
    if error.status_code in (401, 403) or "access key" in error.message:
        return "put the tenant's current access key in the access key SecureString"
    if error.code in ("dns", "redirect"):
        return f"check the domain in {found.config_source}"
    if error.code in ("connection_refused", "timeout", "connection"):
        return "check the domain, and that this machine can reach it"
    return "see Gainsight's answer above"


def check_stack(options: Options, found: Findings) -> Line:
    """The stack's state (the local stack: its event table)."""
    if not found.aws:
        return Line("skip", "stack: not checked (needs AWS)")
    if options.local:
        from devtools.local import EVENT_TABLE

        try:
            client("dynamodb").describe_table(TableName=EVENT_TABLE)
        except Exception as error:
            return Line(
                "fail", aws_sentence(error, f"the local stack's event table {EVENT_TABLE}", local=options.local)
            )
        return Line("ok", f"the local stack holds the event table {EVENT_TABLE}")
    name = deploy.stack_name(options.env)
    if found.stack is None:
        return Line("ok", f"stack {name} does not exist yet: make deploy ENV={options.env} creates it")
    if "error" in found.stack:
        return Line("fail", found.stack["error"])
    status = str(found.stack.get("StackStatus", ""))
    if status.endswith(BUSY_SUFFIX):
        return Line("fail", f"stack {name} is {status}: wait until it ends (aws cloudformation wait, or the console)")
    if status in BROKEN_STATES:
        return Line("fail", f"stack {name} is {status}: {BROKEN_STATES[status]}")
    if status == "UPDATE_ROLLBACK_COMPLETE":
        return Line("warn", f"stack {name} is {status}: its last update failed and was undone; it runs the one before")
    return Line("ok", f"stack {name} is {status}")


def check_alarms(options: Options, found: Findings, overrides: Mapping[str, str]) -> Line:
    """Whether an alarm would reach anyone: AlarmEmail or AlarmTopicArn set somewhere."""
    if not found.aws:
        return Line("skip", "alarms: not checked (needs AWS)")
    settings = {**_stack_parameters(found), **overrides}
    if options.alarm_email:
        return Line("ok", f"alarms notify {options.alarm_email} (ALARM_EMAIL)")
    for key in ("AlarmEmail", "AlarmTopicArn"):
        if settings.get(key, "").strip():
            return Line("ok", f"alarms notify {key}={settings[key].strip()}")
    return Line(
        "warn",
        "alarms notify nobody: deploy with ALARM_EMAIL=you@example.com, or set AlarmTopicArn in samconfig.toml's "
        "parameter_overrides",
    )


# -- helpers ---------------------------------------------------------------------------------


def _overrides(env: str) -> dict[str, str]:
    try:
        return deploy.template_parameters(env)
    except deploy.DeployError:
        return {}  # reported by the config check's deploy, not here


def _describe(name: str) -> dict[str, Any] | None:
    """The stack's description; None when it does not exist; {"error": sentence} when it cannot be read."""
    try:
        return deploy.describe_stack(client("cloudformation"), name)
    except deploy.DeployError:
        return None
    except Exception as error:
        return {"error": aws_sentence(error, f"reading the stack {name}")}


def _stack_parameters(found: Findings) -> dict[str, str]:
    stack = found.stack or {}
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def _allowed_hosts(options: Options) -> str:
    if options.local:
        return ",".join(filter(None, [f"{CONTAINER_HOST}:{options.local.sandbox_port}", options.allowed_hosts]))
    return options.allowed_hosts


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m devtools.doctor", description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument(
        "--config", type=Path, default=None, help="destination config (default: config/destination.json)"
    )
    parser.add_argument("--allowed-hosts", default="", help="GainsightAllowedHosts, as make deploy passes it")
    parser.add_argument("--alarm-email", default="", help="AlarmEmail, as make deploy passes it")
    parser.add_argument("--offline", action="store_true", help="only the config (make deploy DRY_RUN=1)")
    args = parser.parse_args(argv)
    return Options(args.env, local_of(args), args.config, args.allowed_hosts, args.alarm_email, args.offline)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse(argv), lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
