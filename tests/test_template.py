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
    env = RecordingEnv(dict.fromkeys(variables, "1") | {"DELIVERY_BUDGET_SECONDS": "8"})
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


def test_the_function_may_only_read_and_decrypt_its_own_parameters(function) -> None:
    statements = [s for policy in function["Policies"] for s in policy["Statement"]]
    actions = {s["Sid"]: s["Action"] for s in statements}
    assert actions == {"ReadOwnParameters": "ssm:GetParameter", "DecryptOnlyThroughSsm": "kms:Decrypt"}
    read = next(s for s in statements if s["Sid"] == "ReadOwnParameters")
    assert len(read["Resource"]) == 4
    assert all("*" not in str(resource) for resource in read["Resource"])
    decrypt = next(s for s in statements if s["Sid"] == "DecryptOnlyThroughSsm")
    assert "kms:ViaService" in decrypt["Condition"]["StringEquals"]
