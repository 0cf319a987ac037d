"""Migrations that derive new columns from stored facts fill them for the nodes already there."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from nodes.models import Node

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("nodes", "0002_audits")]


def test_runtime_line_and_version_order_are_filled_for_existing_nodes():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    cluster = old.get_model("nodes", "Cluster").objects.create(name="before")
    old_node = old.get_model("nodes", "Node")
    old_node.objects.create(cluster=cluster, name="a", kubelet_version="v1.10.2", runtime_version="17.03.1-ce")
    old_node.objects.create(cluster=cluster, name="b", kubelet_version="", container_runtime="cri-o")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    a, b = Node.objects.filter(cluster__name="before").order_by("name")
    assert (a.runtime_line, a.kubelet_order, a.runtime_order) == ("17.03", "00001.00010.00002.1", "00017.00003.00001.1")
    assert (b.runtime_line, b.kubelet_order, b.runtime_order) == ("cri-o", "", "")
