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


STAGE_COLOURS = {
    "alpha": "#d9822b",
    "beta": "#3f6fb5",
    "ga": "#2f7d46",
    "deprecated": "#8792a2",
    "removed": "#a1001a",
}


@dataclass(frozen=True)
class Span:
    label: str  # stage, or "removed"
    first: str  # first release, e.g. 1.10
    last: str  # last release, or "" for still open
    x: float  # percent of the strip
    width: float
    colour: str


@dataclass(frozen=True)
class Strip:
    name: str
    spans: tuple[Span, ...]

    @property
    def text(self) -> str:
        parts = [
            f"removed in {s.first}"
            if s.label == "removed"
            else f"{s.label} {s.first}{'-' + s.last if s.last else ' on'}"
            for s in self.spans
        ]
        return f"{self.name}: " + ", ".join(parts)


def gate_strip(
    name: str, timeline: Sequence[tuple[str, tuple[int, int], tuple[int, int] | None]], removed, oldest, newest
) -> Strip:
    """A gate's life across the releases ``oldest`` to ``newest``, one slot per minor: a span per
    stage (alpha, beta, ga, deprecated), and the removal to the end."""
    count = newest[1] - oldest[1] + 1

    def slot(minor):
        return 100.0 * (minor[1] - oldest[1]) / count

    spans = []
    for stage, first, last in timeline:
        end = last or newest
        spans.append(
            Span(
                stage,
                f"{first[0]}.{first[1]}",
                f"{last[0]}.{last[1]}" if last else "",
                round(slot(first), 3),
                round(slot(end) - slot(first) + 100.0 / count, 3),
                STAGE_COLOURS.get(stage, "#999"),
            )
        )
    if removed is not None and removed <= newest:
        spans.append(
            Span(
                "removed",
                f"{removed[0]}.{removed[1]}",
                "",
                round(slot(removed), 3),
                round(100.0 - slot(removed), 3),
                STAGE_COLOURS["removed"],
            )
        )
    return Strip(name, tuple(spans))


@dataclass(frozen=True)
class Column:
    label: str  # the moment, in words with its time zone
    x: float
    width: float
    segments: tuple[Segment, ...]  # y and height in Segment.x / Segment.width, percent of the height
    drift_y: float | None


@dataclass(frozen=True)
class HistoryChart:
    columns: tuple[Column, ...]
    peak: int
    text: str


def history_chart(name: str, points: Sequence[Mapping], label) -> HistoryChart:
    """One stacked column per point (nodes by observed mode, bottom up in ``MODE_ORDER``) on a
    common scale, and the drifting nodes as a line across them. ``label(moment)`` words each
    point's moment."""
    peak = max([sum(p["modes"].values()) for p in points] + [1])
    width = 100.0 / max(1, len(points))
    columns = []
    for index, point in enumerate(points):
        y, segments = 100.0, []
        labels = [k for k in MODE_ORDER if point["modes"].get(k)] + sorted(
            k for k in point["modes"] if k not in MODE_ORDER and point["modes"][k]
        )
        for mode in labels:
            height = 100.0 * point["modes"][mode] / peak
            y -= height
            segments.append(
                Segment(mode, point["modes"][mode], round(y, 3), round(height, 3), MODE_COLOURS.get(mode, "#999"))
            )
        drift_y = round(100.0 - 100.0 * point["drift"] / peak, 3) if point["drift"] else None
        columns.append(
            Column(label(point["at"]), round(index * width, 3), round(width * 0.9, 3), tuple(segments), drift_y)
        )
    last = points[-1] if points else {"modes": {}, "drift": 0}
    now_text = ", ".join(f"{n} {m}" for m, n in last["modes"].items()) or "no node read"
    text = f"{name}: {len(points)} moments; at the last, {now_text}; {last['drift']} drifting"
    return HistoryChart(tuple(columns), peak, text)
