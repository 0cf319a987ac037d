"""The transition tables: well formed, and their words in the models' docstrings."""

import pytest

from core.machines import OPERATOR, Machine, Transition
from nodes.states import AUDIT
from rollout import states
from rollout.states import OPERATION, ROLLOUT

MACHINES = [ROLLOUT, OPERATION, AUDIT]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.noun)
def test_every_state_is_reachable_and_every_transition_leads_somewhere(machine):
    reached = {machine.states[0]} | {t.target for t in machine.transitions.values()}
    assert reached == set(machine.states)
    for transition in machine.transitions.values():
        assert transition.sources and transition.target not in transition.sources


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.noun)
def test_allowed_is_the_table(machine):
    for state in machine.states:
        for action, transition in machine.transitions.items():
            assert machine.allowed(state, action) == (state in transition.sources)
    assert not machine.allowed(machine.states[0], "no-such-action")


def test_operator_actions_per_rollout_status():
    offered = {status: ROLLOUT.actions_from(status) for status in states.ROLLOUT_STATES}
    assert offered == {
        "draft": ["start", "abort"],
        "running": ["pause", "abort", "rollback"],
        "paused": ["resume", "abort", "rollback"],
        "awaiting-approval": ["pause", "approve", "abort", "rollback"],
        "rolling-back": ["abort"],
        "succeeded": ["rollback"],
        "failed": ["rollback"],
        "aborted": ["rollback"],
        "rolled-back": [],
    }
    assert ROLLOUT.actions_from("running", by="system") == ["await-approval", "succeed", "auto-rollback", "fail"]


def test_final_states():
    assert ROLLOUT.final_states() == ("rolled-back",)
    assert set(OPERATION.final_states()) == set(states.OPERATION_FINAL)
    assert set(AUDIT.final_states()) == {"succeeded", "failed", "timed-out"}


def test_docstrings_are_written_from_the_tables():
    from nodes.models import Audit
    from rollout.models import NodeOperation, Rollout

    for model, machine in ((Rollout, ROLLOUT), (NodeOperation, OPERATION), (Audit, AUDIT)):
        for transition in machine.transitions.values():
            assert f"-> {transition.target} ({transition.action}," in model.__doc__


def test_a_table_naming_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match="unknown states"):
        Machine("a thing", ["a", "b"], [Transition("go", ("a",), "c", OPERATOR, "")])
