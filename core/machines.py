"""State machines as tables: one place says which transitions exist, from which states, and who
may ask for them. Pure module: no Django import.

The services apply a transition as one conditional update (``UPDATE ... WHERE state IN
(sources)``), so two requests racing for the same row cannot both succeed; the pages and the API
offer the actions the table allows from the row's state; model docstrings are written from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

OPERATOR = "operator"
SYSTEM = "system"


@dataclass(frozen=True)
class Transition:
    action: str
    sources: tuple[str, ...]
    target: str
    by: str
    description: str


class TransitionError(Exception):
    """An action the table does not allow from the row's current state."""

    def __init__(self, machine: Machine, action: str, current: str | None):
        self.machine, self.action, self.current = machine, action, current
        what = machine.noun
        super().__init__(
            f"cannot {action} {what} that is {current}" if current is not None else f"no such {what.split()[-1]}"
        )


class Machine:
    """A named set of states and the transitions between them, stored in ``field``."""

    def __init__(self, noun: str, states: Iterable[str], transitions: Iterable[Transition], *, field: str = "status"):
        self.noun = noun
        self.states = tuple(states)
        self.field = field
        self.transitions = {t.action: t for t in transitions}
        for t in self.transitions.values():
            unknown = {*t.sources, t.target} - set(self.states)
            if unknown:
                raise ValueError(f"{noun}: transition {t.action} names unknown states {sorted(unknown)}")

    def __getitem__(self, action: str) -> Transition:
        return self.transitions[action]

    def allowed(self, state: str, action: str) -> bool:
        transition = self.transitions.get(action)
        return transition is not None and state in transition.sources

    def actions_from(self, state: str, by: str = OPERATOR) -> list[str]:
        """The actions ``by`` may take from ``state``, in table order."""
        return [t.action for t in self.transitions.values() if t.by == by and state in t.sources]

    def final_states(self) -> tuple[str, ...]:
        """States no transition leaves."""
        leaving = {s for t in self.transitions.values() for s in t.sources}
        return tuple(s for s in self.states if s not in leaving)

    def apply(self, queryset: Any, action: str, **fields: Any) -> int:
        """Move the rows of ``queryset`` that are in a source state of ``action`` to its target, with
        ``fields`` set in the same statement. Returns how many rows moved (0: another writer won)."""
        transition = self.transitions[action]
        return queryset.filter(**{f"{self.field}__in": transition.sources}).update(
            **{self.field: transition.target}, **fields
        )

    def describe(self) -> str:
        """The table in words, one line per transition, for docstrings and documentation."""
        lines = []
        for t in self.transitions.values():
            who = "operator" if t.by == OPERATOR else "the service"
            lines.append(f"* {' | '.join(t.sources)} -> {t.target} ({t.action}, by {who}): {t.description}")
        return "\n".join(lines)
