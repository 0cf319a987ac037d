"""What-if groups nodes by their facts in SQL: its counts and the nodes it lists must be exactly
what deciding every node one by one gives."""

import random

import pytest

from nodes import whatif as whatif_module
from nodes.decisions import facts_of
from nodes.models import Node
from nodes.validation import FACT_FIELDS
from nodes.whatif import Change, compare, whatif

pytestmark = pytest.mark.django_db

KUBELETS = ["v1.5.7", "v1.6.4", "v1.7.2", "v1.8.0", "v1.10.1", ""]
DOCKERS = ["1.11.2", "1.12.6", "1.13.1", "17.03.1-ce", ""]
FLAGS = [{}, {"enable-cri": "false"}, {"docker-disable-shared-pid": "false"}, {"feature-gates": "X=true", "a": "1"}]


def one_by_one(cluster, change):
    expected = {"total": 0, "changed": [], "lose_rollback": [], "blocked": [], "undecided": 0, "modes": {}}
    for node in Node.objects.filter(cluster=cluster).order_by("name"):
        outcome = compare(facts_of({name: getattr(node, name) for name in FACT_FIELDS}), cluster.plan, change)
        expected["total"] += 1
        if outcome.mode_before == "unknown" and outcome.mode_after == "unknown":
            expected["undecided"] += 1
            continue
        if outcome.mode_before != outcome.mode_after:
            expected["changed"].append(node.name)
            label = f"{outcome.mode_before} → {outcome.mode_after}"
            expected["modes"][label] = expected["modes"].get(label, 0) + 1
        if outcome.loses_rollback:
            expected["lose_rollback"].append(node.name)
        if outcome.blocker_after:
            expected["blocked"].append(node.name)
    return expected


@pytest.mark.parametrize(
    "change",
    [Change(kubelet_version="v1.7.0"), Change(docker_version="1.13.1"), Change(plan="upstream"), Change("v1.10.0")],
)
def test_grouped_what_if_equals_deciding_every_node(make_cluster, make_node, monkeypatch, change):
    monkeypatch.setattr(whatif_module, "LISTED", 4)
    cluster = make_cluster("mixed")
    pick = random.Random(7)
    for i in range(80):
        make_node(
            cluster,
            f"n-{i:03d}",
            kubelet=pick.choice(KUBELETS),
            docker=pick.choice(DOCKERS),
            flags=dict(pick.choice(FLAGS)),
        )
    result = whatif(cluster, change)
    expected = one_by_one(cluster, change)
    assert result.total == expected["total"] == 80
    assert result.undecided_count == expected["undecided"]
    assert result.mode_changes == expected["modes"]
    assert result.changed_count == len(expected["changed"])
    assert result.lose_rollback_count == len(expected["lose_rollback"])
    assert result.blocked_count == len(expected["blocked"])
    assert [n["name"] for n in result.changed] == expected["changed"][:4]
    assert [n["name"] for n in result.lose_rollback] == expected["lose_rollback"][:4]
    assert [n["name"] for n in result.blocked] == expected["blocked"][:4]
    assert result.changed_count + result.blocked_count > 0  # the fleet is mixed enough to say something
