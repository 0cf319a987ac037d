"""Rollout pages: viewers read, operators act (server-side check, CSRF), destructive actions confirm."""

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rollout import transitions as services
from rollout.forms import FIELD_LABELS
from rollout.models import NodeOperation, Rollout
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
    assert 'data-testid="status">draft</strong>' in detail and "0% — 0/3 finished" in detail
    assert 'aria-label="Actions"' not in detail and '<button type="submit">Start' not in detail
    response = client.post(f"/rollouts/{rollout.pk}/start/")
    assert response.status_code == 403
    assert Rollout.objects.get(pk=rollout.pk).status == "draft"


def test_operator_acts_from_the_page(rollout, django_capture_on_commit_callbacks):
    client = signed_in("operator", role="operator")
    detail = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert ">Start</button>" in detail and ">Abort</button>" in detail
    assert 'data-confirm="Abort rollout' in detail and 'data-confirm="Start' not in detail
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


def test_live_part_answers_204_until_something_changes(rollout):
    client = signed_in("viewer")
    page = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    fingerprint = page.split('data-fingerprint="')[1].split('"')[0]
    assert f'hx-get="/rollouts/{rollout.pk}/?since={fingerprint}"' in page
    htmx = {"HX-Request": "true"}
    assert client.get(f"/rollouts/{rollout.pk}/?since={fingerprint}", headers=htmx).status_code == 204
    services.rollout_start(actor="user:test", rollout=rollout)
    changed = client.get(f"/rollouts/{rollout.pk}/?since={fingerprint}", headers=htmx)
    body = changed.content.decode()
    assert changed.status_code == 200 and body.startswith('<div id="live"') and "<html" not in body
    assert 'data-testid="status">running</strong>' in body and 'hx-trigger="every 1s"' in body
    # Nothing measured yet, in this rollout or in its cluster: no guess.
    assert "time left: estimated once the first node finishes" in body
    first = rollout.operations.filter(phase="forward").order_by("id").first()
    NodeOperation.objects.filter(pk=first.pk).update(state="succeeded", duration_seconds=2.0)
    body = client.get(f"/rollouts/{rollout.pk}/", headers=htmx).content.decode()
    # 2 operations to go, 5 at once, at this rollout's own pace (2 s a node).
    assert "2 nodes to go, about 2 s left" in body
    NodeOperation.objects.filter(pk=first.pk).update(duration_seconds=0.2)
    body = client.get(f"/rollouts/{rollout.pk}/", headers=htmx).content.decode()
    assert "2 nodes to go, less than a second left" in body
    services.rollout_abort(actor="user:test", rollout=Rollout.objects.get(pk=rollout.pk))
    final = client.get(f"/rollouts/{rollout.pk}/", headers=htmx).content.decode()
    assert "aborted" in final and "hx-trigger" not in final  # a finished rollout stops polling
    # Aborted before any write: cancelled, said and drawn apart from done, and nothing to roll back.
    assert "(1 done, " in final and '<span class="cancelled">2 cancelled</span>' in final
    assert 'class="bar-cancelled"' in final and "Rollback" not in final


def test_rollout_list_and_detail_count_the_same_operations(make_cluster, make_node):
    cluster = make_cluster("mixed")
    make_node(cluster, "iso", flags={"enable-cri": "false"}, docker_endpoint="tcp://127.0.0.1:1")
    make_node(
        cluster, "already", docker_endpoint="tcp://127.0.0.1:1"
    )  # already shared: skipped when the rollout is created
    rollout = services.rollout_create(
        actor="user:test", name="mixed", cluster=cluster, intent="shared", strategy=Strategy(canary_count=0)
    )
    client = signed_in("viewer")
    assert "0/1" in client.get("/rollouts/").content.decode()
    detail = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "0/1 finished" in detail and "1 node skipped when created" in detail


FORM = {
    "cluster": "east",
    "intent": "shared",
    "canary_count": "1",
    "batch_size": "50%",
    "max_unavailable": "2",
    "soak_seconds": "0",
    "max_failures": "0",
    "busy_policy": "refuse",
    "auto_rollback": "on",
}


@pytest.fixture
def east(make_cluster, make_node):
    cluster = make_cluster("east")
    for name in ("a", "b", "c", "d"):
        make_node(
            cluster,
            name,
            flags={"enable-cri": "false"},
            labels={"pool": "gpu" if name < "d" else "web"},
            docker_endpoint="tcp://127.0.0.1:1",
        )
    make_node(cluster, "old", kubelet="v1.7.2", docker="1.11.2", docker_endpoint="tcp://127.0.0.1:1")
    return cluster


def test_preview_shows_waves_skips_and_duration_and_writes_nothing(east):
    client = signed_in("viewer")
    assert b"Create rollout" not in client.get("/rollouts/new/").content
    body = client.post("/rollouts/preview/", FORM).content.decode()
    assert "<strong>4</strong> nodes to change in <strong>3</strong> waves, 1 skipped" in body
    assert "wave 0 (canary): 1 node — a<" in body and "wave 1: 2 nodes — b, c<" in body
    assert "DOCKER_TOO_OLD" in body and "<code>--enable-cri</code>: false → true" in body
    labelled = client.post("/rollouts/preview/", {**FORM, "labels": "pool=gpu"}).content.decode()
    assert "<strong>3</strong> nodes to change" in labelled
    assert Rollout.objects.count() == 0
    empty = client.post("/rollouts/preview/", {"cluster": ""}).content.decode()
    assert "Choose a cluster" in empty


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"batch_size": "lots"}, "batch_size", "percentage"),
        ({"max_unavailable": "0"}, "max_unavailable", "greater than or equal to 1"),
        ({"labels": "pool"}, "labels", "is not key=value"),
        ({"window_start": "25:00", "window_end": "04:00"}, "window_start", "HH:MM"),
        ({"window_start": "22:00", "window_end": "25:00"}, "window_end", "HH:MM"),
        ({"window_start": "22:00", "window_end": "04:00", "window_tz": "Mars/Olympus"}, "window_tz", "time zone"),
        ({"nodes": "a nosuch"}, "nodes", "no node named nosuch in cluster east"),
        ({"canary_count": "-2"}, "canary_count", "greater than or equal to 0"),
        ({"soak_seconds": "-5"}, "soak_seconds", "greater than or equal to 0"),
        ({"max_failures": "-1"}, "max_failures", "greater than or equal to 0"),
        ({"cluster": "nowhere"}, "cluster", "does not exist"),
        ({"intent": "sideways"}, "intent", "not a valid choice"),
        ({"drain": "true"}, "drain", "has no Kubernetes API"),
        ({"drain_timeout": "5"}, "drain_timeout", "greater than or equal to 10"),
    ],
)
def test_bad_form_input_names_the_field_and_creates_nothing(east, change, field, message):
    client = signed_in("olga", "operator")
    preview = client.post("/rollouts/preview/", {**FORM, **change}).content.decode()
    assert f"<strong>{FIELD_LABELS[field]}</strong>" in preview and message in preview  # in the form's words
    response = client.post("/rollouts/new/", {**FORM, **change})
    page = response.content.decode()
    assert response.status_code == 400 and message in page
    # The message sits under its own field (its id is the field's error id).
    error_ids = {"cluster": "r-cluster", "intent": "r-intent", "batch_size": "r-batch", "max_unavailable": "r-unavail"}
    error_ids |= {"labels": "r-labels", "nodes": "r-nodes", "window_start": "r-wstart", "window_end": "r-wend"}
    error_ids |= {"window_tz": "r-wtz", "canary_count": "r-canary", "soak_seconds": "r-soak"}
    error_ids |= {"max_failures": "r-budget", "drain": "r-drain", "drain_timeout": "r-drain-timeout"}
    start = page.index(f'id="{error_ids[field]}-error"')
    assert message in page[start : start + 600]
    assert Rollout.objects.count() == 0


def test_operator_creates_and_starts_from_the_form(east, django_capture_on_commit_callbacks):
    viewer = signed_in("viewer")
    assert viewer.post("/rollouts/new/", FORM).status_code == 403
    client = signed_in("olga", "operator")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post("/rollouts/new/", {**FORM, "name": "gpu first", "labels": "pool=gpu", "start": "on"})
    rollout = Rollout.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{rollout.pk}/"
    assert rollout.status == "running" and rollout.name == "gpu first" and rollout.created_by == "user:olga"
    assert rollout.selector == {"labels": {"pool": "gpu"}} and rollout.batch_percent and rollout.batch_size == 50
    assert rollout.drain is False  # the cluster has no Kubernetes API
    assert len(callbacks) == 1
    again = client.post("/rollouts/new/", {**FORM, "labels": "pool=gpu"})
    assert again.status_code == 400 and "unfinished rollout" in again.content.decode()
    assert Rollout.objects.count() == 1


def test_rollout_and_node_pages_use_a_constant_number_of_queries(make_cluster, make_node):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = signed_in("viewer")

    def queries(size):
        cluster = make_cluster(f"c{size}")
        nodes = [
            make_node(cluster, f"n{i}", flags={"enable-cri": "false"}, docker_endpoint="tcp://127.0.0.1:1")
            for i in range(size)
        ]
        rollout = services.rollout_create(
            actor="user:test", name=f"r{size}", cluster=cluster, intent="shared", strategy=Strategy(batch_size=3)
        )
        services.rollout_start(actor="user:test", rollout=rollout)
        counts = []
        for url, headers in [
            (f"/rollouts/{rollout.pk}/", {}),
            (f"/rollouts/{rollout.pk}/?since=x", {"HX-Request": "true"}),
            (f"/nodes/{nodes[0].pk}/", {}),
        ]:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url, headers=headers).status_code == 200
            counts.append(len(ctx.captured_queries))
        return counts

    assert queries(2) == queries(25)


def test_htmx_posts_need_the_csrf_token(east):
    signed_in("viewer")
    client = Client(enforce_csrf_checks=True)
    client.login(username="viewer", password="correct horse battery staple")
    page = client.get("/rollouts/new/").content.decode()
    token = client.cookies["csrftoken"].value
    assert 'hx-headers=\'{"X-CSRFToken": "' in page  # htmx sends it with every request
    assert client.post("/rollouts/preview/", FORM, headers={"HX-Request": "true"}).status_code == 403
    ok = client.post("/rollouts/preview/", FORM, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert ok.status_code == 200 and b"nodes to change" in ok.content
    anonymous = Client()
    assert anonymous.post("/rollouts/preview/", FORM).status_code == 401
    assert anonymous.get("/rollouts/preview/").status_code == 405


@pytest.fixture
def operator_on_east(east):
    return signed_in("fuzz", "operator")


FORM_FIELDS = [*FORM, "name", "labels", "nodes", "window_start", "window_end", "window_tz", "window_days", "start"]
TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["east", "shared", "isolated", "50%", "0", "-1", "1e9", "25:00", "22:00", "a=b", "=", "\x00"]),
)


@hypothesis_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.dictionaries(st.sampled_from(FORM_FIELDS), TEXT, max_size=10))
def test_no_form_input_produces_a_server_error(operator_on_east, form):
    client = operator_on_east
    preview = client.post("/rollouts/preview/", form)
    assert preview.status_code == 200, preview.content[:500]
    created = client.post("/rollouts/new/", form)
    assert created.status_code in (302, 400), created.content[:500]
    if created.status_code == 302:
        Rollout.objects.all().delete()
    whatif = client.get("/what-if/", {k: v for k, v in form.items() if k in ("cluster", "name", "labels")})
    assert whatif.status_code == 200


@pytest.mark.parametrize("field", ["cluster", "name", "labels", "nodes", "batch_size", "window_tz"])
def test_a_nul_byte_in_any_field_is_refused_without_a_server_error(operator_on_east, field):
    form = {**FORM, field: "ea\x00st", "window_start": "22:00", "window_end": "04:00"}
    assert operator_on_east.post("/rollouts/preview/", form).status_code == 200
    assert operator_on_east.post("/rollouts/new/", form).status_code in (302, 400)
    assert operator_on_east.get("/what-if/", {"cluster": "ea\x00st", "plan": "upstream"}).status_code == 200
    assert operator_on_east.get("/nodes/", {"cluster": "ea\x00st", "name": "\x00"}).status_code == 200
    refused = operator_on_east.post("/audits/", {"cluster": "ea\x00st"}, follow=True)
    assert refused.status_code == 200 and b"no cluster named" in refused.content


def test_rollout_list_filters_by_status_and_cluster(rollout):
    client = signed_in("viewer")
    assert f"#{rollout.pk} east to shared" in client.get("/rollouts/?status=draft&cluster=east").content.decode()
    assert "No rollout matches." in client.get("/rollouts/?status=running").content.decode()
    assert "No rollout matches." in client.get("/rollouts/?cluster=west").content.decode()
    bad = client.get("/rollouts/?status=sideways&cluster=ea%00st")
    body = bad.content.decode()
    assert bad.status_code == 200 and "one of draft" in body and "no such cluster" in body


def test_audit_log_page_filters_and_links_objects(rollout):
    from core.events import event_record

    event_record(actor="command:odd", verb="touch", object_type="rollout", object_id="not-a-number")
    client = signed_in("vera")
    services.rollout_start(actor="user:olga", rollout=rollout)
    body = client.get("/events/?object_type=rollout&actor__icontains=olga").content.decode()
    assert "1 event." in body and f'href="/rollouts/{rollout.pk}/"' in body and "user:olga" in body
    # The change in words: the field that changed, before → after; no Python mapping.
    assert '<span class="muted">status</span>: draft → running' in body and "{&#x27;" not in body
    assert "reason</span>" not in body  # empty before and after: nothing to say
    event_record(
        actor="command:flags",
        verb="update",
        object_type="node",
        object_id="1",
        before={"kubelet_flags": {"enable-cri": "false"}, "name": "n1"},
        after={"kubelet_flags": {"enable-cri": "true"}, "name": "n1", "drift": False},
    )
    flags = client.get("/events/?actor__icontains=command:flags").content.decode()
    assert "kubelet_flags</span>: enable-cri=false → enable-cri=true" in flags
    assert "drift</span>: — → no" in flags and "name</span>" not in flags  # unchanged fields are left out
    # An operation's event links its node; an id that is not one links nothing (and breaks nothing).
    node = rollout.operations.first().node
    event_record(
        actor="task:operation:w",
        verb="operation-succeeded",
        object_type="rollout",
        object_id=rollout.pk,
        object_repr=f"forward {node.name}",
        after={"state": "succeeded", "node_id": node.pk},
    )
    event_record(actor="task:odd", verb="odd", object_type="rollout", object_id=rollout.pk, after={"node_id": "x1"})
    ops = client.get("/events/?actor__icontains=task:").content.decode()
    assert f'<a href="/nodes/{node.pk}/">forward {node.name}</a>' in ops and "node_id" not in ops
    everything = client.get("/events/").content.decode()
    assert "not-a-number" in everything and "command:odd" in everything
    bad = client.get("/events/?object_type=spaceship&created_at__gte=yesterday").content.decode()
    assert "0 events." in bad and "object_type" in bad and "created_at__gte" in bad
    api = client.get("/api/v1/events/?object_type=rollout&actor__icontains=olga")
    assert api.status_code == 200 and api.json()["count"] == 1  # the same filter as the API's


def test_rollout_operations_filter_by_state_and_the_live_part_keeps_the_filter(rollout):
    from rollout.models import NodeOperation

    services.rollout_start(actor="user:test", rollout=rollout)
    NodeOperation.objects.filter(rollout=rollout, node__name="b").update(state="failed", error_code="unreachable")
    client = signed_in("viewer")
    page = client.get(f"/rollouts/{rollout.pk}/?state=failed").content.decode()
    assert "all (3)" in page and 'href="?state=failed" id="ops-failed" aria-current="true">failed (1)' in page
    assert ">b</a>" in page and ">a</a>" not in page and ">c</a>" not in page
    assert "&amp;state=failed" in page.split('hx-get="')[1].split('"')[0]
    everything = client.get(f"/rollouts/{rollout.pk}/?state=exploded").content.decode()
    assert ">a</a>" in everything and ">b</a>" in everything  # an unknown state shows all
