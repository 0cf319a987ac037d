"""The feature-gate catalog and validation: tables generated from the catalog at every gate's
boundaries, random gate maps, and the decision engine never proposing a gate a kubelet refuses."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.catalog import CatalogError, catalog_from, load_catalog, minor_label, parse_minor
from gates.facts import parse_facts, parse_feature_gates
from gates.gatecheck import (
    CATALOG_OLDER_THAN_KUBELET,
    GATE_ALPHA,
    GATE_DEPRECATED,
    GATE_GA,
    GATE_LOCKED,
    GATE_NOT_YET,
    GATE_REMOVED,
    GATE_UNKNOWN,
    GateInputError,
    validate,
)
from gates.plans import decide
from gates.policy import FLAG_FEATURE_GATES, INTENTS, PLANS

CATALOG = load_catalog()


def before(minor):
    return (minor[0], minor[1] - 1)


def boundary_cases():
    """For every gate: the release before its first, its first, its last, its removal, its lock."""
    for gate in CATALOG.gates.values():
        first = gate.first_release
        if first > (1, 3):
            yield gate.name, before(first), GATE_NOT_YET
        yield gate.name, first, None
        if gate.removed_in is not None:
            last = before(gate.removed_in)
            if last >= first:
                yield gate.name, last, None
            yield gate.name, gate.removed_in, GATE_REMOVED


CASES = list(boundary_cases())


def test_the_catalog_covers_every_gate_from_1_3_to_1_36():
    assert len(CATALOG.gates) == 490
    assert (CATALOG.oldest, CATALOG.newest) == ((1, 3), (1, 36))
    assert len(CASES) > 1000
    # As its notes count: 242 gates are accepted by a 1.36 kubelet.
    assert sum(g.recognised((1, 36)) for g in CATALOG.gates.values()) == 242


@pytest.mark.parametrize("name, minor, problem", CASES, ids=[f"{n}@{minor_label(m)}" for n, m, _ in CASES])
def test_each_gate_at_its_boundaries(name, minor, problem):
    gate = CATALOG.get(name)
    state = gate.state_at(minor)
    # Set the gate to its default there, so that a lock is never the problem at these points.
    value = state.default if state.default is not None else True
    check = validate(f"v{minor_label(minor)}.0", {name: value}, CATALOG)
    codes = [p.code for p in check.problems]
    if problem is None:
        assert codes == [] and check.valid, check.problems
        assert state.recognised
    else:
        assert codes == [problem]
        assert not state.recognised


LOCKED = [g for g in CATALOG.gates.values() if g.locked_from and g.recognised(g.locked_from)]


@pytest.mark.parametrize("gate", LOCKED, ids=[g.name for g in LOCKED])
def test_a_locked_gate_set_against_its_default_is_refused_from_its_lock(gate):
    state = gate.state_at(gate.locked_from)
    if state.default is None:
        pytest.skip("no default known at the lock")
    against = not state.default
    locked = validate(f"v{minor_label(gate.locked_from)}.0", {gate.name: against}, CATALOG)
    assert [p.code for p in locked.problems] == [GATE_LOCKED]
    assert f"cannot set feature gate {gate.name} to" in locked.problems[0].message
    earlier = before(gate.locked_from)
    if gate.recognised(earlier) and not gate.locked_at(earlier):
        assert GATE_LOCKED not in [
            p.code for p in validate(f"v{minor_label(earlier)}.0", {gate.name: against}, CATALOG).problems
        ]


def test_the_known_story_of_pod_share_process_namespace():
    def codes(version, value=True):
        check = validate(version, {"PodShareProcessNamespace": value}, CATALOG)
        return [p.code for p in check.problems], [w.code for w in check.warnings]

    assert codes("v1.9.11") == ([GATE_NOT_YET], [])
    assert codes("v1.10.0") == ([], [GATE_ALPHA])
    assert codes("v1.12.2") == ([], [])  # beta, on by default
    assert codes("v1.17.0") == ([], [GATE_GA])
    assert codes("v1.17.0", False) == ([GATE_LOCKED], [])
    assert codes("v1.19.0-beta.2") == ([GATE_REMOVED], [])  # a pre-release belongs to its line
    check = validate("v1.19.0", {"PodShareProcessNamespace": "true"}, CATALOG)
    assert check.kubelet_minor == "1.19" and not check.valid
    assert "removed in 1.19" in check.problems[0].message


def test_unknown_deprecated_and_newer_than_the_catalog():
    check = validate("v1.28.3", {"NoSuchGate": True, "DynamicKubeletConfig": False}, CATALOG)
    assert {p.code for p in check.problems} == {GATE_UNKNOWN, GATE_REMOVED}
    deprecated = validate("v1.23.0", {"DynamicKubeletConfig": False}, CATALOG)
    assert [w.code for w in deprecated.warnings] == [GATE_DEPRECATED] and deprecated.valid
    future = validate("v1.40.1", {"NodeSwap": True}, CATALOG)
    assert future.judged_as == "1.36" and future.kubelet_minor == "1.40"
    assert CATALOG_OLDER_THAN_KUBELET in [w.code for w in future.warnings]


@pytest.mark.parametrize(
    "version, gates, field",
    [
        ("", {}, "kubelet_version"),
        ("v1.x", {}, "kubelet_version"),
        (None, {}, "kubelet_version"),
        ("v1.19.0", ["A"], "feature_gates"),
        ("v1.19.0", {"A": "yes"}, "feature_gates"),
        ("v1.19.0", {"A-B": True}, "feature_gates"),
        ("v1.19.0", {"": True}, "feature_gates"),
    ],
)
def test_bad_input_names_the_field(version, gates, field):
    with pytest.raises(GateInputError) as excinfo:
        validate(version, gates, CATALOG)
    assert excinfo.value.field == field


NAMES = sorted(CATALOG.gates)


@settings(max_examples=300, deadline=None)
@given(
    minor=st.integers(1, 40),
    gates=st.dictionaries(
        st.one_of(st.sampled_from(NAMES), st.text(min_size=1, max_size=12)),
        st.one_of(st.booleans(), st.sampled_from(["true", "false", "TRUE", "maybe", 1, None])),
        max_size=8,
    ),
)
def test_random_gate_maps_never_crash_and_valid_means_no_problem(minor, gates):
    try:
        check = validate(f"v1.{minor}.0", gates, CATALOG)
    except GateInputError as exc:
        assert exc.field == "feature_gates"
        return
    assert check.valid == (not check.problems)
    assert {g.name for g in check.gates} == set(gates)
    for problem in check.problems:
        assert problem.gate in gates and problem.message


def test_a_catalog_of_the_wrong_shape_is_refused_naming_where():
    with pytest.raises(CatalogError, match="non-empty 'gates' map"):
        catalog_from({"gates": {}})
    with pytest.raises(CatalogError, match=r"gates\.X\.stages\[0\]: 'stage' must be one of"):
        catalog_from({"gates": {"X": {"stages": [{"stage": "gamma", "from": "1.2"}]}}})
    with pytest.raises(ValueError):
        parse_minor("one.two")


# --- the decision engine never proposes a gate the kubelet would refuse --------------------------------

DOCKERS = ["1.11.2", "1.12.6", "1.13.1", "17.03.2-ce", "18.06.1-ce"]
FLAG_SETS = [
    {},
    {"enable-cri": "false"},
    {"docker-disable-shared-pid": "true"},
    {"docker-disable-shared-pid": "false"},
    {"feature-gates": "PodShareProcessNamespace=true"},
]


@pytest.mark.parametrize("minor", range(3, 37), ids=lambda m: f"1.{m}")
def test_decisions_never_propose_a_gate_the_kubelet_refuses(minor):
    version = f"v1.{minor}.0"
    for plan, intent, docker, flags in itertools.product(PLANS, INTENTS, DOCKERS, FLAG_SETS):
        facts = parse_facts({"kubelet_version": version, "runtime_version": docker, "kubelet_flags": flags})
        decision = decide(facts, plan, intent)
        proposals = [decision.kubelet_flags]
        if decision.rollback.kubelet_flags is not None:
            proposals.append(decision.rollback.kubelet_flags)
        before = parse_feature_gates(flags.get(FLAG_FEATURE_GATES, ""))
        for proposed in proposals:
            if FLAG_FEATURE_GATES in proposed:
                gates = parse_feature_gates(proposed[FLAG_FEATURE_GATES])
                changed = {name: on for name, on in gates.items() if before.get(name) != on}
                check = validate(version, changed, CATALOG)
                assert check.valid, (plan, intent, docker, flags, check.problems)
