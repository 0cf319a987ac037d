"""An operator plans a rollout over simulated nodes in the browser, starts it, pauses and resumes
it, and watches it run to the end live (htmx), while a real Celery worker carries it out over the
Docker Engine API of the simulated nodes. A viewer sees no action button and is refused if it
posts anyway."""

import io
import time

import pytest
from django.core.management import call_command

from nodes.management.commands.simfleet import register
from rollout.models import NodeOperation, Rollout
from tests.conftest import fleet_spec, node_group
from tests.e2e.test_dashboard_browser import account, sign_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fast(settings):
    settings.PIDNS_VERIFY_POLL = 0.05
    settings.PIDNS_VERIFY_TIMEOUT = 5


@pytest.fixture
def lab(run_fleet):
    fleet = run_fleet(
        fleet_spec(
            node_group(
                "gpu-{i}",
                count=6,
                kubelet_flags={"enable-cri": "false"},
                labels={"pool": "gpu"},
                faults={"restart_ms": 700},
            ),
            node_group("old-docker", docker="1.11.2", labels={"pool": "gpu"}),
            cluster="lab",
        ),
        sync_interval=0.05,
    )
    register(fleet)
    call_command("audit", quiet=True, stdout=io.StringIO())
    return fleet


def test_operator_plans_starts_pauses_resumes_and_watches_a_rollout_live(
    page, live_server, lab, celery_worker_thread, screenshot
):
    account("olga", "operator")
    sign_in(page, live_server, "olga")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Rollouts").click()
    page.get_by_role("link", name="Plan a new rollout").click()

    # The preview follows the form as it is filled in.
    page.get_by_label("Cluster").select_option("lab")
    summary = page.get_by_test_id("preview-summary")
    summary.wait_for()
    assert "6 nodes to change in 2 waves, 1 skipped" in summary.inner_text()
    page.get_by_label("Wave size (nodes or %)").fill("50%")
    page.get_by_text("6 nodes to change in 3 waves").wait_for()
    page.get_by_label("At most in flight").fill("1")
    page.get_by_label("Only nodes with labels (key=value, comma-separated)").fill("pool=gpu")
    page.get_by_label("Name (optional)").fill("gpu to shared")
    page.get_by_text("6 nodes to change in 3 waves, 1 skipped").wait_for()
    preview = page.locator("#preview").inner_text()
    assert "old-docker" in preview and "engine-too-old" in preview
    assert "wave 1: 3 nodes" in preview and "wave 2: 2 nodes" in preview
    screenshot("new-rollout")
    assert Rollout.objects.count() == 0  # the preview wrote nothing

    page.get_by_role("button", name="Create rollout").click()
    page.get_by_role("heading", name="gpu to shared").wait_for()
    rollout = Rollout.objects.get()
    assert rollout.status == "draft" and rollout.max_unavailable == 1 and rollout.created_by == "user:olga"

    # The page is never reloaded from here on: a marker set now must survive to the end.
    page.get_by_role("button", name="Start").click()
    page.get_by_text("start: the rollout is now running.").wait_for()
    page.evaluate("window.sameDocument = true")
    page.get_by_role("button", name="Pause").click()
    page.get_by_text("pause: the rollout is now paused.").wait_for()
    page.evaluate("window.sameDocument = true")
    paused_at = NodeOperation.objects.filter(rollout=rollout, state="succeeded").count()
    time.sleep(1.5)  # paused: whatever was in flight finishes, nothing new is dispatched
    settled = NodeOperation.objects.filter(rollout=rollout, state="succeeded").count()
    assert settled <= paused_at + 1 and settled < 6
    assert NodeOperation.objects.filter(rollout=rollout, state="running").count() == 0
    screenshot("paused")

    page.get_by_role("button", name="Resume").click()
    page.get_by_text("resume: the rollout is now running.").wait_for()
    page.evaluate("window.sameDocument = true")
    # A keyboard user on Pause keeps the focus there while the page refreshes itself.
    page.get_by_role("button", name="Pause").focus()
    before = page.locator("#live").get_attribute("data-fingerprint")
    page.wait_for_function("f => document.querySelector('#live').dataset.fingerprint !== f", arg=before, timeout=30_000)
    assert page.evaluate("document.activeElement.id") == "action-pause"
    assert page.evaluate("document.activeElement.isConnected") is True
    # What cannot be taken back does not look like the rest.
    look = "b => [getComputedStyle(b).color, getComputedStyle(b).borderColor, getComputedStyle(b).fontWeight]"
    assert page.get_by_role("button", name="Abort").evaluate(look) != page.get_by_role("button", name="Pause").evaluate(
        look
    )
    status = page.get_by_test_id("status")
    status.filter(has_text="succeeded").wait_for(timeout=60_000)
    assert page.evaluate("window.sameDocument") is True  # the status arrived through htmx, not a reload
    live = page.locator("#live").inner_text()
    assert "100% — 6/6 finished" in live and "1 node skipped when created" in live
    assert "hx-trigger" not in page.locator("#live").evaluate("e => e.outerHTML")  # finished: polling stops
    assert page.get_by_role("button", name="Rollback").is_visible()
    screenshot("succeeded")
    assert Rollout.objects.get(pk=rollout.pk).status == "succeeded"
    assert NodeOperation.objects.filter(rollout=rollout, phase="forward", state="succeeded").count() == 6
    for node in lab.nodes:
        if node.spec.name.startswith("gpu-"):
            assert node.effective_mode == "shared" and node.restarts == 1, node.spec.name

    # A viewer reads the same page without a single action, and is refused if it posts anyway.
    page.get_by_role("button", name="Sign out").click()
    account("vera", "viewer")
    sign_in(page, live_server, "vera")
    page.goto(f"{live_server.url}/rollouts/{rollout.pk}/")
    page.get_by_test_id("status").wait_for()
    assert page.get_by_role("group", name="Actions").count() == 0
    assert page.get_by_role("button", name="Rollback").count() == 0
    page.goto(f"{live_server.url}/rollouts/new/")
    assert page.get_by_role("button", name="Create rollout").count() == 0
    token = page.context.cookies()
    csrf = next(c["value"] for c in token if c["name"] == "csrftoken")
    refused = page.request.post(
        f"{live_server.url}/rollouts/{rollout.pk}/rollback/",
        headers={"X-CSRFToken": csrf, "Referer": f"{live_server.url}/rollouts/{rollout.pk}/"},
    )
    assert refused.status == 403
    assert Rollout.objects.get(pk=rollout.pk).status == "succeeded"


def test_operator_runs_an_audit_and_asks_what_if(page, live_server, lab, celery_worker_thread, screenshot):
    account("olga", "operator")
    sign_in(page, live_server, "olga")
    page.get_by_role("heading", name="Fleet overview").wait_for()
    matrix = page.locator("table.matrix")
    # The six gpu nodes share one cell; the node whose engine is too old to read has no facts yet.
    assert "6 nodes\n6 isolated\n6 switchable to shared" in matrix.inner_text() and "unknown" in matrix.inner_text()
    assert page.get_by_role("img", name="lab: 6 isolated, 1 unknown").is_visible()
    screenshot("overview")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audits").click()
    page.get_by_label("Scope").select_option("lab")
    page.get_by_role("button", name="Run audit now").click()
    page.get_by_text("sent to a worker; this page follows it.").first.wait_for()
    page.evaluate("window.sameDocument = true")
    page.get_by_test_id("status").filter(has_text="succeeded").wait_for(timeout=30_000)
    assert page.evaluate("window.sameDocument") is True
    assert page.get_by_text("queued").count() == 0  # nothing on the page still says queued
    text = page.locator("#audit-live").inner_text()
    assert "7/7 nodes read, 1 failed" in text and "engine-too-old 1" in text
    screenshot("audit")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="What-if").click()
    page.get_by_label("Cluster").select_option("lab")
    page.get_by_label("Kubelet upgraded to").fill("v1.7.0")
    page.get_by_role("button", name="Compute").click()
    summary = page.get_by_test_id("whatif-summary")
    summary.wait_for()
    assert "6 would change mode (6 isolated → shared)" in summary.inner_text()
    assert "6 would lose automatic rollback" in summary.inner_text()
    assert "1 cannot be decided" in summary.inner_text()  # the node too old to be read
    screenshot("what-if")
    page.get_by_label("Kubelet upgraded to").fill("banana")
    page.get_by_role("button", name="Compute").click()
    page.get_by_role("alert").wait_for()
    assert "Kubernetes version" in page.locator("#w-kubelet-error").inner_text()


def test_the_plan_form_refuses_in_words_and_keeps_its_preview_after_back(page, live_server, lab):
    account("olga", "operator")
    sign_in(page, live_server, "olga")
    page.goto(f"{live_server.url}/rollouts/new/")
    page.get_by_label("Cluster").select_option("lab")
    page.get_by_label("Wave size (nodes or %)").fill("50%")
    summary = page.get_by_test_id("preview-summary")
    page.get_by_text("6 nodes to change in 3 waves").wait_for()

    # What the server would refuse, the preview refuses, on the field, in the form's words.
    page.get_by_label("At most in flight").fill("0")
    alert = page.get_by_role("alert")
    alert.get_by_text("At most in flight").wait_for()
    assert "greater than or equal to 1" in alert.inner_text() and "max_unavailable" not in alert.inner_text()
    page.get_by_label("At most in flight").fill("2")
    page.get_by_label("Only these nodes (names, space- or comma-separated)").fill("gpu-01 gpu-99")
    alert.get_by_text("no node named gpu-99 in cluster lab").wait_for()
    page.get_by_label("Only these nodes (names, space- or comma-separated)").fill("")
    summary.wait_for()

    # Away and Back: the fields come back, and so does their preview.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Nodes").click()
    page.get_by_role("heading", name="Nodes").first.wait_for()
    page.go_back()
    summary.wait_for(timeout=15_000)
    assert "6 nodes to change in 3 waves" in summary.inner_text()
    assert "Choose a cluster" not in page.locator("#preview").inner_text()
