"""Shared fixtures: API clients for each role, and inventory builders that go through services."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from nodes import services
from rollout.roles import ROLES, role_set


def make_client(username: str, role: str | None) -> APIClient:
    user = get_user_model().objects.create(username=username)
    if role:
        role_set(user=user, role=role)
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.user = user
    return client


@pytest.fixture
def clients(db):
    """One authenticated API client per role, plus ``none`` (a user without a role) and ``anon``."""
    result = {role: make_client(f"{role}-user", role) for role in ROLES}
    result["none"] = make_client("no-role-user", None)
    result["anon"] = APIClient()
    return result


@pytest.fixture
def viewer(clients):
    return clients["viewer"]


@pytest.fixture
def admin(clients):
    return clients["admin"]


@pytest.fixture
def make_cluster(db):
    def make(name="prod", plan="proposal", **kwargs):
        return services.cluster_create(actor="test", name=name, plan=plan, **kwargs)

    return make


@pytest.fixture
def make_node(db):
    def make(cluster, name, kubelet="v1.6.4", docker="1.12.6", flags=None, **kwargs):
        return services.node_create(
            actor="test",
            cluster=cluster,
            name=name,
            kubelet_version=kubelet,
            runtime_version=docker,
            kubelet_flags=flags or {},
            **kwargs,
        )

    return make
