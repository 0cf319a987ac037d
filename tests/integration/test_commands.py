"""create_api_token, load_demo and quickstart."""

import io

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.roles import user_role
from nodes.models import Cluster, Node

pytestmark = pytest.mark.django_db


def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_token_prints_the_key_alone_and_sets_the_role(django_user_model):
    key = run("create_api_token", "alice", "--role", "viewer").strip()
    assert len(key) == 40 and key.isalnum()
    user = django_user_model.objects.get(username="alice")
    assert user_role(user) == "viewer" and not user.has_usable_password()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/nodes/").status_code == 200
    assert client.post("/api/v1/clusters/", {"name": "x"}, format="json").status_code == 403
    # Raising the role keeps the same token; the role takes effect at once.
    assert run("create_api_token", "alice", "--role", "admin").strip() == key
    assert client.post("/api/v1/clusters/", {"name": "x"}, format="json").status_code == 201
    rotated = run("create_api_token", "alice", "--role", "admin", "--rotate").strip()
    assert rotated != key
    assert client.get("/api/v1/nodes/").status_code == 401


def test_create_api_token_rejects_unknown_role():
    with pytest.raises(Exception, match="invalid choice"):
        call_command("create_api_token", "bob", "--role", "root")


def test_load_demo_is_repeatable():
    assert "31 nodes in 3 clusters" in run("load_demo")
    run("load_demo")
    assert Cluster.objects.count() == 3 and Node.objects.count() == 31
    assert Node.objects.filter(pid_namespace="shared").exists()
    assert Node.objects.filter(pid_namespace="isolated").exists()
    assert Node.objects.filter(pid_namespace="per-pod").exists()


def test_quickstart_sets_up_demo_and_prints_a_working_token(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = run("quickstart", "--no-serve")
    token = next(line.split(": ", 1)[1] for line in out.splitlines() if "admin token:" in line)
    assert "http://127.0.0.1:8000/" in out
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/fleet/summary/").json()["total"] == 31
    assert (tmp_path / "admin-password").stat().st_mode & 0o077 == 0


def test_demo_rollout_waits_as_a_draft_over_the_lab_general_pool(run_fleet):
    from pathlib import Path

    from nodes.management.commands.simfleet import register
    from rollout.management.commands.quickstart import demo_rollout
    from simfleet.spec import load_spec

    assert demo_rollout() is None  # no lab cluster yet
    fleet = run_fleet(load_spec(Path("simfleet/demo.yaml")))
    register(fleet)
    run("audit", "--quiet")
    rollout = demo_rollout()
    assert rollout.status == "draft" and rollout.pause_after_canary and rollout.cluster.name == "lab"
    targeted = rollout.operations.exclude(state="skipped").values_list("node__name", flat=True)
    assert set(targeted) == {f"lab-dockertools-{i:02d}" for i in (1, 2, 3)}
    assert demo_rollout() == rollout  # created once
