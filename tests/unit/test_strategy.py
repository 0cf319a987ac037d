"""Wave planning, maintenance windows, predicted duration."""

from datetime import UTC, datetime

import pytest

from rollout.strategy import Strategy, StrategyError, Window, parse_batch, plan_waves, predicted_seconds

NODES = [f"n{i:02d}" for i in range(10)]


@pytest.mark.parametrize(
    "strategy, sizes",
    [
        (Strategy(canary_count=1, batch_size=3), [1, 3, 3, 3]),
        (Strategy(canary_count=0, batch_size=4), [4, 4, 2]),
        (Strategy(canary_count=2, batch_size=25, batch_percent=True), [2, 3, 3, 2]),
        (Strategy(canary_count=20, batch_size=3), [10]),
        (Strategy(canary_count=1, batch_size=100), [1, 9]),
    ],
)
def test_plan_waves(strategy, sizes):
    waves = plan_waves(NODES, strategy)
    assert [len(w) for w in waves] == sizes
    assert [n for w in waves for n in w] == NODES


def test_plan_waves_empty():
    assert plan_waves([], Strategy()) == []


@pytest.mark.parametrize("value, expected", [(10, (10, False)), ("7", (7, False)), ("25%", (25, True))])
def test_parse_batch(value, expected):
    assert parse_batch(value) == expected


@pytest.mark.parametrize("value", ["0", "150%", "ten", "", True, None, "-3"])
def test_parse_batch_rejects(value):
    with pytest.raises(StrategyError) as excinfo:
        parse_batch(value)
    assert excinfo.value.field == "batch_size"


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_window_same_day():
    window = Window.parse({"days": ["mon", "tue"], "start": "09:00", "end": "17:00"})
    assert window.contains(at("2026-11-30T10:00"))  # a Monday
    assert not window.contains(at("2026-11-30T17:00"))
    assert not window.contains(at("2026-12-02T10:00"))  # a Wednesday
    assert window.next_open(at("2026-11-30T18:30")) == at("2026-12-01T09:00")


def test_window_over_midnight_belongs_to_its_start_day():
    window = Window.parse({"days": ["fri"], "start": "22:00", "end": "04:00"})
    assert window.contains(at("2026-11-27T23:00"))  # Friday night
    assert window.contains(at("2026-11-28T03:59"))  # Saturday morning, still Friday's window
    assert not window.contains(at("2026-11-28T23:00"))  # Saturday night


def test_window_time_zone():
    window = Window.parse({"start": "09:00", "end": "10:00", "tz": "Asia/Tokyo"})
    assert window.contains(at("2026-11-30T00:30"))  # 09:30 in Tokyo
    assert not window.contains(at("2026-11-30T09:30"))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"start": "9", "end": "10:00"}, "window.start"),
        ({"start": "09:00", "end": "25:00"}, "window.end"),
        ({"start": "09:00", "end": "09:00"}, "window.end"),
        ({"start": "09:00", "end": "10:00", "tz": "Mars/Olympus"}, "window.tz"),
        ({"days": ["someday"], "start": "09:00", "end": "10:00"}, "window.days"),
        ({"start": "09:00", "end": "10:00", "colour": "red"}, "window"),
        ("always", "window"),
    ],
)
def test_window_rejects_naming_the_part(raw, field):
    with pytest.raises(StrategyError) as excinfo:
        Window.parse(raw)
    assert excinfo.value.field == field


def test_predicted_seconds():
    strategy = Strategy(max_unavailable=2, soak_seconds=60)
    # waves of 1, 3, 3: ceil(1/2) + ceil(3/2) + ceil(3/2) = 5 slots of 10 s, plus 2 soaks
    assert predicted_seconds([1, 3, 3], strategy, 10) == 5 * 10 + 2 * 60
    assert predicted_seconds([], strategy, 10) == 0
