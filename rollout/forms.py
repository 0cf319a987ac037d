"""The dashboard's rollout form: HTML form fields to the API's input, and the API's errors back to
form fields. Validation itself is the API's (``RolloutInputSerializer``), so the form, the API and
the command accept and refuse exactly the same rollouts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.http import QueryDict

from .api.serializers import RolloutInputSerializer

TEXT_FIELDS = (
    "name",
    "cluster",
    "kind",
    "intent",
    "canary_count",
    "batch_size",
    "max_unavailable",
    "soak_seconds",
    "max_failures",
    "busy_policy",
    "drain",
    "drain_timeout",
)
CHECKBOXES = ("auto_rollback", "pause_after_canary", "canary_analysis", "delete_emptydir_data", "start")
# Where each error of the API's input lands in the form (by the form field's name).
ERROR_FIELDS = {
    "selector.labels": "labels",
    "selector.nodes": "nodes",
    "selector": "labels",
    "window.start": "window_start",
    "window.end": "window_end",
    "window.days": "window_days",
    "window.tz": "window_tz",
    "window": "window_start",
}
# The form's own words for its fields, for errors shown away from the field (the live preview).
FIELD_LABELS = {
    "name": "Name",
    "cluster": "Cluster",
    "kind": "Change",
    "intent": "Mode",
    "feature_gates": "Feature gates",
    "labels": "Only nodes with labels",
    "nodes": "Only these nodes",
    "canary_count": "Canary nodes",
    "batch_size": "Wave size",
    "max_unavailable": "At most in flight",
    "soak_seconds": "Soak between waves",
    "max_failures": "Failure budget",
    "busy_policy": "Nodes busy in another rollout",
    "drain": "Cordon and drain each node",
    "drain_timeout": "Drain timeout",
    "window_start": "Maintenance window: from",
    "window_end": "Maintenance window: to",
    "window_tz": "Maintenance window: time zone",
    "window_days": "Maintenance window: days",
    "form": "The rollout",
}


def labelled(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Errors keyed by the form's words for each field."""
    return {FIELD_LABELS.get(field, field.replace("_", " ")): messages for field, messages in errors.items()}


INITIAL = {
    "kind": "pid",
    "intent": "shared",
    "canary_count": "1",
    "batch_size": "10",
    "max_unavailable": "5",
    "soak_seconds": "0",
    "max_failures": "0",
    "busy_policy": "refuse",
    "drain": "",
    "drain_timeout": "600",
    "auto_rollback": True,
    "window_tz": "UTC",
}


class FormError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in re.split(r"[,\n]", text))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FormError("labels", f"{item[:60]!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def _gates(text: str) -> dict[str, Any]:
    gates: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in re.split(r"[,\s]+", text))):
        name, sep, value = item.partition("=")
        lowered = value.strip().lower()
        if not sep or lowered not in ("true", "false", "null"):
            raise FormError("feature_gates", f"{item[:60]!r} is not Name=true, Name=false or Name=null")
        gates[name.strip()] = None if lowered == "null" else lowered == "true"
    return gates


def form_values(post: QueryDict) -> dict[str, Any]:
    """The form's values as entered, for re-displaying it (checkboxes as booleans)."""
    values = {
        key: str(post.get(key, ""))
        for key in (*TEXT_FIELDS, "labels", "nodes", "feature_gates", "window_start", "window_end")
    }
    values["window_tz"] = str(post.get("window_tz", "")) or "UTC"
    values["window_days"] = post.getlist("window_days")
    for key in CHECKBOXES:
        values[key] = post.get(key) in ("on", "true", "1")
    return values


def api_input(post: QueryDict) -> dict[str, Any]:
    """The API's input for a submitted form. Raises FormError for text the API cannot receive."""
    values = form_values(post)
    data: dict[str, Any] = {key: values[key] for key in TEXT_FIELDS if values[key] != ""}
    for key in CHECKBOXES:
        data[key] = values[key]
    selector: dict[str, Any] = {}
    if values["labels"].strip():
        selector["labels"] = _labels(values["labels"])
    nodes = [n for n in re.split(r"[\s,]+", values["nodes"]) if n]
    if nodes:
        selector["nodes"] = nodes
    data["selector"] = selector
    if values["kind"] == "gates":
        data.pop("intent", None)
        data["feature_gates"] = _gates(values["feature_gates"])
    if values["window_start"] or values["window_end"]:
        window = {"start": values["window_start"], "end": values["window_end"], "tz": values["window_tz"]}
        if values["window_days"]:
            window["days"] = values["window_days"]
        data["window"] = window
    return data


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(errors, Mapping):
        items = [(prefix if k == "non_field_errors" else f"{prefix}.{k}".lstrip("."), v) for k, v in errors.items()]
    elif isinstance(errors, list):
        items = [(prefix, item) for item in errors]
    else:
        return {prefix: [str(errors)]}
    for name, value in items:
        for field, messages in _flatten(value, name).items():
            flat.setdefault(field, []).extend(messages)
    return flat


def form_errors(errors: Any) -> dict[str, list[str]]:
    """The API's (possibly nested) errors keyed by the form field they belong to."""
    result: dict[str, list[str]] = {}
    for field, messages in _flatten(errors).items():
        key = field
        while key not in ERROR_FIELDS and "." in key:
            key = key.rsplit(".", 1)[0]
        result.setdefault(ERROR_FIELDS.get(key, key or "form"), []).extend(messages)
    return result


def validate(post: QueryDict) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """(validated API input, {}) or (None, errors by form field)."""
    try:
        data = api_input(post)
    except FormError as exc:
        return None, {exc.field: [str(exc)]}
    serializer = RolloutInputSerializer(data=data)
    if not serializer.is_valid():
        return None, form_errors(serializer.errors)
    return serializer.validated_data, {}
