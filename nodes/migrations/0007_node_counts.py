"""Node counts kept by the database: triggers on the node table append the net change of every
statement to ``nodes_nodecount`` (see :class:`nodes.models.NodeCount`), and the counts of the
nodes already there are written once."""

from django.db import migrations, models

COLUMNS = (
    "cluster_id",
    "kubelet_minor",
    "runtime_line",
    "pid_namespace",
    "mechanism",
    "observed_pid_namespace",
    "rollback_method",
    "shared_blocker",
    "isolated_blocker",
    "drift",
)
COLS = ", ".join(COLUMNS)


def _prefixed(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c}" for c in COLUMNS)


# PostgreSQL: statement-level triggers over transition tables, so a bulk write of 100,000 nodes
# appends one row per combination, and an update that changes no counted column appends nothing.
POSTGRES = f"""
CREATE FUNCTION nodes_count_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO nodes_nodecount ({COLS}, n) SELECT {COLS}, count(*) FROM new_rows GROUP BY {COLS};
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO nodes_nodecount ({COLS}, n) SELECT {COLS}, -count(*) FROM old_rows GROUP BY {COLS};
  ELSE
    INSERT INTO nodes_nodecount ({COLS}, n)
    SELECT {COLS}, sum(n) FROM (
      SELECT {COLS}, -1 AS n FROM old_rows UNION ALL SELECT {COLS}, 1 AS n FROM new_rows
    ) AS changes GROUP BY {COLS} HAVING sum(n) <> 0;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes_node REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nodes_count_changes();
CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes_node REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nodes_count_changes();
CREATE TRIGGER nodes_count_update AFTER UPDATE ON nodes_node
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION nodes_count_changes();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS nodes_count_insert ON nodes_node;
DROP TRIGGER IF EXISTS nodes_count_delete ON nodes_node;
DROP TRIGGER IF EXISTS nodes_count_update ON nodes_node;
DROP FUNCTION IF EXISTS nodes_count_changes();
"""

# SQLite (the embedded default): row triggers; an update appends only when a counted column changed.
_changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in COLUMNS)
SQLITE = [
    f"CREATE TRIGGER nodes_count_insert AFTER INSERT ON nodes_node BEGIN "
    f"INSERT INTO nodes_nodecount ({COLS}, n) VALUES ({_prefixed('NEW')}, 1); END",
    f"CREATE TRIGGER nodes_count_delete AFTER DELETE ON nodes_node BEGIN "
    f"INSERT INTO nodes_nodecount ({COLS}, n) VALUES ({_prefixed('OLD')}, -1); END",
    f"CREATE TRIGGER nodes_count_update AFTER UPDATE ON nodes_node WHEN {_changed} BEGIN "
    f"INSERT INTO nodes_nodecount ({COLS}, n) VALUES ({_prefixed('OLD')}, -1); "
    f"INSERT INTO nodes_nodecount ({COLS}, n) VALUES ({_prefixed('NEW')}, 1); END",
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS nodes_count_{what}" for what in ("insert", "delete", "update")]

BACKFILL = f"INSERT INTO nodes_nodecount ({COLS}, n) SELECT {COLS}, count(*) FROM nodes_node GROUP BY {COLS}"


def _run(schema_editor, statements) -> None:
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [POSTGRES, BACKFILL])
    elif vendor == "sqlite":
        _run(schema_editor, [*SQLITE, BACKFILL])
    else:
        raise RuntimeError(f"node counts need PostgreSQL or SQLite, not {vendor}")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, [POSTGRES_DROP] if vendor == "postgresql" else SQLITE_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0006_feature_gates"),
    ]

    operations = [
        migrations.CreateModel(
            name="NodeCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("cluster_id", models.BigIntegerField()),
                ("kubelet_minor", models.CharField(max_length=16)),
                ("runtime_line", models.CharField(max_length=16)),
                ("pid_namespace", models.CharField(max_length=16)),
                ("mechanism", models.CharField(max_length=16)),
                ("observed_pid_namespace", models.CharField(max_length=16)),
                ("rollback_method", models.CharField(max_length=16)),
                ("shared_blocker", models.CharField(max_length=64)),
                ("isolated_blocker", models.CharField(max_length=64)),
                ("drift", models.BooleanField()),
                ("n", models.IntegerField()),
            ],
            options={
                "indexes": [models.Index(fields=["cluster_id"], name="nodecount_cluster")],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
