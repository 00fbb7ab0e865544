"""Admission checks of a CRD's schema, done the way the API server does them, for tests.

The API server (1) prunes or, with kubectl's default strict field validation, refuses unknown
fields, (2) applies ``default`` values, (3) validates the OpenAPI v3 schema, then (4) evaluates the
CEL rules (``x-kubernetes-validations``), transition rules (with ``oldSelf``) only on updates where
the field existed before. This module does the same with ``jsonschema`` and ``cel-python`` and
words the errors as the API server does (``spec.maxAttempts: Invalid value: 50: …``), so tests can
assert the message a user would see from ``kubectl apply``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "spine.marketspine.io_spineworkitems.yaml"


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def openapi_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def to_json_schema(node: dict[str, Any], *, path: str = "", strict: bool = True) -> dict[str, Any]:
    """The Kubernetes structural schema as a JSON Schema (draft 2020-12) a validator can run."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("description", "default"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub, path=f"{path}.{name}", strict=strict) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value, path=path, strict=strict)
        elif key == "anyOf":
            out[key] = [to_json_schema(v, path=path, strict=strict) for v in value]
        else:
            out[key] = value
    is_metadata = path == ".metadata"
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if strict and node.get("type") == "object" and "additionalProperties" not in node and not (is_metadata or preserve):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill ``default`` values like the API server does before validating."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for name, sub in (schema.get("properties") or {}).items():
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            value[name] = apply_defaults(sub, value[name])
    return value


def _path(parts: Iterator[Any] | list[Any]) -> str:
    return ".".join(str(p) for p in parts)


def _quoted(value: Any) -> str:
    return json.dumps(value)


def _format(error: jsonschema.ValidationError) -> str:
    where = _path(error.absolute_path)
    validator = error.validator
    if validator == "required":
        missing = str(error.message).split("'")[1]
        return f"{where + '.' if where else ''}{missing}: Required value"
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f'unknown field "{where + "." if where else ""}{extra[0]}"'
    if validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value)
        return f"{where}: Unsupported value: {_quoted(error.instance)}: supported values: {allowed}"
    value = _quoted(error.instance)
    invalid = f"{where}: Invalid value: {value}: {where} in body"
    if validator == "maximum":
        return f"{invalid} should be less than or equal to {error.validator_value}"
    if validator == "minimum":
        return f"{invalid} should be greater than or equal to {error.validator_value}"
    if validator == "pattern":
        return f"{where}: Invalid value: {value}: {where} in body should match '{error.validator_value}'"
    if validator in ("maxLength", "minLength", "maxItems", "maxProperties"):
        return f"{where}: Invalid value: {value}: {where} in body violates {validator} {error.validator_value}"
    if validator == "type":
        return f"{where}: Invalid value: {value}: {where} in body must be of type {error.validator_value}"
    if validator == "format":
        return f"{where}: Invalid value: {value}: {where} in body must be of type {error.validator_value}"
    return f"{where}: {error.message}"


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
    return True


@_FORMATS.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    if isinstance(value, str):
        date.fromisoformat(value)
    return True


_CEL = celpy.Environment()


def _cel_value(value: Any) -> str:
    """How the API server (1.36) shows the value a CEL rule refused: nothing for an object or a
    list, the JSON value for a scalar (``spec.retryRequest: Invalid value: 2: …``)."""
    return "" if isinstance(value, dict | list) else f"{json.dumps(value)}: "


def _to_cel(schema: dict[str, Any], value: Any) -> Any:
    """The value as the API server's CEL sees it: a ``format: date`` or ``date-time`` string is a
    timestamp there (``self.getDayOfWeek()``), not a string."""
    if isinstance(value, str) and schema.get("format") in ("date", "date-time"):
        stamp = value + "T00:00:00Z" if schema["format"] == "date" else value
        return celpy.celtypes.TimestampType(stamp)
    return celpy.json_to_cel(value)


def _rules(schema: dict[str, Any], value: Any, old: Any, path: list[str], has_old: bool) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations") or []:
        expression = rule["rule"]
        transition = "oldSelf" in expression
        if transition and not has_old:
            continue
        activation = {"self": _to_cel(schema, value)}
        if transition:
            activation["oldSelf"] = _to_cel(schema, old)
        result = _CEL.program(_CEL.compile(expression)).evaluate(activation)
        if not bool(result):
            where = ".".join(path) or "<nil>"
            message = rule.get("message") or f"failed rule: {expression}"
            yield f"{where}: Invalid value: {_cel_value(value)}{message}"
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                old_sub = old.get(name) if isinstance(old, dict) else None
                sub_has_old = has_old and isinstance(old, dict) and name in old
                yield from _rules(sub, value[name], old_sub, [*path, name], sub_has_old)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                old_item = old.get(name) if isinstance(old, dict) else None
                yield from _rules(
                    extra, item, old_item, [*path, name], has_old and isinstance(old, dict) and name in old
                )


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None, crd: dict[str, Any] | None = None) -> list[str]:
    """The API server's refusal messages for creating ``obj`` (or updating ``old`` to it); [] = accepted."""
    schema = openapi_schema(crd or load_crd())
    obj = apply_defaults(schema, copy.deepcopy(obj))
    if old is not None:
        old = apply_defaults(schema, copy.deepcopy(old))
    validator = jsonschema.Draft202012Validator(to_json_schema(schema), format_checker=_FORMATS)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    messages = [_format(e) for e in errors]
    if messages:
        return messages  # like the API server: CEL rules run only on a schema-valid object
    return list(_rules(schema, obj, old, [], old is not None))
