"""Retention: old observations and (when asked) old audit-log events are deleted in batches."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.events import event_record
from core.models import AuditEvent
from nodes import retention as node_retention
from nodes.models import Audit, NodeObservation
from nodes.tasks import prune

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(make_cluster, make_node):
    node = make_node(make_cluster("east"), "n1")
    now = timezone.now()
    for days in (0, 1, 13, 15, 40):
        audit = Audit.objects.create(requested_by="test", status="succeeded")
        NodeObservation.objects.create(node=node, audit=audit, observed_at=now - timedelta(days=days), reachable=True)
    for days in (0, 100):
        event = event_record(actor="test", verb="touch", object_type="node", object_id=node.pk)
        AuditEvent.objects.filter(pk=event.pk).update(created_at=now - timedelta(days=days))
    return node


def test_observations_past_retention_go_in_batches(history):
    assert node_retention.observations_prune(older_than_days=14, batch=1) == 2
    ages = sorted((timezone.now() - o.observed_at).days for o in NodeObservation.objects.all())
    assert ages == [0, 1, 13]
    assert node_retention.observations_prune(older_than_days=0) == 0 and NodeObservation.objects.count() == 3
    assert Audit.objects.count() == 5  # audits keep their counts


def test_the_audit_log_is_kept_unless_a_retention_is_set(history, settings):
    events = AuditEvent.objects.count()
    settings.PIDNS_OBSERVATION_RETENTION_DAYS = 14
    settings.PIDNS_EVENT_RETENTION_DAYS = 0
    assert prune() == "deleted 2 observations, 0 events"
    assert AuditEvent.objects.count() == events
    settings.PIDNS_EVENT_RETENTION_DAYS = 30
    assert prune() == "deleted 0 observations, 1 events"
    assert AuditEvent.objects.count() == events - 1
