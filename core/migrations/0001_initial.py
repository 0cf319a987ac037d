# The audit log moved here from the rollout app. Its table stays where it is (rollout_auditevent):
# this migration only tells Django's model state that core owns it.

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("rollout", "0001_initial"),  # creates the table on a fresh database
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AuditEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor", models.CharField(max_length=200)),
                        ("verb", models.CharField(max_length=64)),
                        ("object_type", models.CharField(max_length=64)),
                        ("object_id", models.CharField(blank=True, max_length=64)),
                        ("object_repr", models.CharField(blank=True, max_length=300)),
                        ("before", models.JSONField(blank=True, null=True)),
                        ("after", models.JSONField(blank=True, null=True)),
                    ],
                    options={
                        "db_table": "rollout_auditevent",
                        "ordering": ["-created_at", "-id"],
                        "indexes": [models.Index(fields=["object_type", "object_id"], name="auditevent_object")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
