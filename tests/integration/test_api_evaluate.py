"""POST /api/v1/decisions/evaluate/: decisions, and clear 400s for every kind of bad input."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

URL = "/api/v1/decisions/evaluate/"


def post(client, body, raw=False):
    data = body if raw else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json")


def test_evaluate_returns_the_decision(viewer):
    response = post(
        viewer,
        {
            "kubelet_version": "v1.6.4",
            "runtime_version": "1.12.6",
            "kubelet_flags": {"enable-cri": "false"},
            "intent": "shared",
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["pid_namespace"] == "shared"
    assert body["mechanism"] == "cri"
    assert body["kubelet_flags"] == {"enable-cri": "true"}
    assert body["flag_changes"] == {"enable-cri": {"from": "false", "to": "true"}}
    assert body["rollback"]["method"] == "kubelet-flag"
    assert body["plan"] == "proposal"


def test_evaluate_under_upstream_plan(viewer):
    response = post(viewer, {"kubelet_version": "v1.7.0", "runtime_version": "1.13.0", "plan": "upstream"})
    assert response.json()["pid_namespace"] == "isolated"
    assert [r["code"] for r in response.json()["reasons"]] == ["DOCKER_TOO_OLD"]


def test_evaluate_blocked_intent_lists_blockers(viewer):
    response = post(viewer, {"kubelet_version": "v1.7.0", "runtime_version": "1.12.6", "intent": "isolated"})
    body = response.json()
    assert response.status_code == 200
    assert [b["code"] for b in body["blockers"]] == ["ROLLBACK_REQUIRES_DOWNGRADE"]
    assert body["changes_required"] is False


def test_evaluate_writes_nothing(viewer, django_assert_num_queries):
    # Only the token and role lookups touch the database.
    with django_assert_num_queries(2):
        post(viewer, {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6"})


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kubelet_version": "v1.six", "runtime_version": "1.12.6"}, "kubelet_version"),
        ({"runtime_version": "1.12.6"}, "kubelet_version"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "twelve"}, "runtime_version"),
        ({"kubelet_version": "v1.6.4"}, "runtime_version"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "plan": "nightly"}, "plan"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "intent": "maybe"}, "intent"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "container_runtime": "lxc"}, "container_runtime"),
        ({"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": "enable-cri"}, "kubelet_flags"),
        (
            {"kubelet_version": "v1.6.4", "runtime_version": "1.12.6", "kubelet_flags": {"enable-cri": "perhaps"}},
            "kubelet_flags",
        ),
        ({"kubelet_version": "v1.6.4\u0000", "runtime_version": "1.12.6"}, "kubelet_version"),
        ({"kubelet_version": ["v1.6.4"], "runtime_version": "1.12.6"}, "kubelet_version"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(viewer, body, field):
    response = post(viewer, body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert all(isinstance(m, str) and m for m in response.json()[field])


@pytest.mark.parametrize("raw", ["{not json", "", "null", "[1, 2]", '"text"', "42"])
def test_malformed_or_non_object_body_is_a_400(viewer, raw):
    response = post(viewer, raw, raw=True)
    assert response.status_code == 400
    assert response.json()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(
    ["kubelet_version", "runtime_version", "container_runtime", "kubelet_flags", "pause_image", "plan", "intent", "x"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, st.dictionaries(fields, json_values, max_size=7)))
def test_no_input_produces_a_server_error(viewer, body):
    response = post(viewer, body)
    assert response.status_code in (200, 400), response.content
