"""Reading inventory files (CSV, JSON, YAML) into rows for :func:`nodes.services.nodes_import`.

JSON and YAML hold either a list of nodes or ``{"clusters": [...], "nodes": [...]}``. CSV holds
nodes, one per line, with a header; ``labels`` and ``kubelet_flags`` cells are JSON objects or
``key=value`` pairs separated by ``;``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from core.hostile import MAX_DEPTH, HostileInput, check_structure, text_problem

FORMATS = ("csv", "json", "yaml")
_MAP_COLUMNS = ("labels", "kubelet_flags")
# The C safe loader when PyYAML has it: large inventories parse several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class InventoryFileError(ValueError):
    """The file cannot be read as an inventory; the message says where and why."""


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix == "yml":
        return "yaml"
    if suffix in FORMATS:
        return suffix
    raise InventoryFileError(f"cannot tell the format of {path.name}; use --format csv|json|yaml")


def _map_cell(text: str, column: str, line: int) -> Any:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InventoryFileError(f"line {line}: {column}: bad JSON ({exc.msg})") from None
    result: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise InventoryFileError(f"line {line}: {column}: {pair.strip()[:60]!r} is not key=value")
        result[key.strip()] = value.strip()
    return result


def read_csv(text: str) -> tuple[list[dict], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        return [], _csv_rows(reader)
    except csv.Error as exc:
        # The reader counts the lines it finished; the error is on the next one.
        line = reader.line_num + 1
        if "field larger than field limit" in str(exc):
            raise InventoryFileError(
                f"line {line}: a cell is longer than {csv.field_size_limit()} characters"
            ) from None
        raise InventoryFileError(f"line {line}: {exc}") from None


def _csv_rows(reader: csv.DictReader) -> list[dict]:
    if not reader.fieldnames:
        raise InventoryFileError("the CSV file has no header line")
    nodes = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise InventoryFileError(f"line {line}: more cells than header columns")
        clean: dict[str, Any] = {}
        for column, cell in row.items():
            if cell is None:
                continue
            column = column.strip()
            if column in _MAP_COLUMNS:
                clean[column] = _map_cell(cell, column, line)
            elif cell.strip() != "" or column in ("cluster", "name"):
                clean[column] = cell.strip()
        nodes.append(clean)
    return nodes


def _split_document(data: Any) -> tuple[list, list]:
    if isinstance(data, list):
        return [], data
    if isinstance(data, dict):
        unknown = set(data) - {"clusters", "nodes"}
        if unknown:
            raise InventoryFileError(f"unknown top-level keys: {', '.join(sorted(map(str, unknown)))}")
        clusters, nodes = data.get("clusters") or [], data.get("nodes") or []
        if not isinstance(clusters, list) or not isinstance(nodes, list):
            raise InventoryFileError("'clusters' and 'nodes' must be lists")
        return clusters, nodes
    raise InventoryFileError("expected a list of nodes or an object with 'clusters' and 'nodes'")


def read_inventory(path: Path, fmt: str | None = None) -> tuple[list, list]:
    """Read an inventory file. Returns (clusters, nodes) as plain rows, not yet validated."""
    fmt = fmt or detect_format(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryFileError(f"cannot read {path}: {exc}") from None
    problem = text_problem(text)
    if problem:
        raise InventoryFileError(f"{path.name}: the file {problem}")
    if fmt == "csv":
        return read_csv(text)
    try:
        data = (
            json.loads(text) if fmt == "json" else yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 (a safe loader)
        )
    except json.JSONDecodeError as exc:
        raise InventoryFileError(f"{path.name}: bad JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise InventoryFileError(f"{path.name}: bad YAML: {str(exc)[:300]}") from None
    except RecursionError:
        raise InventoryFileError(f"{path.name}: nested more than {MAX_DEPTH} levels deep") from None
    try:
        check_structure(data)
    except HostileInput as exc:
        raise InventoryFileError(f"{path.name}: {exc}") from None
    return _split_document(data)
