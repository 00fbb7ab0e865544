"""values.schema.json refuses misspelt keys and wrong types, and values.yaml documents every key."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .chartlib import ALL_FEATURES, CHART, HERE, HelmResult

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()


def test_misspelt_key_is_rejected_by_helm(template: Callable[..., HelmResult]) -> None:
    out = template([HERE / "values-invalid-typo.yaml"])
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert "at '/operator': additional properties 'replicaz' not allowed" in out.stderr


def test_wrong_type_is_rejected_by_helm(template: Callable[..., HelmResult]) -> None:
    out = template([HERE / "values-invalid-type.yaml"])
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert "at '/metrics/port': got string, want integer" in out.stderr


@pytest.mark.parametrize(
    ("sets", "where"),
    [
        (["cronjobs.enqueue.tiers={NMS_TIER_3}"], "/cronjobs/enqueue/tiers/0"),
        (["database.url=mysql://u:p@db/x"], "/database/url"),
        (["cronjobs.enqueue.schedule=weekly"], "/cronjobs/enqueue/schedule"),
        (["image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["metrics.port=70000"], "/metrics/port"),
        (["crds.enabeld=true"], "/crds"),
        (["prometheus.serviceMonitor.interval=30 seconds"], "/prometheus/serviceMonitor/interval"),
        (["operator.resources.limit.memory=1Gi"], "/operator/resources"),
        (["containerSecurityContext.readOnlyRootFilesytem=true"], "/containerSecurityContext"),
        (["calendar.publicationGraceDays=-1"], "/calendar/publicationGraceDays"),
        (["cronjobs.enqueue.week=last-monday"], "/cronjobs/enqueue/week"),
        # The settings of the earlier week model are gone: refused, not silently ignored.
        (["calendar.weekEndingWeekday=0"], "/calendar"),
        (["calendar.publicationLagDays.OTC=14"], "/calendar"),
        (["cronjobs.enqueue.weekEnding=latest"], "/cronjobs/enqueue"),
    ],
)
def test_schema_rejects_bad_values(template: Callable[..., HelmResult], sets: list[str], where: str) -> None:
    out = template(sets=sets)
    assert out.returncode != 0, f"{sets} was accepted"
    assert f"at '{where}'" in out.stderr, out.stderr


def _object_nodes(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, value in node.items():
            yield from _object_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _object_nodes(value, f"{path}/{i}")


def test_every_object_level_is_closed() -> None:
    """Chart-defined objects forbid unknown keys. The only open nodes are maps (labels,
    annotations, resource quantities: additionalProperties is a value schema) and the three
    deep Kubernetes affinity types, each marked with a $comment naming the Kubernetes type."""
    nodes = list(_object_nodes(SCHEMA))
    assert len(nodes) > 50
    open_nodes = []
    for path, node in nodes:
        assert "additionalProperties" in node, f"{path} does not say whether unknown keys are allowed"
        ap = node["additionalProperties"]
        if ap is False:
            continue
        if isinstance(ap, dict):
            assert "properties" not in node, f"{path}: a map must not also declare fixed properties"
            continue
        assert ap is True and node.get("$comment", "").startswith("Kubernetes "), path
        open_nodes.append(path.rsplit("/", 1)[-1])
    assert sorted(open_nodes) == ["nodeAffinity", "podAffinity", "podAntiAffinity"]


def test_every_values_property_has_a_description() -> None:
    def walk(node: dict[str, Any], path: str) -> Iterator[str]:
        for key, value in node.get("properties", {}).items():
            if "description" not in value:
                yield f"{path}.{key}"
            yield from walk(value, f"{path}.{key}")

    missing = list(walk(SCHEMA, ""))
    assert missing == []


def _key_lines(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    """Every mapping key of values.yaml (outside list items) with its 0-based line number."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            p = (*path, key.value)
            yield p, key.start_mark.line
            yield from _key_lines(value, p)


def test_every_values_key_is_commented() -> None:
    lines = VALUES_TEXT.splitlines()
    keys = list(_key_lines(yaml.compose(VALUES_TEXT)))
    assert len(keys) > 100
    uncommented = [".".join(path) for path, line in keys if line == 0 or not lines[line - 1].strip().startswith("#")]
    assert uncommented == []


def test_defaults_and_all_features_validate_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.validate(yaml.safe_load(VALUES_TEXT))
    validator.validate(yaml.safe_load(ALL_FEATURES.read_text()))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"operator": {"replicaz": 2}})


def test_schema_and_values_have_the_same_keys() -> None:
    """Every chart-owned schema property has a default in values.yaml, and the reverse, so the
    documented defaults are complete. $ref'd definitions and the two security contexts are
    Kubernetes types whose optional fields need no default."""
    values = yaml.safe_load(VALUES_TEXT)
    kubernetes_typed = {"podSecurityContext", "containerSecurityContext"}

    def walk(schema: dict[str, Any], value: dict[str, Any], path: str) -> Iterator[str]:
        props = schema.get("properties", {})
        for key in value:
            if key not in props:
                yield f"values.yaml key {path}{key} is not in the schema"
        for key, sub in props.items():
            if key not in value:
                yield f"schema property {path}{key} has no default in values.yaml"
            elif "properties" in sub and path + key not in kubernetes_typed:
                yield from walk(sub, value[key], f"{path}{key}.")

    assert list(walk(SCHEMA, values, "")) == []


def test_invalid_values_files_exist_for_docs() -> None:
    """The two invalid files are referenced by the chart README as examples of the schema's errors."""
    readme = (CHART / "README.md").read_text()
    for name in ("values-invalid-typo.yaml", "values-invalid-type.yaml"):
        assert (HERE / name).is_file()
        assert name in readme


def test_schema_file_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["additionalProperties"] is False
    assert Path(CHART / "values.schema.json").read_text().endswith("\n")


def _leaves(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[str]:
    if isinstance(node, yaml.MappingNode) and node.value:
        for key, value in node.value:
            yield from _leaves(value, (*path, key.value))
    else:
        yield ".".join(path)


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    leaves = list(_leaves(yaml.compose(VALUES_TEXT)))
    assert len(leaves) > 100
    assert [leaf for leaf in leaves if f"`{leaf}`" not in readme] == []
