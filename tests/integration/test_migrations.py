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


def test_a_migrated_sqlite_database_keeps_its_node_count_triggers(tmp_path):
    """SQLite rebuilds the node table to add some columns (0010 does), which drops its triggers:
    after migrate they are back, and a new node is counted. Run in a subprocess on a file of its
    own, whatever database the suite uses."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    script = (
        "from django.core.management import call_command;"
        "call_command('migrate', verbosity=0);"
        "from django.db import connection;"
        "from nodes.models import Cluster, Node, NodeCount;"
        "c = connection.cursor(); c.execute(\"select name from sqlite_master where type='trigger'\");"
        "print(sorted(r[0] for r in c.fetchall()));"
        "cluster = Cluster.objects.create(name='t');"
        "Node.objects.create(cluster=cluster, name='n');"
        "print(sum(NodeCount.objects.values_list('n', flat=True)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/migrated.sqlite3", PIDNS_VAR_DIR=str(tmp_path / "var"))
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "['nodes_count_delete', 'nodes_count_insert', 'nodes_count_update']"
    assert lines[-1] == "1"
