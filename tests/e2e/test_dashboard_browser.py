"""The dashboard in a real browser: sign in, read the overview, filter nodes, read a decision."""

import pytest
from django.contrib.auth import get_user_model

from core.roles import role_set
from nodes import services

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "correct horse battery staple"


@pytest.fixture
def fleet():
    east = services.cluster_create(actor="test", name="east")
    west = services.cluster_create(actor="test", name="west", plan="upstream")
    for name, kubelet, docker, flags in [
        ("e1", "v1.6.4", "1.12.6", {}),
        ("e2", "v1.6.4", "1.12.6", {"enable-cri": "false"}),
        ("e3", "v1.7.2", "1.11.2", {}),
    ]:
        services.node_create(
            actor="test",
            cluster=east,
            name=name,
            kubelet_version=kubelet,
            runtime_version=docker,
            kubelet_flags=flags,
            pause_image="k8s.gcr.io/pause:3.0",
        )
    services.node_create(actor="test", cluster=west, name="w1", kubelet_version="v1.8.0", runtime_version="17.03.1-ce")


def account(name, role):
    user = get_user_model().objects.create_user(username=name, password=PASSWORD)
    if role:
        role_set(user=user, role=role)


def sign_in(page, live_server, name):
    page.goto(f"{live_server.url}/")
    assert "/login/" in page.url
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_operator_reads_overview_filters_nodes_and_reads_a_decision(page, live_server, fleet, screenshot):
    account("olga", "operator")
    sign_in(page, live_server, "olga")
    page.get_by_role("heading", name="Fleet overview").wait_for()
    assert page.get_by_role("heading", name="4 nodes by decided PID namespace").is_visible()
    assert page.get_by_role("row", name="east").is_visible()
    # Each cluster's legend names the bar's segments in the bar's own order.
    for row in page.locator("section[aria-labelledby=clusters] tbody tr").all():
        segments = row.locator("svg rect title").all_text_contents()
        legend = row.get_by_test_id("bar-legend").inner_text().split()
        assert [t.split(" ", 1)[1] for t in segments] == legend[0::2], (segments, legend)
    # Per-pod and isolated badges do not look alike.
    page.evaluate(
        """document.body.insertAdjacentHTML('beforeend',
        '<span class="mode mode-per-pod" id="look-per-pod">per-pod</span>'
        + '<span class="mode mode-isolated" id="look-isolated">isolated</span>')"""
    )
    look = "e => ['backgroundColor', 'borderTopStyle', 'borderTopColor'].map(k => getComputedStyle(e)[k])"
    per_pod, isolated = page.locator("#look-per-pod").evaluate(look), page.locator("#look-isolated").evaluate(look)
    assert all(a != b for a, b in zip(per_pod, isolated, strict=True)), (per_pod, isolated)
    screenshot("overview")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Nodes").click()
    page.get_by_label("Decided mode").select_option("isolated")
    page.get_by_label("Cluster").select_option("east")
    page.get_by_role("button", name="Filter").click()
    page.get_by_text("2 nodes").wait_for()
    rows = page.locator("tbody tr th a").all_inner_texts()
    assert rows == ["e2", "e3"]
    screenshot("nodes")

    # Act from a selection: pick nodes in the list, plan a rollout of exactly those.
    page.get_by_label("Select e2").check()
    page.get_by_label("Select e3").check()
    page.get_by_role("button", name="Plan a rollout of the selected nodes").click()
    page.get_by_role("heading", name="Plan a rollout").wait_for()
    assert page.get_by_label("Cluster").input_value() == "east"
    assert page.get_by_label("Only these nodes (names, space- or comma-separated)").input_value() == "e2 e3"
    page.get_by_test_id("preview-summary").wait_for()
    assert "e1" not in page.locator("#preview").inner_text()
    page.go_back()

    page.get_by_role("link", name="e2", exact=True).click()
    page.get_by_role("heading", name="east/e2").wait_for()
    decision = page.locator("section", has=page.get_by_role("heading", name="Decision under the proposal plan"))
    text = decision.inner_text()
    assert "CRI_DISABLED" in text and "dockertools" in text and "not-needed" in text
    screenshot("node")

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()


def test_user_without_a_role_is_refused(page, live_server, fleet):
    account("nobody", None)
    sign_in(page, live_server, "nobody")
    response = page.goto(f"{live_server.url}/nodes/")
    assert response.status == 403


def test_keyboard_reaches_the_filters(page, live_server, fleet):
    account("vera", "viewer")
    sign_in(page, live_server, "vera")
    page.goto(f"{live_server.url}/nodes/")
    focused = []
    for _ in range(20):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    assert {"f-cluster", "f-runtime", "f-mode", "f-observed", "f-minor", "f-line", "f-drift", "f-name"} <= set(focused)


def draft_rollout():
    """A draft rollout of the east cluster to shared (a canary of one)."""
    from nodes.models import Cluster
    from rollout import transitions as rollout_services
    from rollout.strategy import Strategy

    return rollout_services.rollout_create(
        actor="user:test",
        name="east to shared",
        cluster=Cluster.objects.get(name="east"),
        intent="shared",
        strategy=Strategy(canary_count=1),
    )


def test_operator_starts_pauses_and_aborts_a_rollout_viewer_sees_no_buttons(page, live_server, fleet, screenshot):
    rollout = draft_rollout()
    account("vera", "viewer")
    sign_in(page, live_server, "vera")
    page.goto(f"{live_server.url}/rollouts/{rollout.pk}/")
    page.get_by_role("heading", name=f"Rollout #{rollout.pk}: east to shared").wait_for()
    assert page.get_by_role("button", name="Start").count() == 0
    page.get_by_role("button", name="Sign out").click()

    account("olga", "operator")
    sign_in(page, live_server, "olga")
    page.goto(f"{live_server.url}/rollouts/")
    page.get_by_role("link", name=f"#{rollout.pk} east to shared").click()
    page.get_by_role("button", name="Start").click()
    page.get_by_text("start: the rollout is now running.").wait_for()
    page.get_by_role("button", name="Pause").click()
    page.get_by_text("pause: the rollout is now paused.").wait_for()
    screenshot("paused")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Abort").click()
    page.get_by_text("abort: the rollout is now aborted.").wait_for()
    # Every node was skipped when the rollout was created: nothing was written, so nothing is
    # offered to roll back, and no bar claims 100%.
    assert page.get_by_role("button", name="Rollback").count() == 0
    live = page.locator("#live").inner_text()
    assert "Forward: no node to change." in live and "100%" not in live
    assert page.locator("#live .bar").count() == 0


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML.slice(0, 120))"""


def test_every_page_labels_its_controls_and_describes_its_charts(page, live_server, fleet, screenshot):
    from nodes.models import Audit, Cluster, Node
    from rollout import transitions as rollout_services
    from rollout.strategy import Strategy

    east = Cluster.objects.get(name="east")
    rollout = rollout_services.rollout_create(
        actor="user:test", name="east to shared", cluster=east, intent="shared", strategy=Strategy()
    )
    audit = Audit.objects.create(requested_by="user:test", cluster=east, status="succeeded", total=3, done=3)
    # A week of readings for the history page: the cluster moved to shared, one node drifted a while.
    from datetime import timedelta

    from django.utils import timezone

    from nodes.models import NodeObservation

    now = timezone.now()
    for index, name in enumerate(("e1", "e2", "e3")):
        for hours in range(0, 7 * 24, 12):
            mode = "shared" if hours < 60 - 20 * index else "isolated"
            NodeObservation.objects.create(
                node=Node.objects.get(name=name),
                observed_at=now - timedelta(hours=hours, minutes=index),
                reachable=True,
                observed_pid_namespace=mode,
                drift=name == "e3" and 24 < hours < 72,
            )
    node = Node.objects.get(name="e2")
    account("olga", "operator")
    sign_in(page, live_server, "olga")
    pages = {
        "overview": "/",
        "nodes": "/nodes/?cluster=east",
        "node": f"/nodes/{node.pk}/",
        "rollouts": "/rollouts/",
        "rollout-new": "/rollouts/new/?cluster=east",
        "rollout": f"/rollouts/{rollout.pk}/",
        "what-if": "/what-if/?cluster=east&kubelet_version=v1.7.0",
        "audits": "/audits/",
        "audit": f"/audits/{audit.pk}/",
        "audit-log": "/events/",
        "cluster-history": "/clusters/east/history/?range=7d",
    }
    for name, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, path
        page.get_by_role("heading", level=1).wait_for()
        assert page.evaluate(UNLABELLED) == [], path
        charts = page.locator("svg")
        for index in range(charts.count()):
            assert charts.nth(index).get_attribute("role") == "img" and charts.nth(index).get_attribute("aria-label")
        screenshot(name)
    # The skip link is the first stop of the keyboard and leads to the content.
    page.goto(f"{live_server.url}/")
    header = "getComputedStyle(document.querySelector('header')).backgroundColor"
    assert page.evaluate(header) == "rgb(31, 59, 87)"  # the stylesheet and htmx are served locally
    assert page.evaluate("typeof htmx") == "object"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def test_a_page_whose_session_ends_goes_to_sign_in_on_its_next_refresh(page, live_server, fleet, settings):
    settings.PIDNS_OVERVIEW_REFRESH_SECONDS = 1
    account("vera", "viewer")
    sign_in(page, live_server, "vera")
    page.get_by_role("heading", name="Fleet overview").wait_for()
    page.context.clear_cookies()  # the session ends (signed out elsewhere, or expired)
    page.wait_for_url("**/login/?next=%2F", timeout=10_000)
    assert page.get_by_role("heading", name="Sign in").is_visible()
    assert page.locator("#overview-live").count() == 0  # not a sign-in form inside the old page


def test_every_page_and_the_api_docs_pass_the_content_security_policy(page, live_server, fleet):
    account("cora", "operator")
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url}: {message.text[:60]}") if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: violations.append(str(error)))
    sign_in(page, live_server, "cora")
    page.get_by_role("heading", name="Fleet overview").wait_for()
    for path in (
        "/",
        "/nodes/",
        "/rollouts/",
        "/rollouts/new/?cluster=east",
        "/what-if/",
        "/audits/",
        "/events/",
        "/clusters/east/history/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{live_server.url}/api/docs/")
    page.locator(".opblock").first.wait_for(timeout=20_000)  # Swagger UI drew the operations
    assert page.locator(".opblock").count() > 20
    assert violations == []


def test_a_phone_reads_the_overview_nodes_and_a_rollout_without_scrolling_sideways(page, live_server, fleet):
    """At 390 px wide the page itself never scrolls sideways (a wide table scrolls inside itself),
    and the navigation takes a few lines, not one per link."""
    rollout = draft_rollout()
    account("vera", "viewer")
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server, "vera")
    for path in ("/", "/nodes/", f"/rollouts/{rollout.pk}/", "/rollouts/", "/events/", "/audits/"):
        page.goto(f"{live_server.url}{path}")
        page.locator("main h1").first.wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
        nav = page.get_by_role("navigation", name="Main")
        line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('header nav a')).lineHeight) || 20")
        assert nav.bounding_box()["height"] <= 3.5 * line, f"{path}: the navigation stacks into many lines"
