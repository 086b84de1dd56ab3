"""`make doctor`: against `make local-stack` (LOCAL=1) every check answers in one line, a failure
says what to do, and no secret is ever printed; against AWS without a region or credentials it
says which variable to set, and contacts nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools import doctor
from devtools.local import DEMO_WRITE_KEY, PARAMS
from tests.local_stack_process import RunningStack, run_tool

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ("sandbox-access-key", "sandbox-shared-secret", DEMO_WRITE_KEY)


def run_doctor(*argv: str) -> tuple[int, list[str]]:
    """`make doctor` with these options: its exit status and the lines it printed."""
    return run_tool(doctor, *argv)


def test_the_local_stack_passes_every_check_and_no_secret_is_printed(local: RunningStack) -> None:
    # When the doctor checks the local stack as make local-stack started it
    status, lines = run_doctor(*local.args)
    # Then every check passes, one line each, ending in what to run next
    assert status == 0, lines
    assert [line[0] for line in lines[:-1]] == ["✓"] * 7, lines
    assert any(f"Gainsight at http://127.0.0.1:{local.sandbox_port} answered and accepted" in line for line in lines)
    assert any("one call of the tenant's API quota" in line for line in lines)
    assert lines[-1] == "The local stack is ready: make smoke LOCAL=1"
    # and the SecureStrings are named, never shown
    output = "\n".join(lines)
    assert PARAMS["ACCESS_KEY_PARAM"] in output
    assert not [secret for secret in SECRETS if secret in output]


def test_a_missing_securestring_is_named_with_the_command_that_creates_it(local: RunningStack) -> None:
    # Given the access key's SecureString was never created
    name = PARAMS["ACCESS_KEY_PARAM"]
    local.client("ssm").delete_parameter(Name=name)
    # When the doctor runs
    status, lines = run_doctor(*local.args)
    # Then it fails with one line naming the parameter and how to create it
    assert status == 1
    assert (
        f"✗ SecureString {name}: not found (ParameterNotFound); create it: aws ssm put-parameter --name {name} "
        "--type SecureString --value '<the Gainsight access key>'"
    ) in lines
    # and Gainsight is not asked without a key
    assert "· Gainsight: not checked (needs a valid config and the access key)" in lines
    assert lines[-1] == "1 check failed: fix it and run make doctor LOCAL=1 again."


def test_a_missing_shared_secret_says_track_events_will_wait(local: RunningStack) -> None:
    name = PARAMS["SHARED_SECRET_PARAM"]
    local.client("ssm").delete_parameter(Name=name)
    status, lines = run_doctor(*local.args)
    assert status == 1
    [line] = [line for line in lines if name in line]
    assert line.startswith(f"✗ SecureString {name}: not found (ParameterNotFound); create it")
    assert "Track events will wait for it" in line
    assert "identify and group events are delivered" in line
    assert "or set SharedSecretParamName=none" in line


def test_a_placeholder_left_in_the_config_is_named(local: RunningStack, tmp_path: Path) -> None:
    # Given the example config copied but not edited
    config = tmp_path / "destination.json"
    config.write_text((ROOT / "config" / "destination.example.json").read_text())
    # When the doctor checks it
    status, lines = run_doctor(*local.args, "--config", str(config))
    # Then it names each placeholder and what to put there
    assert status == 1
    assert (
        f"✗ {config} still holds the example's tenantId 'your-tenant-id' and domain 'acme.gainsightcloud.com': "
        "set your Gainsight tenant id and your tenant's host (<name>.gainsightcloud.com)"
    ) in lines


def test_a_config_the_function_would_refuse_fails_with_the_parsers_reason(local: RunningStack, tmp_path) -> None:
    config = tmp_path / "destination.json"
    config.write_text(json.dumps({"domain": "initech.gainsightcloud.com", "eventNameMaps": []}))
    status, lines = run_doctor(*local.args, "--config", str(config))
    assert status == 1
    assert f"✗ {config}: unknown destination config key eventNameMaps (did you mean eventNameMap?)" in lines


def test_a_bad_access_key_is_refused_by_gainsight_and_said_so(local: RunningStack) -> None:
    # Given an access key the tenant does not accept
    wrong = "not-the-tenants-key"
    local.client("ssm").put_parameter(Name=PARAMS["ACCESS_KEY_PARAM"], Type="SecureString", Value=wrong, Overwrite=True)
    calls_before = local.sandbox("/_sandbox/state")["calls"]["total"]
    # When the doctor runs
    status, lines = run_doctor(*local.args)
    # Then the sandbox's 401 is one line saying what to fix, and what the check cost
    assert status == 1
    assert (
        f"✗ Gainsight at http://127.0.0.1:{local.sandbox_port}: Gainsight rejected the access key "
        "(GS_APIG_2401: Invalid authorization headers); put the tenant's current access key in the access key "
        "SecureString (one Company query: one call of the tenant's API quota)"
    ) in lines
    assert local.sandbox("/_sandbox/state")["calls"]["total"] == calls_before + 1  # one call, no retry
    assert wrong not in "\n".join(lines)


def test_without_a_region_it_names_the_variable_and_contacts_nothing(
    monkeypatch, tmp_path, outside_connections
) -> None:
    # Given no AWS configuration at all
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    # When the doctor checks the dev environment
    status, lines = run_doctor("--env", "dev", "--config", str(tmp_path / "destination.json"))
    # Then the first line names what to set, the checks that need AWS are skipped, nothing is contacted
    assert status == 1
    assert lines[0] == (
        "✗ AWS: no AWS region: set AWS_DEFAULT_REGION (export AWS_DEFAULT_REGION=eu-west-1) or your profile's "
        "region (aws configure set region eu-west-1 --profile <name>)"
    )
    assert "· stack: not checked (needs AWS)" in lines
    assert outside_connections == []


def test_without_credentials_it_names_the_profile_or_keys_to_set(monkeypatch, tmp_path, outside_connections) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # not on EC2: no instance role to look for
    status, lines = run_doctor("--env", "dev", "--config", str(tmp_path / "destination.json"))
    assert status == 1
    assert lines[0].startswith("✗ AWS: no AWS credentials: set AWS_PROFILE to a configured profile")
    assert outside_connections == []


@pytest.mark.parametrize(
    ("status", "mark", "says"),
    [
        ("UPDATE_COMPLETE", "✓", "is UPDATE_COMPLETE"),
        ("ROLLBACK_COMPLETE", "✗", "delete it (make delete) and deploy again"),
        ("UPDATE_IN_PROGRESS", "✗", "wait until it ends"),
        ("UPDATE_ROLLBACK_COMPLETE", "!", "its last update failed and was undone"),
    ],
)
def test_the_stacks_state_says_whether_a_deploy_can_go_on(status: str, mark: str, says: str) -> None:
    options = doctor.Options("dev", None, None, "", "")
    line = doctor.check_stack(options, doctor.Findings(aws=True, stack={"StackStatus": status}))
    assert str(line).startswith(f"{mark} stack gainsight-destination-dev ")
    assert says in line.text


def test_a_stack_not_yet_deployed_is_fine() -> None:
    line = doctor.check_stack(doctor.Options("dev", None, None, "", ""), doctor.Findings(aws=True, stack=None))
    assert str(line) == "✓ stack gainsight-destination-dev does not exist yet: make deploy ENV=dev creates it"


def test_alarms_that_notify_nobody_are_a_warning_not_a_failure() -> None:
    options = doctor.Options("dev", None, None, "", "")
    unset = doctor.check_alarms(options, doctor.Findings(aws=True), {})
    assert unset.status == "warn"
    assert "alarms notify nobody: deploy with ALARM_EMAIL=you@example.com, or set AlarmTopicArn" in unset.text
    topic = "arn:aws:sns:eu-west-1:123456789012:ops"
    assert doctor.check_alarms(options, doctor.Findings(aws=True), {"AlarmTopicArn": topic}).status == "ok"
    deployed = doctor.Findings(
        aws=True, stack={"Parameters": [{"ParameterKey": "AlarmEmail", "ParameterValue": "o@x.io"}]}
    )
    assert doctor.check_alarms(options, deployed, {}).status == "ok"
    with_email = doctor.Options("dev", None, None, "", "ops@example.com")
    assert (
        str(doctor.check_alarms(with_email, doctor.Findings(aws=True), {}))
        == "✓ alarms notify ops@example.com (ALARM_EMAIL)"
    )
