"""Charts drawn on the server as SVG geometry (no JavaScript, no network): pure functions that
turn counts into shapes, rendered by templates with a text equivalent beside each chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MODE_ORDER = ("shared", "per-pod", "isolated", "mixed", "unknown")
MODE_COLOURS = {
    "shared": "#2f7d46",
    "per-pod": "#3f6fb5",
    "isolated": "#8792a2",
    "mixed": "#d9822b",
    "unknown": "#c9ced6",
}


@dataclass(frozen=True)
class Segment:
    label: str
    count: int
    x: float  # percent of the bar's width
    width: float
    colour: str


@dataclass(frozen=True)
class Bar:
    name: str
    total: int
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return f"{self.name}: " + ", ".join(f"{s.count} {s.label}" for s in self.segments)


def stacked_bar(name: str, counts: Mapping[str, int], order: Sequence[str] = MODE_ORDER) -> Bar:
    """One 100%-wide bar split by ``counts`` (known labels in ``order`` first, others after)."""
    total = sum(counts.values())
    labels = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order and counts[k])
    segments, x = [], 0.0
    for label in labels:
        width = 100.0 * counts[label] / total if total else 0.0
        segments.append(Segment(label, counts[label], round(x, 3), round(width, 3), MODE_COLOURS.get(label, "#999")))
        x += width
    return Bar(name, total, tuple(segments))
