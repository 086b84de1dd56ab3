"""The SAM template against the code: the env var names it sets are the ones the code reads, the
routes are the handler's, and the function may only read its own parameters."""

from __future__ import annotations

import json
from collections.abc import Callable
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
    env = RecordingEnv(dict.fromkeys(variables, "100") | {"ALLOW_LOOPBACK_GAINSIGHT": "false"})
    parse_settings(env)
    # Then every variable the template sets is read (Powertools reads its own POWERTOOLS_* names,
    # boto3 AWS_ENDPOINT_URL)
    ours = {name for name in variables if not name.startswith("POWERTOOLS_") and name != "AWS_ENDPOINT_URL"}
    assert ours <= env.asked
    # and every required setting is set by the template
    assert {"DESTINATION_CONFIG_PARAM", "ACCESS_KEY_PARAM", "WRITE_KEYS_PARAM", "SHARED_SECRET_PARAM"} <= variables
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"} <= variables
    # The two a local run overrides are declared (sam local invoke sets no other), in their AWS values.
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    assert (globals_["AWS_ENDPOINT_URL"], globals_["ALLOW_LOOPBACK_GAINSIGHT"]) == ("", "false")


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


def _grants(
    function: dict[str, Any], resolve: Callable[[Any], Any] | None = None
) -> dict[str, tuple[set[str], list[Any]]]:
    """Each statement's actions and resources by Sid: the unconditional policies, or every policy
    as `resolve` (CloudFormation's conditions for given parameters) leaves them."""
    policies = resolve(function["Policies"]) if resolve else [p for p in function["Policies"] if "Statement" in p]
    statements = [s for policy in policies for s in policy["Statement"]]
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
        "EventStore": {
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        },
    }
    _assert_scoped(function, grants, parameters=4)
    assert grants["EventStore"][1] == [{"Fn::GetAtt": ["EventTable", "Arn"]}]


def test_the_drain_runs_alone_every_minute_and_may_only_use_the_event_store(template) -> None:
    function = template["Resources"]["DrainFunction"]["Properties"]
    grants = _grants(function)
    assert {sid: actions for sid, (actions, _) in grants.items()} == {
        "ReadOwnParameters": {"ssm:GetParameter"},
        "DecryptOnlyThroughSsm": {"kms:Decrypt"},
        "EventStore": {
            "dynamodb:BatchGetItem",
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
        },
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
        "EventsGaveUpAlarm", "OldestParkedAlarm", "DrainFailingAlarm", "DailyBudgetAlarm", "CredentialsRejectedAlarm",
        "ConfigurationErrorAlarm", "ErrorRateAlarm",
        "ThrottlingAlarm", "ApiThrottlingAlarm", "QuotaForecastAlarm",
    }  # fmt: skip
    # The metrics the alarms read are the ones the code emits.
    ingest_source = "".join(path.read_text() for path in (ROOT / "handler").glob("*.py"))
    for name in (
        "CredentialsRejectedAlarm",
        "ConfigurationErrorAlarm",
        "ThrottlingAlarm",
        "EventsGaveUpAlarm",
        "OldestParkedAlarm",
        "DailyBudgetAlarm",
        "QuotaForecastAlarm",
    ):
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


# -- two stacks in one account -------------------------------------------------------------------

STACK = {"Ref": "AWS::StackName"}


def test_metrics_are_told_apart_by_stack_and_alarms_read_what_the_code_emits(template) -> None:
    # Given what Powertools puts on every metric: the namespace and the service dimension
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace, service = variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]
    # Then the service is the stack's name
    assert service == STACK
    # and every alarm on our metrics reads that namespace and service, and has a name of its stack
    resources = template["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    ours = {name: a for name, a in alarms.items() if a.get("Namespace") == namespace}
    assert set(ours) == {
        "EventsGaveUpAlarm", "OldestParkedAlarm", "CredentialsRejectedAlarm", "ConfigurationErrorAlarm",
        "ThrottlingAlarm", "DailyBudgetAlarm", "QuotaForecastAlarm",
    }  # fmt: skip
    for name, alarm in ours.items():
        assert alarm["Dimensions"] == [{"Name": "service", "Value": service}], name
    for name, alarm in alarms.items():
        assert alarm["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{name.removesuffix('Alarm')}"}
    assert any(alarm.get("Namespace") not in (None, namespace) for alarm in alarms.values())  # AWS/Lambda ones


def test_the_dashboard_reads_this_stacks_metrics_only(template) -> None:
    # Given the dashboard body, with the stack's name substituted as CloudFormation would
    dashboard = template["Resources"]["Dashboard"]["Properties"]
    assert dashboard["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}
    body = json.loads(dashboard["DashboardBody"]["Fn::Sub"].replace("${AWS::StackName}", "stack-a"))
    ingest_source = "".join(path.read_text() for path in (ROOT / "handler").glob("*.py"))
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    searches, metrics = [], []
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            if isinstance(metric[0], dict):
                searches.append(metric[0]["expression"])
            else:
                metrics.append(metric)
    # Then every search is limited to this stack's service, in our namespace
    assert len(searches) == 2
    for expression in searches:
        assert expression.startswith(f"SEARCH('{{{namespace},")
        assert 'service="stack-a"' in expression
        assert f'MetricName="{expression.split("MetricName=")[1].split(chr(34))[1]}"' in expression
    # and every metric line names our namespace and this stack's service ("." repeats the line above)
    previous: list[Any] = []
    for metric in metrics:
        if metric[0] == "...":
            continue
        line = [prev if value == "." else value for value, prev in zip(metric, previous or metric, strict=False)]
        names = [value for value in line if isinstance(value, str)]
        assert names[0] == namespace and names[2:4] == ["service", "stack-a"], metric
        assert f'name="{names[1]}"' in ingest_source, names[1]
        previous = line


def test_the_secure_strings_default_to_paths_of_the_stack(template) -> None:
    parameters = template["Parameters"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for parameter, variable, suffix in (
        ("AccessKeyParamName", "ACCESS_KEY_PARAM", "access-key"),
        ("WriteKeysParamName", "WRITE_KEYS_PARAM", "write-keys"),
    ):
        assert parameters[parameter]["Default"] == ""
        condition = f"Default{parameter.removesuffix('Name')}"
        assert template["Conditions"][condition] == {"Fn::Equals": [{"Ref": parameter}, ""]}
        assert variables[variable] == {
            "Fn::If": [condition, {"Fn::Sub": f"/${{AWS::StackName}}/{suffix}"}, {"Ref": parameter}]
        }
    # The shared secret: the same default, and "none" still means track events are rejected.
    assert parameters["SharedSecretParamName"]["Default"] == ""
    assert template["Conditions"]["HasSharedSecret"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SharedSecretParamName"}, "none"]}]
    }
    assert variables["SHARED_SECRET_PARAM"] == {
        "Fn::If": [
            "HasSharedSecret",
            {
                "Fn::If": [
                    "DefaultSharedSecretParam",
                    {"Fn::Sub": "/${AWS::StackName}/shared-secret"},
                    {"Ref": "SharedSecretParamName"},
                ]
            },
            {"Ref": "AWS::NoValue"},
        ]
    }


def test_each_function_may_read_exactly_the_parameters_it_is_told_to_read(template) -> None:
    # The grant names each parameter through the same expression as the environment variable.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for function_name, names in (
        ("DestinationFunction", ("ACCESS_KEY_PARAM", "WRITE_KEYS_PARAM", "SHARED_SECRET_PARAM")),
        ("DrainFunction", ("ACCESS_KEY_PARAM", "SHARED_SECRET_PARAM")),
    ):
        resources = _grants(template["Resources"][function_name]["Properties"])["ReadOwnParameters"][1]
        granted = [r["Fn::Sub"][1]["Name"] for r in resources if isinstance(r.get("Fn::Sub"), list)]
        granted += [
            branch["Fn::Sub"][1]["Name"]
            for r in resources
            if "Fn::If" in r
            for branch in r["Fn::If"][1:]
            if isinstance(branch, dict) and "Fn::Sub" in branch
        ]
        expected = [variables[name] for name in names[:-1]] + [variables["SHARED_SECRET_PARAM"]["Fn::If"][1]]
        assert granted == expected, function_name
        for resource in resources:
            if isinstance(resource.get("Fn::Sub"), list):
                assert resource["Fn::Sub"][0].endswith(":parameter${Name}")


# -- alarms reach a person -----------------------------------------------------------------------


def _resolve(value: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """`value` as CloudFormation resolves it for these parameter values: Fn::If, Ref to a
    parameter, Fn::Not, Fn::Equals; AWS::NoValue drops the list item or the property."""
    if isinstance(value, list):
        items = [_resolve(item, parameters, conditions) for item in value]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    [(function, argument)] = value.items() if len(value) == 1 else [("", None)]
    if function == "Fn::If":
        name, then, otherwise = argument
        chosen = then if _resolve(conditions[name], parameters, conditions) else otherwise
        return _resolve(chosen, parameters, conditions)
    if function == "Fn::Not":
        return not _resolve(argument[0], parameters, conditions)
    if function == "Fn::Equals":
        left, right = (_resolve(side, parameters, conditions) for side in argument)
        return left == right
    if function == "Ref" and argument == "AWS::NoValue":
        return NO_VALUE
    if function == "Ref" and argument in parameters:
        return parameters[argument]
    if function.startswith("Fn::") or function == "Ref":
        return value
    resolved = {key: _resolve(item, parameters, conditions) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


NO_VALUE = object()
EMAIL_TOPIC = {"Ref": "AlarmEmailTopic"}
PAGER = "arn:aws:sns:us-east-1:123456789012:pager"


@pytest.mark.parametrize(
    ("email", "topic_arn", "notified"),
    [
        ("", "", []),
        ("ops@example.com", "", [EMAIL_TOPIC]),
        ("", PAGER, [PAGER]),
        ("ops@example.com", PAGER, [EMAIL_TOPIC, PAGER]),
    ],
)
def test_every_alarm_and_its_recovery_notify_the_email_and_the_existing_topic(
    template, email, topic_arn, notified
) -> None:
    # Given the stack deployed with AlarmEmail and AlarmTopicArn set (or not)
    parameters = {"AlarmEmail": email, "AlarmTopicArn": topic_arn}
    conditions = template["Conditions"]
    resources = template["Resources"]
    # Then the email topic exists exactly when an address is given, with that address subscribed
    topic = resources["AlarmEmailTopic"]
    assert _resolve(conditions[topic["Condition"]], parameters, conditions) is bool(email)
    assert topic["Properties"]["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}]
    # and every alarm tells both of going into ALARM and of coming back to OK
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert len(alarms) >= 8
    for name, alarm in alarms.items():
        for actions in ("AlarmActions", "OKActions"):
            assert _resolve(alarm[actions], parameters, conditions) == notified, (name, actions)


def test_the_alarm_email_parameter_takes_one_address_or_none(template) -> None:
    import re

    parameter = template["Parameters"]["AlarmEmail"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert all(pattern.fullmatch(value) for value in ("", "ops@example.com", "on-call+gainsight@acme.co.uk"))
    assert not any(pattern.fullmatch(value) for value in ("ops", "ops@example.com, dev@example.com", "a@b@c"))


# -- what a scanner asks of the template ---------------------------------------------------------

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_the_api_logs_each_request_as_json_without_secrets_or_payloads(template) -> None:
    # Given the stage's access log setting
    api = template["Resources"]["Api"]["Properties"]
    setting = api["AccessLogSetting"]
    # Then it writes to the stack's access log group, kept as long as the functions' logs
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    group = template["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # and each line is one JSON object (what API Gateway writes with its $context values filled in)
    fields = json.loads(setting["Format"])
    assert "\n" not in setting["Format"]
    assert {"requestId", "status", "path", "method", "error"} <= set(fields)
    assert all(value.startswith("$context.") for value in fields.values())
    # and nothing in it carries a write key, a header or what the sender sent
    variables = " ".join(fields.values()).lower()
    for secret in ("authorization", "authorizer", "apikey", "api-key", "header", "body", "$input", "$stagevariables"):
        assert secret not in variables, secret


@pytest.mark.parametrize("key", ["", KEY])
def test_the_event_table_and_every_log_group_use_the_customers_key_when_given(template, key) -> None:
    # Given the stack deployed with KmsKeyArn set (or not)
    parameters = {"KmsKeyArn": key}
    conditions = template["Conditions"]
    resources = template["Resources"]

    def resolve(value: Any) -> Any:
        return _resolve(value, parameters, conditions)

    # Then the event table is encrypted with that key (else with DynamoDB's AWS-managed key)
    sse = resolve(resources["EventTable"]["Properties"]["SSESpecification"])
    assert sse == ({"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": key} if key else {"SSEEnabled": True})
    # and so is every log group, each kept for LogRetentionDays
    groups = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert set(groups) == {"DestinationFunctionLogGroup", "DrainFunctionLogGroup", "ApiAccessLogGroup"}
    for name, group in groups.items():
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
        assert resolve(group).get("KmsKeyId") == (key or None), name
    # and each function may use the key through DynamoDB only, and only when there is one
    for function in ("DestinationFunction", "DrainFunction"):
        grants = _grants(resources[function]["Properties"], resolve)
        assert ("EventStoreKey" in grants) is bool(key), function
        if key:
            actions, [resource] = grants["EventStoreKey"]
            assert actions == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"}
            assert resource == key
            [statement] = [
                s for p in resolve(resources[function]["Properties"]["Policies"]) for s in p["Statement"]
                if s["Sid"] == "EventStoreKey"
            ]  # fmt: skip
            assert statement["Condition"] == {
                "StringEquals": {"kms:ViaService": {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}}
            }


def test_the_kms_key_parameter_takes_a_key_arn_or_nothing(template) -> None:
    import re

    parameter = template["Parameters"]["KmsKeyArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(KEY)
    # A log group takes a key ARN only: an alias or a bare key id would fail mid-deploy.
    assert not pattern.fullmatch("alias/gainsight")
    assert not pattern.fullmatch("arn:aws:kms:eu-west-1:123456789012:alias/gainsight")
    assert not pattern.fullmatch("1234abcd-12ab-34cd-56ef-1234567890ab")


@pytest.mark.parametrize("sets_role", ["true", "false"])
def test_the_api_stage_waits_for_the_regions_logs_role_when_the_stack_sets_it(template, sets_role) -> None:
    # API Gateway refuses a stage with access logs until the region's settings name a logs role.
    resources = template["Resources"]
    conditions = template["Conditions"]
    parameters = {"SetApiGatewayLogsRole": sets_role}
    assert template["Parameters"]["SetApiGatewayLogsRole"]["Default"] == "true"
    for name in ("ApiGatewayLogsRole", "ApiGatewayAccount"):
        assert _resolve(conditions[resources[name]["Condition"]], parameters, conditions) is (sets_role == "true")
        # kept when the stack goes: other APIs in the region log through the same setting
        assert (resources[name]["DeletionPolicy"], resources[name]["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert resources["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]
    }
    # The Api depends on a handle that refers to the account setting exactly when it is created.
    handle = resources[resources["Api"]["DependsOn"]]
    assert "Condition" not in handle
    after = _resolve(handle["Metadata"]["After"], parameters, conditions)
    assert (after == {"Ref": "ApiGatewayAccount"}) is (sets_role == "true")


def test_every_check_the_template_skips_says_why(template) -> None:
    # Given checkov's skips, kept in the resources they apply to
    skips = {
        (name, skip["id"]): skip.get("comment", "")
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    # Then each has a one-line reason, and the two that apply are fixed, never skipped
    assert skips
    for (name, check), reason in skips.items():
        assert reason.strip() and "\n" not in reason.strip(), (name, check)
    skipped = {check for _, check in skips}
    assert not skipped & {"CKV_AWS_76", "CKV_AWS_119", "CKV_AWS_158"}  # access logs, table key, log group key
