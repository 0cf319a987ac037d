import importlib

from django.apps import AppConfig
from django.db.models.signals import post_migrate

COUNT_TRIGGERS = ("nodes_count_insert", "nodes_count_delete", "nodes_count_update")


def ensure_count_triggers(sender=None, using="default", **kwargs) -> bool:
    """SQLite rebuilds a table to add some columns, and the rebuilt table has no triggers: after
    every migrate, the node-count triggers (``nodes/0007_node_counts``) are put back where they are
    missing, and the counts taken again. True when they had to be."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite" or "nodes_nodecount" not in connection.introspection.table_names():
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'nodes_node'")
        present = {row[0] for row in cursor.fetchall()}
        if set(COUNT_TRIGGERS) <= present:
            return False
        counts = importlib.import_module("nodes.migrations.0007_node_counts")
        for statement in [*counts.SQLITE_DROP, *counts.SQLITE, "DELETE FROM nodes_nodecount", counts.BACKFILL]:
            cursor.execute(statement)
    return True


class NodesConfig(AppConfig):
    name = "nodes"
    verbose_name = "Node inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(ensure_count_triggers, sender=self, dispatch_uid="nodes-count-triggers")
