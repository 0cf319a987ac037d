"""Wave planning, maintenance windows and duration prediction. Pure module: no Django import."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

T = TypeVar("T")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_BATCH = re.compile(r"^(\d{1,6})(%?)$")


class StrategyError(ValueError):
    """A strategy value that cannot be used; ``field`` names it."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(message)


@dataclass(frozen=True)
class Window:
    """Days and hours in a time zone when new node operations may start.

    ``end`` before ``start`` spans midnight (22:00-04:00 belongs to the day it starts).
    """

    days: tuple[int, ...]
    start: time
    end: time
    tz: str = "UTC"

    @classmethod
    def parse(cls, raw: Any) -> Window | None:
        if raw in (None, {}):
            return None
        if not isinstance(raw, dict) or set(raw) - {"days", "start", "end", "tz"}:
            raise StrategyError("window", "a window is {days, start, end, tz}")
        days_raw = raw.get("days") or list(DAYS)
        if not isinstance(days_raw, list) or not all(isinstance(d, str) and d.lower()[:3] in DAYS for d in days_raw):
            raise StrategyError("window.days", f"days are names from {', '.join(DAYS)}")
        times = []
        for key in ("start", "end"):
            value = raw.get(key)
            match = _HHMM.match(value) if isinstance(value, str) else None
            if not match:
                raise StrategyError(f"window.{key}", f"{key} must be HH:MM (24-hour)")
            times.append(time(int(match.group(1)), int(match.group(2))))
        if times[0] == times[1]:
            raise StrategyError("window.end", "start and end must differ")
        tz = raw.get("tz", "UTC")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            raise StrategyError("window.tz", f"unknown time zone {str(tz)[:60]!r}") from None
        days = tuple(sorted({DAYS.index(d.lower()[:3]) for d in days_raw}))
        return cls(days, times[0], times[1], str(tz))

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": [DAYS[d] for d in self.days],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
            "tz": self.tz,
        }

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.tz))
        clock = local.time()
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= clock < self.end
        # Spans midnight: the evening part belongs to today, the morning part to yesterday.
        if clock >= self.start:
            return local.weekday() in self.days
        return clock < self.end and (local.weekday() - 1) % 7 in self.days

    def next_open(self, moment: datetime) -> datetime:
        """The first minute at or after ``moment`` inside the window (within 8 days)."""
        probe = moment.replace(second=0, microsecond=0)
        for _ in range(8 * 24 * 60):
            if self.contains(probe):
                return probe
            probe += timedelta(minutes=1)
        return probe


@dataclass(frozen=True)
class Strategy:
    canary_count: int = 1
    batch_size: int = 10
    batch_percent: bool = False
    max_unavailable: int = 5
    soak_seconds: int = 0
    max_failures: int = 0
    auto_rollback: bool = True
    pause_after_canary: bool = False
    window: Window | None = None

    def batch_count(self, remaining: int) -> int:
        if self.batch_percent:
            return max(1, math.ceil(remaining * self.batch_size / 100))
        return max(1, self.batch_size)


def parse_batch(value: Any) -> tuple[int, bool]:
    """``10`` or ``"10"`` (nodes) or ``"25%"`` (of the targeted nodes)."""
    match = _BATCH.match(str(value).strip()) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(1)) > 100):
        raise StrategyError("batch_size", "a number of nodes (at least 1) or a percentage like 25%")
    return int(match.group(1)), bool(match.group(2))


def plan_waves(items: Sequence[T], strategy: Strategy) -> list[list[T]]:
    """Wave 0 is the canary (when canary_count > 0); the rest follow in batches."""
    items = list(items)
    waves: list[list[T]] = []
    canary = min(strategy.canary_count, len(items))
    if canary:
        waves.append(items[:canary])
    rest = items[canary:]
    size = strategy.batch_count(len(items))
    for start in range(0, len(rest), size):
        waves.append(rest[start : start + size])
    return waves


def predicted_seconds(wave_sizes: Sequence[int], strategy: Strategy, seconds_per_node: float) -> float:
    """Each wave runs max_unavailable nodes at a time; soak follows every wave but the last."""
    total = sum(math.ceil(size / strategy.max_unavailable) * seconds_per_node for size in wave_sizes if size)
    gaps = max(0, len([s for s in wave_sizes if s]) - 1)
    return total + gaps * strategy.soak_seconds
