"""The catalog of Kubernetes feature gates: each gate's stage, default and lock at any kubelet minor.
Pure module: no Django import.

The data is ``gates/data/feature_gates.json`` (see ``gates/data/PROVENANCE.md``), or a newer file of
the same shape. A kubelet of minor V recognises a gate when ``first_release <= V < removed_in``; the
stage at V is the stage whose ``from <= V <= to`` (on overlaps the later ``from`` wins, and a gap
keeps the earlier stage); a gate set against its default is refused from ``locked_to_default_from``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parent / "data" / "feature_gates.json"
STAGES = ("alpha", "beta", "ga", "deprecated")
_MINOR = re.compile(r"^(\d{1,3})\.(\d{1,3})(?:\.\d{1,4})?$")  # a patch release belongs to its line

Minor = tuple[int, int]


class CatalogError(ValueError):
    """A catalog file that does not have the expected shape; the message says where."""


def parse_minor(text: Any) -> Minor:
    match = _MINOR.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a release line such as 1.19")
    return int(match.group(1)), int(match.group(2))


def minor_label(minor: Minor) -> str:
    return f"{minor[0]}.{minor[1]}"


@dataclass(frozen=True)
class Stage:
    stage: str
    default: bool | None
    start: Minor
    end: Minor | None

    def covers(self, minor: Minor) -> bool:
        return self.start <= minor and (self.end is None or minor <= self.end)


@dataclass(frozen=True)
class GateState:
    """What one kubelet minor makes of a gate."""

    recognised: bool
    stage: str | None
    default: bool | None
    locked: bool


@dataclass(frozen=True)
class Gate:
    name: str
    stages: tuple[Stage, ...]
    first_release: Minor
    removed_in: Minor | None
    locked_from: Minor | None
    defined_in: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    def recognised(self, minor: Minor) -> bool:
        return self.first_release <= minor and (self.removed_in is None or minor < self.removed_in)

    def stage_at(self, minor: Minor) -> Stage | None:
        """The stage at ``minor``: the covering stage with the latest start, else (a gap between
        stages) the last one that started before it; None before the first."""
        covering = [s for s in self.stages if s.covers(minor)]
        if covering:
            return max(covering, key=lambda s: s.start)
        started = [s for s in self.stages if s.start <= minor]
        return max(started, key=lambda s: s.start) if started else None

    def locked_at(self, minor: Minor) -> bool:
        return self.locked_from is not None and minor >= self.locked_from

    def state_at(self, minor: Minor) -> GateState:
        stage = self.stage_at(minor)
        return GateState(
            recognised=self.recognised(minor),
            stage=stage.stage if stage else None,
            default=stage.default if stage else None,
            locked=self.locked_at(minor),
        )

    def timeline(self) -> list[tuple[str, Minor, Minor | None]]:
        """(stage, first minor, last minor) in order, ending at the removal when there is one, for
        drawing: placeholders (a stage "from 1.0") start at the gate's first release."""
        spans = []
        for stage in sorted(self.stages, key=lambda s: s.start):
            start = max(stage.start, self.first_release)
            end = stage.end
            if self.removed_in is not None:
                last = (self.removed_in[0], self.removed_in[1] - 1)
                end = last if end is None or end > last else end
            if end is not None and end < start:
                continue
            spans.append((stage.stage, start, end))
        return spans


@dataclass(frozen=True)
class Catalog:
    gates: Mapping[str, Gate]
    newest: Minor
    oldest: Minor
    source: str = ""

    def get(self, name: str) -> Gate | None:
        return self.gates.get(name)

    def releases(self) -> list[Minor]:
        return [(1, minor) for minor in range(self.oldest[1], self.newest[1] + 1)]

    def judged_minor(self, minor: Minor) -> Minor:
        """The minor a kubelet is judged as: itself, or the newest known when it is newer."""
        return min(minor, self.newest)

    def search(self, text: str = "", stage: str | None = None, at: Minor | None = None) -> list[Gate]:
        """Gates whose name contains ``text`` (any case). With ``at``: those a kubelet of that minor
        recognises, in ``stage`` there if given (``removed``: gone by then). Without: those that were
        ever in ``stage`` (``removed``: removed at some release)."""
        needle = text.casefold()
        found = [g for g in self.gates.values() if needle in g.name.casefold() and _matches(g, stage, at)]
        return sorted(found, key=lambda g: g.name.casefold())


def _matches(gate: Gate, stage: str | None, at: Minor | None) -> bool:
    if stage == "removed":
        return gate.removed_in is not None and (at is None or at >= gate.removed_in)
    if at is not None:
        return gate.recognised(at) and (not stage or gate.state_at(at).stage == stage)
    return not stage or any(s.stage == stage for s in gate.stages)


def _minor_or_none(value: Any, where: str) -> Minor | None:
    if value is None:
        return None
    try:
        return parse_minor(value)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _gate(name: str, raw: Any) -> Gate:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("stages"), list) or not raw["stages"]:
        raise CatalogError(f"gates.{name}: needs a non-empty 'stages' list")
    stages = []
    for index, stage in enumerate(raw["stages"]):
        where = f"gates.{name}.stages[{index}]"
        if not isinstance(stage, Mapping) or stage.get("stage") not in STAGES:
            raise CatalogError(f"{where}: 'stage' must be one of {', '.join(STAGES)}")
        default = stage.get("default")
        if default is not None and not isinstance(default, bool):
            raise CatalogError(f"{where}: 'default' must be true, false or null")
        start = _minor_or_none(stage.get("from"), where)
        if start is None:
            raise CatalogError(f"{where}: 'from' is required")
        stages.append(Stage(stage["stage"], default, start, _minor_or_none(stage.get("to"), where)))
    first = _minor_or_none(raw.get("first_release"), f"gates.{name}.first_release") or min(s.start for s in stages)
    return Gate(
        name=name,
        stages=tuple(stages),
        first_release=first,
        removed_in=_minor_or_none(raw.get("removed_in"), f"gates.{name}.removed_in"),
        locked_from=_minor_or_none(raw.get("locked_to_default_from"), f"gates.{name}.locked_to_default_from"),
        defined_in=tuple(raw.get("defined_in") or ()),
        notes=tuple(raw.get("notes") or ()),
    )


def catalog_from(data: Any, source: str = "") -> Catalog:
    """A catalog from a parsed file; raises :class:`CatalogError` naming what is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("gates"), Mapping) or not data["gates"]:
        raise CatalogError("a catalog is an object with a non-empty 'gates' map")
    gates = {name: _gate(name, raw) for name, raw in data["gates"].items()}
    marks: list[Minor] = []
    for gate in gates.values():
        marks += [gate.first_release, *(s.start for s in gate.stages if s.start[1] > 0)]
        marks += [s.end for s in gate.stages if s.end]
        if gate.locked_from:
            marks.append(gate.locked_from)
    real = [m for m in marks if m >= (1, 1)]
    return Catalog(
        gates=gates, newest=max(real), oldest=min(gate.first_release for gate in gates.values()), source=source
    )


def load_catalog(path: str | Path = SHIPPED) -> Catalog:
    """The catalog in ``path`` (the shipped one by default), parsed once per process and again only
    when the file changes."""
    try:
        stamp = Path(path).stat().st_mtime_ns
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc}") from None
    return _load(str(path), stamp)


@lru_cache(maxsize=4)
def _load(path: str, stamp: int) -> Catalog:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CatalogError(f"cannot read {path}: {str(exc)[:200]}") from None
    return catalog_from(data, source=path)
