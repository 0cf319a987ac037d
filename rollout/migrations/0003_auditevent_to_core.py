# The audit log moved to the core app (core.0001_initial); its table is kept as it is.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("rollout", "0002_rollouts"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="AuditEvent")], database_operations=[]),
    ]
