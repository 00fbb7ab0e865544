"""The SpineWorkItem CRD: structural, documented, and in agreement with the pydantic models; the
example manifests in docs/examples/ are accepted, and the bad ones in docs/examples/invalid/ are
refused with the readable message a user would get from ``kubectl apply`` (schema and CEL rules)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from market_spine.core.backoff import RetryPolicy
from market_spine.core.partitions import DOMAIN, Tier
from market_spine.core.resource import (
    CATEGORY,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    AttemptOutcome,
    AttemptRecord,
    Condition,
    ConditionType,
    ResourceRequirements,
    SpineWorkItem,
    WorkItemResourceSpec,
    WorkItemStatus,
)
from market_spine.core.states import WorkState
from market_spine.core.workitem import FinraPartition
from tests.operator.crdcheck import load_crd, openapi_schema, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
GOOD = sorted(EXAMPLES.glob("*.yaml"))
BAD = sorted((EXAMPLES / "invalid").glob("*.yaml"))

CRD = load_crd()
SCHEMA = openapi_schema(CRD)
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        found += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


# --- the CRD itself ----------------------------------------------------------------------------


def test_names_scope_and_subresources() -> None:
    spec = CRD["spec"]
    assert CRD["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["plural"] == PLURAL
    assert spec["names"]["shortNames"] == [SHORT_NAME]
    assert spec["names"]["categories"] == [CATEGORY]
    assert "all" not in spec["names"]["categories"]
    (version,) = spec["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in CRD["spec"]["versions"][0]["additionalPrinterColumns"]}
    default = [name for name, c in columns.items() if not c.get("priority")]
    assert default == ["Pipeline", "Week", "Tier", "State", "Attempts", "Next Attempt", "Age"]
    assert {"Job", "Last Error", "Ready"} <= {name for name, c in columns.items() if c.get("priority") == 1}
    assert columns["Age"]["type"] == "date"
    assert columns["Next Attempt"]["type"] == "string"  # kubectl shows future dates as <invalid>
    for column in columns.values():
        assert column["description"]
        path = column["jsonPath"].lstrip(".").split("[")[0].split(".")
        node = SCHEMA
        for part in path:
            if part == "metadata":
                break
            node = node["properties"][part]


def test_schema_is_structural_and_every_field_is_described() -> None:
    # metadata is the one exception: the API server refuses anything but `type: object` there
    # ("must not specify anything other than name and generateName"), a description included.
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}
    for path, node in _walk(SCHEMA):
        if path == ".metadata":
            continue
        assert node.get("description") or path.endswith("{}"), f"{path or '<root>'} has no description"
        if path.endswith("{}") and "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
            continue
        assert "type" in node, f"{path} has no type (not structural)"
        assert not (node["type"] == "object" and node.get("x-kubernetes-preserve-unknown-fields")), path


def test_every_rule_has_a_readable_message() -> None:
    rules = [(path, r) for path, node in _walk(SCHEMA) for r in node.get("x-kubernetes-validations") or []]
    assert len(rules) >= 8
    for path, rule in rules:
        assert rule.get("message"), f"{path}: rule {rule['rule']!r} has no message"
        assert len(rule["message"]) > 20


# --- the CRD and the models agree --------------------------------------------------------------


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(info.alias or name): info for name, info in model.model_fields.items()}


PAIRS: list[tuple[str, dict[str, Any], type[BaseModel]]] = [
    ("spec", SPEC, WorkItemResourceSpec),
    ("spec.partition", SPEC["properties"]["partition"], FinraPartition),
    ("spec.retry", SPEC["properties"]["retry"], RetryPolicy),
    ("spec.resources", SPEC["properties"]["resources"], ResourceRequirements),
    ("status", STATUS, WorkItemStatus),
    ("status.conditions[]", STATUS["properties"]["conditions"]["items"], Condition),
    ("status.history[]", STATUS["properties"]["history"]["items"], AttemptRecord),
]


@pytest.mark.parametrize(("where", "node", "model"), PAIRS, ids=[p[0] for p in PAIRS])
def test_properties_are_model_fields_and_back(where: str, node: dict[str, Any], model: type[BaseModel]) -> None:
    assert set(node["properties"]) == set(_fields(model)), where


@pytest.mark.parametrize(("where", "node", "model"), PAIRS, ids=[p[0] for p in PAIRS])
def test_required_defaults_and_ranges_agree(where: str, node: dict[str, Any], model: type[BaseModel]) -> None:
    fields = _fields(model)
    required = {name for name, info in fields.items() if info.is_required()}
    if where == "spec":
        required = {"pipeline", "partition"}  # domain is required-with-a-default in both
    assert set(node.get("required") or []) == required, where
    for name, prop in node["properties"].items():
        info = fields[name]
        if "default" in prop:
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                assert prop["default"] == {}, name
                continue
            assert prop["default"] == default, f"{where}.{name}: CRD default {prop['default']!r}, model {default!r}"
        bounds = {type(m).__name__: m for m in info.metadata}
        for crd_key, kind, attr in (("minimum", "Ge", "ge"), ("maximum", "Le", "le")):
            if crd_key in prop:
                assert kind in bounds, f"{where}.{name}: the CRD has {crd_key}, the model no {attr}"
                assert getattr(bounds[kind], attr) == prop[crd_key], f"{where}.{name}.{crd_key}"
            else:
                assert kind not in bounds or where.startswith("status"), f"{where}.{name}: model {attr} not in CRD"
        if "maxLength" in prop and info.metadata:
            lengths = [m for m in info.metadata if type(m).__name__ == "MaxLen"]
            assert [m.max_length for m in lengths] == [prop["maxLength"]], f"{where}.{name}.maxLength"


def test_enums_agree() -> None:
    assert SPEC["properties"]["partition"]["properties"]["tier"]["enum"] == [t.value for t in Tier]
    assert SPEC["properties"]["domain"]["enum"] == [DOMAIN]
    assert STATUS["properties"]["state"]["enum"] == [s.value for s in WorkState]
    conditions = STATUS["properties"]["conditions"]["items"]["properties"]
    assert conditions["type"]["enum"] == [c.value for c in ConditionType]
    assert STATUS["properties"]["history"]["items"]["properties"]["outcome"]["enum"] == [
        o.value for o in AttemptOutcome
    ]


def test_rules_and_model_validators_say_the_same() -> None:
    with pytest.raises(ValidationError, match="maxBackoffSeconds must be >= backoffSeconds"):
        RetryPolicy.model_validate({"backoffSeconds": 600, "maxBackoffSeconds": 300})
    with pytest.raises(ValidationError, match="not understood by `spine run`"):
        WorkItemResourceSpec.model_validate(_spec(params={"week": "x"}))
    with pytest.raises(ValidationError, match="one data source"):
        WorkItemResourceSpec.model_validate(_spec(params={"file": "a", "source": "finra-api"}))


def _spec(**extra: Any) -> dict[str, Any]:
    return {
        "pipeline": "finra.otc_transparency.ingest_week",
        "partition": {"week": "2025-12-15", "tier": "OTC"},
    } | extra


# --- examples ------------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_good_examples_are_accepted_by_the_schema_and_the_models(path: Path) -> None:
    (obj,) = _documents(path)
    assert validate(obj) == []
    model = SpineWorkItem.model_validate(obj)
    assert model.spec.pipeline.startswith(model.spec.domain + ".")


def test_the_examples_cover_every_spec_field() -> None:
    used: set[str] = set()
    for path in GOOD:
        for obj in _documents(path):
            used |= set(obj["spec"])
    requests = {"cancel", "retryRequest", "wakeRequest", "dismissRequest", "dismissReason"}  # set by `spine work`
    assert used >= set(SPEC["properties"]) - requests


def _expected(path: Path) -> str:
    match = re.search(r"^# refused: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} does not say why it is refused (a '# refused: …' line)"
    return match.group(1).strip()


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_examples_are_refused_with_a_readable_message(path: Path) -> None:
    documents = _documents(path)
    old, new = (documents[0], documents[1]) if len(documents) == 2 else (None, documents[0])
    if old is not None:
        assert validate(old) == [], "the stored object of an update example must itself be valid"
    messages = validate(new, old)
    assert _expected(path) in messages, messages


MODEL_EXEMPT = {"name-too-long.yaml"}  # metadata is the API server's, not the spec model's


@pytest.mark.parametrize("path", [p for p in BAD if p.name not in MODEL_EXEMPT], ids=lambda p: p.name)
def test_bad_examples_are_refused_by_the_models_too(path: Path) -> None:
    documents = _documents(path)
    if len(documents) == 2:
        # Immutability is the API server's (transition rules): the model accepts each state.
        old, new = documents
        assert WorkItemResourceSpec.model_validate(new["spec"]) != WorkItemResourceSpec.model_validate(old["spec"])
        return
    with pytest.raises(ValidationError):
        WorkItemResourceSpec.model_validate(documents[0].get("spec") or {})
