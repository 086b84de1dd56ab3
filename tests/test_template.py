"""The SAM template against the code: the env var names it sets are the ones the code reads, the
routes are the handler's, and the function may only read its own parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from settings import parse_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, matches = decode(str(ROOT / "template.yaml"))
    assert not matches
    return parsed


@pytest.fixture(scope="module")
def function(template) -> dict[str, Any]:
    return template["Resources"]["DestinationFunction"]["Properties"]


class RecordingEnv(dict):
    """An environment that remembers which variables the code asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def test_env_var_names_in_the_template_are_the_names_the_code_reads(template, function) -> None:
    # Given the variables the template sets on the function
    variables = set(function["Environment"]["Variables"]) | set(
        template["Globals"]["Function"]["Environment"]["Variables"]
    )
    # When the code parses its settings
    env = RecordingEnv(dict.fromkeys(variables, "100"))
    parse_settings(env)
    # Then every variable the template sets is read (Powertools reads its own POWERTOOLS_* names)
    ours = {name for name in variables if not name.startswith("POWERTOOLS_")}
    assert ours <= env.asked
    # and every required setting is set by the template
    assert {"DESTINATION_CONFIG_PARAM", "ACCESS_KEY_PARAM", "WRITE_KEYS_PARAM", "SHARED_SECRET_PARAM"} <= variables
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= variables


def test_function_shape(template, function) -> None:
    globals_ = template["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Architectures"], globals_["Tracing"]) == ("python3.13", ["arm64"], "Active")
    assert function["CodeUri"] == "handler/"
    module, _, name = function["Handler"].partition(".")
    source = (ROOT / "handler" / f"{module}.py").read_text()
    assert f"def {name}(" in source


def test_routes_are_the_handlers_routes(function) -> None:
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in function["Events"].values()}
    assert routes == {("get", "/health"), ("post", "/v1/batch"), ("post", "/v1/{event_type}")}
    source = (ROOT / "handler" / "app.py").read_text()
    for method, path in routes:
        assert f'@router.{method}("{path.replace("{", "<").replace("}", ">")}")' in source


def _grants(function: dict[str, Any]) -> dict[str, tuple[set[str], list[Any]]]:
    statements = [s for policy in function["Policies"] for s in policy["Statement"]]
    return {
        s["Sid"]: ({s["Action"]} if isinstance(s["Action"], str) else set(s["Action"]), _list(s["Resource"]))
        for s in statements
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_api_function_may_only_read_its_parameters_and_use_the_event_store(function) -> None:
    grants = _grants(function)
    assert {sid: actions for sid, (actions, _) in grants.items()} == {
        "ReadOwnParameters": {"ssm:GetParameter"},
        "DecryptOnlyThroughSsm": {"kms:Decrypt"},
        "EventStore": {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    }
    _assert_scoped(function, grants, parameters=4)
    assert grants["EventStore"][1] == [{"Fn::GetAtt": ["EventTable", "Arn"]}]


def test_the_drain_runs_alone_every_minute_and_may_only_use_the_event_store(template) -> None:
    function = template["Resources"]["DrainFunction"]["Properties"]
    grants = _grants(function)
    assert {sid: actions for sid, (actions, _) in grants.items()} == {
        "ReadOwnParameters": {"ssm:GetParameter"},
        "DecryptOnlyThroughSsm": {"kms:Decrypt"},
        "EventStore": {"dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    }
    _assert_scoped(function, grants, parameters=3)  # the drain never checks write keys
    assert not any("WriteKeys" in str(resource) for resource in grants["ReadOwnParameters"][1])
    assert function["ReservedConcurrentExecutions"] == 1
    assert function["Events"]["EveryMinute"]["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    # Its budget leaves it time to record what it did before the function times out.
    assert float(function["Environment"]["Variables"]["DRAIN_BUDGET_SECONDS"]) + 5 <= function["Timeout"]
    assert f"def {function['Handler'].split('.')[1]}(" in (ROOT / "handler" / "drain_app.py").read_text()


def test_the_request_budget_always_fits_the_api_functions_timeout(template) -> None:
    budget = template["Parameters"]["DeliveryBudgetSeconds"]
    timeout = template["Globals"]["Function"]["Timeout"]
    assert budget["MaxValue"] + 1 < timeout  # ingest.SAFETY_MARGIN_SECONDS is left to answer
    assert budget["MaxValue"] < 10  # RudderStack's sender times out at 10 s


def _assert_scoped(function: dict[str, Any], grants: dict[str, tuple[set[str], list[Any]]], *, parameters: int) -> None:
    # Only kms:Decrypt names "*", and only through SSM.
    for sid, (_, resources) in grants.items():
        if sid != "DecryptOnlyThroughSsm":
            assert all("*" not in str(resource) for resource in resources), sid
    assert len(grants["ReadOwnParameters"][1]) == parameters
    decrypt = next(s for p in function["Policies"] for s in p["Statement"] if s["Sid"] == "DecryptOnlyThroughSsm")
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]


def test_the_api_is_throttled_so_one_sender_cannot_take_every_lambda(template) -> None:
    [stage] = template["Resources"]["Api"]["Properties"]["MethodSettings"]
    assert (stage["ResourcePath"], stage["HttpMethod"]) == ("/*", "*")
    assert stage["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}
    rate, budget = (template["Parameters"][name]["Default"] for name in ("ApiRateLimit", "DeliveryBudgetSeconds"))
    assert rate * budget <= 250  # concurrent executions the API can hold at its steady rate


def test_the_event_store_survives_the_stack_and_alarms_watch_it(template) -> None:
    resources = template["Resources"]
    table = resources["EventTable"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    [index] = table["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "queue"
    alarms = {name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms == {
        "EventsGaveUpAlarm", "OldestParkedAlarm", "DrainFailingAlarm", "CredentialsRejectedAlarm", "ErrorRateAlarm",
        "ThrottlingAlarm", "ApiThrottlingAlarm",
    }  # fmt: skip
    # The metrics the alarms read are the ones the code emits.
    ingest_source = (ROOT / "handler" / "ingest.py").read_text()
    for name in ("CredentialsRejectedAlarm", "ThrottlingAlarm", "EventsGaveUpAlarm", "OldestParkedAlarm"):
        assert f'name="{resources[name]["Properties"]["MetricName"]}"' in ingest_source


def test_sam_adds_no_broad_managed_policy_to_either_role(template, monkeypatch) -> None:
    # SAM's own transform, as `sam deploy` runs it: the roles get logging and X-Ray, nothing on "*"
    import copy

    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    document = copy.deepcopy(template)
    for name in ("DestinationFunction", "DrainFunction"):
        document["Resources"][name]["Properties"]["CodeUri"] = "s3://bucket/key"  # what `sam package` puts there

    class ManagedPolicies:
        def load(self) -> dict[str, str]:
            names = {
                "AWSLambdaBasicExecutionRole": "service-role/", "AWSXrayWriteOnlyAccess": "",
                "AWSLambdaSQSQueueExecutionRole": "service-role/",
            }  # fmt: skip
            return {name: f"arn:aws:iam::aws:policy/{path}{name}" for name, path in names.items()}

    resources = transform(document, {}, ManagedPolicies())["Resources"]
    for role in ("DestinationFunctionRole", "DrainFunctionRole"):
        managed = {arn.rsplit("/", 1)[-1] for arn in resources[role]["Properties"]["ManagedPolicyArns"]}
        assert managed == {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess"}, role
