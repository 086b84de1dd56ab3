"""`sam local invoke` as the README documents it, proven without Docker: SAM CLI's own code computes
the environment each container would get from template.yaml and local/env.json, the sample events
parse as the events each function receives, and `make local-stack` serves what that environment
points at."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devtools.local_stack import CONTAINER_HOST, ENV_VARS_FILE, MOTO_PORT, SANDBOX_PORT, env_vars_file, invoke_lines
from tests.local_stack_process import RunningStack

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ("DestinationFunction", "DrainFunction")


@pytest.fixture(scope="module")
def sam_functions() -> Any:
    """The functions as `sam local invoke` reads them from template.yaml."""
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(str(ROOT / "template.yaml"), parameter_overrides={})
    return SamFunctionProvider(stacks)


def _container_env(sam_functions: Any, function: str, env_vars: dict[str, Any], monkeypatch) -> dict[str, str]:
    """The environment SAM CLI would start `function`'s container with (its own code, no Docker)."""
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner

    # Any credentials: SAM passes the shell's on; moto accepts whatever it gets.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # The shell's value of a declared variable beats the template's: the tests' own must not leak in.
    for name in sam_functions.get(function).environment["Variables"]:
        monkeypatch.delenv(name, raising=False)
    runner = LocalLambdaRunner(
        local_runtime=None,  # type: ignore[arg-type]  # not used to compute the environment
        function_provider=sam_functions,
        cwd=str(ROOT),
        real_path=str(ROOT),
        aws_region="us-east-1",
        env_vars_values=env_vars,
    )
    return runner._make_env_vars(sam_functions.get(function)).resolve()


def test_the_env_vars_file_names_exactly_what_the_template_sets_on_each_function(sam_functions) -> None:
    # Given the committed file and the variables the template declares per function
    committed = json.loads(ENV_VARS_FILE.read_text())
    assert set(committed) == set(FUNCTIONS)
    for function in FUNCTIONS:
        declared = set(sam_functions.get(function).environment["Variables"])
        # Then the file names exactly those: sam local invoke drops any other, so one more would be
        # ignored silently, and one fewer would keep the template's AWS value
        assert set(committed[function]) == declared, function
    # and it is the file devtools/local_stack.py describes (regenerate with write_env_vars_file())
    assert committed == env_vars_file()


def test_sam_gives_each_container_the_local_stack_and_nothing_of_aws(sam_functions, monkeypatch) -> None:
    committed = json.loads(ENV_VARS_FILE.read_text())
    for function in FUNCTIONS:
        # When SAM CLI resolves the container's environment from the template and the file
        env = _container_env(sam_functions, function, committed, monkeypatch)
        # Then every value is the file's (none left at a template value meant for AWS)
        assert {name: env[name] for name in committed[function]} == committed[function]
        assert env["AWS_ENDPOINT_URL"] == f"http://{CONTAINER_HOST}:{MOTO_PORT}"
        assert env["GAINSIGHT_ALLOWED_HOSTS"] == f"{CONTAINER_HOST}:{SANDBOX_PORT}"
        assert env["ALLOW_LOOPBACK_GAINSIGHT"] == "true"


def test_without_the_file_sam_would_point_the_function_at_nothing_local(sam_functions, monkeypatch) -> None:
    # Why the file is needed: the template's values are AWS's.
    env = _container_env(sam_functions, "DestinationFunction", {}, monkeypatch)
    assert (env["AWS_ENDPOINT_URL"], env["ALLOW_LOOPBACK_GAINSIGHT"]) == ("", "false")


def test_the_container_settings_and_config_are_accepted_by_the_handler(monkeypatch) -> None:
    # Given the settings a container gets and the config make local-stack seeds
    from config import parse_destination
    from devtools.local import demo_config
    from devtools.local_stack import container_domain
    from settings import parse_settings

    for function in FUNCTIONS:
        settings = parse_settings(env_vars_file()[function])
        # When the handler parses the destination config with them
        destination = parse_destination(
            json.dumps(demo_config(container_domain())),
            "sandbox-access-key",
            "sandbox-shared-secret",
            allowed_hosts=settings.gainsight_allowed_hosts,
            allow_loopback=settings.allow_loopback_gainsight,
        )
        # Then the sandbox, as the container reaches it, is where the events go
        assert destination.base_url == f"http://{CONTAINER_HOST}:{SANDBOX_PORT}"


def test_the_api_events_are_api_gateway_events_for_the_templates_routes(sam_functions) -> None:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    routes = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in sam_functions.get("DestinationFunction").events.values()
    }
    paths = sorted((ROOT / "events").glob("*.json"))
    assert {path.name for path in paths} >= {"batch.json", "identify.json", "group.json", "track.json"}
    for path in paths:
        event = APIGatewayProxyEvent(json.loads(path.read_text()))
        assert event.http_method == "POST", path.name
        route = "/v1/batch" if event.path == "/v1/batch" else "/v1/{event_type}"
        assert (event.http_method, route) in routes, path.name
        assert event.request_context.stage == "v1"
        json.loads(event.body or "")  # a body the handler can read


def test_the_drain_event_is_what_its_schedule_sends(sam_functions) -> None:
    from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

    event = EventBridgeEvent(json.loads((ROOT / "events" / "drain" / "schedule.json").read_text()))
    assert (event.source, event.detail_type) == ("aws.scheduler", "Scheduled Event")
    assert event.resources[0].startswith("arn:aws:scheduler:")
    [schedule] = sam_functions.get("DrainFunction").events.values()
    assert schedule["Type"] == "ScheduleV2"


def test_the_invoke_lines_name_each_function_and_files_that_exist() -> None:
    from samcli.commands.local.invoke.cli import cli

    for line in invoke_lines():
        # SAM's telemetry off for this command, then the venv's sam
        telemetry, sam, *argv = line.split()
        assert telemetry == "SAM_CLI_TELEMETRY=0"
        assert (sam, argv[:2]) == (".venv/bin/sam", ["local", "invoke"])
        # sam's own parser accepts them (parsed, not run: that needs Docker)
        context = cli.make_context("invoke", argv[2:])
        assert context.params["function_logical_id"] in FUNCTIONS
        assert (ROOT / context.params["event"]).is_file()
        assert (ROOT / context.params["env_vars"]).is_file()
        assert context.params["add_host"] == {CONTAINER_HOST: "host-gateway"}


def test_make_local_stack_serves_what_the_env_vars_file_points_at(local_stack_server: RunningStack) -> None:
    # Given the local stack, on loopback and free ports here (make local-stack: 0.0.0.0:5005 and :4010)
    running = local_stack_server
    output = running.output
    # Then it says it is ready only once both servers answer, with the invoke lines to paste
    assert "Ready." in output, output
    for line in invoke_lines():
        assert line in output
    state_url = output.split("what it received at ")[1].split()[0]
    with urllib.request.urlopen(state_url, timeout=5) as answer:  # the sandbox
        assert answer.status == 200
    ssm = running.client("ssm")
    # and moto holds the config the container will read, naming the sandbox as it sees it
    name = env_vars_file()["DestinationFunction"]["DESTINATION_CONFIG_PARAM"]
    config = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    sandbox_port = int(state_url.split(":")[2].split("/")[0])
    assert config["domain"] == f"http://{CONTAINER_HOST}:{sandbox_port}"
