"""Rollout pages: viewers read, operators act (server-side check, CSRF), destructive actions confirm."""

import pytest
from django.test import Client

from rollout import services
from rollout.models import Rollout
from rollout.strategy import Strategy
from tests.integration.test_dashboard import signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout(make_cluster, make_node):
    cluster = make_cluster("east")
    for name in ("a", "b", "c"):
        make_node(cluster, name, flags={"enable-cri": "false"}, docker_endpoint="tcp://127.0.0.1:1")
    return services.rollout_create(
        actor="user:test",
        name="east to shared",
        cluster=cluster,
        intent="shared",
        strategy=Strategy(canary_count=1, batch_size=2),
    )


def test_rollout_pages_for_a_viewer_have_no_actions(rollout):
    client = signed_in("viewer")
    listing = client.get("/rollouts/").content.decode()
    assert f"#{rollout.pk} east to shared" in listing and "0/3" in listing
    detail = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "status <strong>draft</strong>" in detail and "0/3 operations finished" in detail
    assert 'aria-label="Actions"' not in detail and '<button type="submit">Start' not in detail
    response = client.post(f"/rollouts/{rollout.pk}/start/")
    assert response.status_code == 403
    assert Rollout.objects.get(pk=rollout.pk).status == "draft"


def test_operator_acts_from_the_page(rollout, django_capture_on_commit_callbacks):
    client = signed_in("operator", role="operator")
    detail = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert ">Start</button>" in detail and ">Abort</button>" in detail
    assert "confirm('Abort rollout" in detail and "confirm('Start" not in detail
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(f"/rollouts/{rollout.pk}/start/", follow=True)
    assert len(callbacks) == 1  # the advancer is sent to a worker once the start commits
    assert "start: the rollout is now running." in response.content.decode()
    assert ">Pause</button>" in response.content.decode()
    response = client.post(f"/rollouts/{rollout.pk}/approve/", follow=True)
    assert "cannot approve a rollout that is running" in response.content.decode()
    client.post(f"/rollouts/{rollout.pk}/pause/")
    assert Rollout.objects.get(pk=rollout.pk).status == "paused"
    events = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "user:operator start" in events and "user:operator pause" in events


def test_actions_need_csrf_and_post(rollout):
    signed_in("operator", role="operator")
    client = Client(enforce_csrf_checks=True)
    client.login(username="operator", password="correct horse battery staple")
    assert client.post(f"/rollouts/{rollout.pk}/pause/").status_code == 403
    assert client.get(f"/rollouts/{rollout.pk}/pause/").status_code == 405
    assert Rollout.objects.get(pk=rollout.pk).status == "draft"


def test_unknown_action_and_rollout(rollout):
    client = signed_in("operator", role="operator")
    assert client.post(f"/rollouts/{rollout.pk}/explode/").status_code == 403
    assert client.post("/rollouts/999999/pause/").status_code == 404
    assert client.get("/rollouts/999999/").status_code == 404
