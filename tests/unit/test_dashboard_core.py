"""Pure parts behind the dashboard: what-if facts and comparison, chart geometry, the rollout form's
translation to the API's input and of the API's errors back to form fields."""

import pytest
from django.http import QueryDict

from nodes.charts import stacked_bar
from nodes.whatif import Change, WhatIfError, compare, hypothetical
from rollout.forms import FormError, api_input, form_errors

D16 = {"kubelet_version": "v1.6.4", "container_runtime": "docker", "runtime_version": "1.12.6", "kubelet_flags": {}}


@pytest.mark.parametrize(
    ("facts", "change", "kubelet", "docker"),
    [
        (D16, Change(kubelet_version="v1.7.0"), "v1.7.0", "1.12.6"),
        ({**D16, "kubelet_version": "v1.8.0"}, Change(kubelet_version="v1.7.0"), "v1.8.0", "1.12.6"),  # no downgrade
        (D16, Change(docker_version="1.13.1"), "v1.6.4", "1.13.1"),
        ({**D16, "runtime_version": "17.03.1-ce"}, Change(docker_version="1.13.1"), "v1.6.4", "17.03.1-ce"),
        (
            {**D16, "container_runtime": "cri-o", "runtime_version": "1.0.0"},
            Change(docker_version="1.13.1"),
            "v1.6.4",
            "1.0.0",
        ),
        ({**D16, "kubelet_version": ""}, Change(kubelet_version="v1.7.0"), "", "1.12.6"),  # unknown stays unknown
        ({**D16, "kubelet_version": "garbage"}, Change(kubelet_version="v1.7.0"), "v1.7.0", "1.12.6"),
    ],
)
def test_hypothetical_upgrades_only_upwards(facts, change, kubelet, docker):
    after = hypothetical(facts, change)
    assert (after["kubelet_version"], after["runtime_version"]) == (kubelet, docker)
    assert facts["kubelet_version"] != "v1.7.0" or kubelet == "v1.7.0"  # the input is not changed


def test_compare_a_docker_upgrade_on_a_17_node_under_the_proposal():
    outcome = compare(
        {**D16, "kubelet_version": "v1.7.2", "runtime_version": "1.11.2"}, "proposal", Change(docker_version="1.13.1")
    )
    assert (outcome.mode_before, outcome.mode_after) == ("isolated", "shared")
    assert outcome.blocker_before == "DOCKER_TOO_OLD" and outcome.blocker_after == ""
    assert outcome.loses_rollback and outcome.rollback_after == "downgrade"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "change"),
        ({"kubelet_version": "1.x"}, "kubelet_version"),
        ({"docker_version": "banana"}, "docker_version"),
        ({"plan": "maybe"}, "plan"),
    ],
)
def test_change_parse_names_the_field(values, field):
    with pytest.raises(WhatIfError) as caught:
        Change.parse(values)
    assert caught.value.field == field


def test_stacked_bar_geometry_orders_modes_and_sums_to_the_width():
    bar = stacked_bar("east", {"isolated": 1, "shared": 3, "weird": 0, "zeta": 0})
    assert [(s.label, s.x, s.width) for s in bar.segments] == [("shared", 0.0, 75.0), ("isolated", 75.0, 25.0)]
    assert bar.text == "east: 3 shared, 1 isolated" and bar.total == 4
    assert stacked_bar("empty", {}).segments == ()


def test_form_to_api_input():
    post = QueryDict(mutable=True)
    post.update({"cluster": "east", "intent": "shared", "labels": "pool=gpu, zone = a", "nodes": "n1 n2,n3"})
    post.update({"window_start": "22:00", "window_end": "04:00", "window_tz": "UTC", "auto_rollback": "on"})
    post.setlist("window_days", ["sat", "sun"])
    data = api_input(post)
    assert data["selector"] == {"labels": {"pool": "gpu", "zone": "a"}, "nodes": ["n1", "n2", "n3"]}
    assert data["window"] == {"start": "22:00", "end": "04:00", "tz": "UTC", "days": ["sat", "sun"]}
    assert data["auto_rollback"] is True and data["start"] is False and "name" not in data
    with pytest.raises(FormError) as caught:
        api_input(QueryDict("labels=justakey"))
    assert caught.value.field == "labels"


def test_api_errors_land_on_form_fields():
    errors = {
        "selector": {"labels": ["bad label"], "nodes": {"3": ["too long"]}},
        "window": {"non_field_errors": ["start must be HH:MM"]},
        "batch_size": ["a number"],
        "non_field_errors": ["conflict"],
    }
    assert form_errors(errors) == {
        "labels": ["bad label"],
        "nodes": ["too long"],
        "window_start": ["start must be HH:MM"],
        "batch_size": ["a number"],
        "form": ["conflict"],
    }
