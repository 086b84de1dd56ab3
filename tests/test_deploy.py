"""`make deploy`, `make delete`, `make logs`: the destination config reaches CloudFormation exactly as
written, through SAM CLI's own parser, and a bad config never gets as far as `sam deploy`."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import deploy

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "destination.example.json"


def _sam_reads(argv: list[str]) -> dict[str, str]:
    """The parameter overrides `sam deploy` gets from `argv`, parsed by SAM CLI itself (click's
    parsing of the deploy command, samconfig.toml included, without running it)."""
    from samcli.commands.deploy.command import cli

    assert argv[1] == "deploy"
    context = cli.make_context("deploy", argv[2:])
    # samconfig.toml's environment is applied: the stack and the capabilities it names
    assert context.params["stack_name"] == deploy.stack_name(context.params["config_env"])
    assert context.params["capabilities"] == ["CAPABILITY_IAM"]
    return dict(context.params["parameter_overrides"])


def test_the_example_config_is_valid_and_reaches_cloudformation_unchanged(monkeypatch) -> None:
    # Given the example config, as a user copies it
    monkeypatch.chdir(ROOT)
    written = json.loads(EXAMPLE.read_text())
    # When make deploy builds the sam command
    argv = deploy.deploy_command("dev", EXAMPLE)
    # Then sam deploy reads back exactly that JSON for DestinationConfig, byte for byte
    assert argv[:4] == [argv[0], "deploy", "--config-env", "dev"]
    overrides = _sam_reads(argv)
    assert overrides["DestinationConfig"] == json.dumps(written, separators=(",", ":"))
    assert json.loads(overrides["DestinationConfig"]) == written


def test_hostile_strings_survive_sams_parser(tmp_path, monkeypatch) -> None:
    # Given a config whose strings hold everything SAM's parser treats specially
    monkeypatch.chdir(ROOT)
    config = json.loads(EXAMPLE.read_text())
    nasty = ['Ticket "Closed"', "it's", "a=b, c=d", "back\\slash", '\\" \\ ', "tab\there", "café ✓", "  spaced  "]
    config["eventNameMap"] = [{"from": text, "to": f"event_{i}"} for i, text in enumerate(nasty)]
    path = tmp_path / "destination.json"
    path.write_text(json.dumps(config))
    # When it goes through make deploy and SAM
    overrides = _sam_reads(deploy.deploy_command("prod", path, allowed_hosts="cs.acme.example"))
    # Then CloudFormation gets the same JSON value, and the other parameter too
    assert json.loads(overrides["DestinationConfig"]) == config
    assert overrides["GainsightAllowedHosts"] == "cs.acme.example"
    # and the value still fits the template's AllowedPattern (one line, an object)
    assert "\n" not in overrides["DestinationConfig"]
    assert overrides["DestinationConfig"].startswith("{") and overrides["DestinationConfig"].endswith("}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eventNameMaps": []}, "did you mean eventNameMap?"),
        ({"domain": "acme.example.com"}, "is not a Gainsight host"),
        ({"domain": None}, "domain is required"),
        ({"accessKey": "secret"}, "must not hold a secret"),
        ({"domain": "http://acme.gainsightcloud.com"}, "must use https"),
    ],
)
def test_a_bad_config_is_refused_before_sam_runs(tmp_path, capsys, change, message) -> None:
    # Given a config the function would refuse
    path = tmp_path / "destination.json"
    path.write_text(json.dumps(json.loads(EXAMPLE.read_text()) | change))
    # When make deploy runs (for real: a refusal never reaches sam)
    code = deploy.main(["deploy", "--env", "dev", "--config", str(path)])
    # Then it stops with the handler's own message naming the problem
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_missing_config_says_how_to_make_one(tmp_path, capsys) -> None:
    code = deploy.main(["deploy", "--config", str(tmp_path / "destination.json")])
    assert code == 2
    assert "copy config/destination.example.json" in capsys.readouterr().err


def test_samconfig_overrides_are_kept_and_destination_config_is_not_allowed_there(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(
        deploy,
        "_samconfig",
        lambda env, command: {"parameter_overrides": ["AlarmTopicArn=arn:aws:sns:x", "MaxAttempts=5"]},
    )
    overrides = _sam_reads(deploy.deploy_command("dev", EXAMPLE))
    assert (overrides["AlarmTopicArn"], overrides["MaxAttempts"]) == ("arn:aws:sns:x", "5")
    assert "DestinationConfig" in overrides
    monkeypatch.setattr(deploy, "_samconfig", lambda env, command: {"parameter_overrides": "DestinationConfig={}"})
    with pytest.raises(deploy.DeployError, match=r"goes in config/destination\.json"):
        deploy.deploy_command("dev", EXAMPLE)


def test_environments_are_separate_stacks() -> None:
    assert deploy.stack_name("dev") == "gainsight-destination-dev"
    assert deploy.stack_name("prod") == "gainsight-destination-prod"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    # The venv the tests run in is the one make uses: PYTHON is given so make never looks for another.
    return subprocess.run(
        ["make", "-s", *args, f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_make_deploy_dry_run_validates_and_prints_the_sam_command(tmp_path) -> None:
    # Given the example copied as the user's config, and edited as the user must
    edited = json.loads(EXAMPLE.read_text()) | {"tenantId": "t-123", "domain": "initech.gainsightcloud.com"}
    config = tmp_path / "destination.json"
    config.write_text(json.dumps(edited))
    # When `make deploy ENV=prod DRY_RUN=1` runs
    result = _make("deploy", "ENV=prod", "DRY_RUN=1", f"CONFIG={config}")
    # Then the doctor checks the config, and the sam command it prints parses back to the config
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ " + str(config) + ": a valid destination config for tenant 't-123'" in result.stdout
    assert "valid destination config for stack gainsight-destination-prod" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("would run: ")]
    argv = shlex.split(line.removeprefix("would run: "))
    assert argv[1:4] == ["deploy", "--config-env", "prod"]
    assert json.loads(_sam_reads(argv)["DestinationConfig"]) == edited


def test_make_deploy_dry_run_stops_at_the_examples_placeholders(tmp_path) -> None:
    # Given the example copied as the user's config, unedited
    config = tmp_path / "destination.json"
    config.write_text(EXAMPLE.read_text())
    # When `make deploy ENV=prod DRY_RUN=1` runs
    result = _make("deploy", "ENV=prod", "DRY_RUN=1", f"CONFIG={config}")
    # Then the doctor names the placeholders, and no sam command is printed
    assert result.returncode != 0
    assert "still holds the example's tenantId 'your-tenant-id' and domain 'acme.gainsightcloud.com'" in result.stdout
    assert "would run:" not in result.stdout


def test_skip_doctor_lets_a_dry_run_through(tmp_path) -> None:
    config = tmp_path / "destination.json"
    config.write_text(EXAMPLE.read_text())
    result = _make("deploy", "ENV=prod", "DRY_RUN=1", "SKIP_DOCTOR=1", f"CONFIG={config}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "doctor skipped (SKIP_DOCTOR=1)" in result.stdout
    assert "would run:" in result.stdout


def test_make_delete_and_logs_dry_run() -> None:
    delete = _make("delete", "ENV=dev", "DRY_RUN=1")
    assert delete.returncode == 0, delete.stderr
    assert "event table (DeletionPolicy: Retain" in delete.stdout
    assert "/gainsight-destination-dev/access-key" in delete.stdout
    assert "starts_with(RoleName, 'gainsight-destination-dev-ApiGatewayLogsRole')" in delete.stdout
    assert delete.stdout.strip().endswith("delete --config-env dev")
    logs = _make("logs", "ENV=prod", "TAIL=1", "DRY_RUN=1")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip().endswith("logs --config-env prod --name DestinationFunction --name DrainFunction --tail")


def test_the_sam_commands_accept_these_flags() -> None:
    # sam's own parser accepts what make delete and make logs run (parsed, not run).
    from samcli.commands.delete.command import cli as delete_cli
    from samcli.commands.logs.command import cli as logs_cli

    delete = delete_cli.make_context("delete", deploy.delete_command("dev")[2:])
    assert delete.params["config_env"] == "dev"
    logs = logs_cli.make_context("logs", deploy.logs_command("prod", tail=True)[2:])
    assert set(logs.params["name"]) == {"DestinationFunction", "DrainFunction"}
    assert logs.params["tail"] is True


def test_make_deploy_alarm_email_reaches_the_stack_parameter(tmp_path) -> None:
    # Given the user's config (the example, edited) and an address for the alarms
    config = tmp_path / "destination.json"
    edited = json.loads(EXAMPLE.read_text()) | {"tenantId": "t-123", "domain": "initech.gainsightcloud.com"}
    config.write_text(json.dumps(edited))
    # When `make deploy ALARM_EMAIL=... DRY_RUN=1` runs
    result = _make("deploy", "ENV=dev", "DRY_RUN=1", f"CONFIG={config}", "ALARM_EMAIL=on-call+gs@example.com")
    # Then sam deploy gets AlarmEmail, and the destination config beside it
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("would run: ")]
    overrides = _sam_reads(shlex.split(line.removeprefix("would run: ")))
    assert overrides["AlarmEmail"] == "on-call+gs@example.com"
    assert json.loads(overrides["DestinationConfig"]) == edited
    # and `make -n` shows the same option without running anything
    shown = _make("-n", "deploy", "ENV=dev", "DRY_RUN=1", "ALARM_EMAIL=on-call+gs@example.com")
    assert shown.returncode == 0, shown.stderr
    assert "--alarm-email on-call+gs@example.com" in shown.stdout


@pytest.mark.parametrize("address", ["ops", "ops@example.com,dev@example.com", "ops @example.com"])
def test_an_alarm_email_that_is_not_one_address_is_refused_before_sam_runs(capsys, monkeypatch, address) -> None:
    monkeypatch.chdir(ROOT)
    code = deploy.main(["deploy", "--config", str(EXAMPLE), "--alarm-email", address])
    assert code == 2
    assert "is not one email address" in capsys.readouterr().err
    # The check is the template's own AllowedPattern, which CloudFormation would apply after the upload.
    from cfnlint.decode import decode

    template, _ = decode(str(ROOT / "template.yaml"))
    assert template["Parameters"]["AlarmEmail"]["AllowedPattern"] == f"^({deploy.EMAIL.pattern})?$"


def test_no_alarm_email_leaves_the_parameter_to_samconfig(monkeypatch) -> None:
    # An address kept in samconfig.toml's overrides still applies when make is given none.
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(
        deploy, "_samconfig", lambda env, command: {"parameter_overrides": ["AlarmEmail=a@example.com"]}
    )
    assert _sam_reads(deploy.deploy_command("dev", EXAMPLE))["AlarmEmail"] == "a@example.com"
    assert (
        _sam_reads(deploy.deploy_command("dev", EXAMPLE, alarm_email="b@example.com"))["AlarmEmail"] == "b@example.com"
    )
