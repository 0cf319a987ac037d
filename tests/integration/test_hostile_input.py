"""Hostile input: every row of what a hostile tester found, as a regression test. Nothing answers
5xx, every refusal names the field and the problem, nothing is stored half-way, and no answer
repeats a huge value back."""

import io
import json
import os
import subprocess
import sys
import threading

import pytest
import requests
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from nodes.models import Cluster, DockerCredential, Node

pytestmark = pytest.mark.django_db

DEEP = "[" * 1000 + "]" * 1000
SURROGATE = "\ud800"


def post_raw(client, url, text):
    return client.generic("POST", url, text.encode("utf-8", "surrogatepass"), content_type="application/json")


@pytest.mark.parametrize(
    "url, body, field",
    [
        (
            "/api/v1/nodes/",
            {"cluster": "east", "name": "n1", "kubelet_flags": {"max-pods": SURROGATE}},
            ("kubelet_flags", "max-pods: "),
        ),
        ("/api/v1/nodes/", {"cluster": "east", "name": "n1", "labels": {"pool": SURROGATE}}, ("labels", "pool: ")),
        ("/api/v1/clusters/", {"name": "west", "description": "a" + SURROGATE}, ("description", "")),
        ("/api/v1/nodes/import/", {"nodes": [{"cluster": "east", "name": "n1", "labels": {SURROGATE: "x"}}]}, None),
        ("/api/v1/decisions/evaluate/", {"kubelet_version": "v1.6.4" + SURROGATE}, ("kubelet_version", "")),
    ],
)
def test_a_lone_surrogate_is_refused_and_nothing_is_stored(admin, make_cluster, url, body, field):
    make_cluster("east")
    response = post_raw(admin, url, json.dumps(body))
    assert response.status_code == 400, response.content
    errors = response.json()
    if field:
        name, where = field
        assert errors == {name: [f"{where}is not valid Unicode text (it holds a lone surrogate)"]}
    else:
        assert "lone surrogate" in json.dumps(errors)
    assert not Node.objects.exists() and Cluster.objects.count() == 1
    # Every page and list still works for everyone.
    assert admin.get("/api/v1/nodes/").status_code == 200
    assert admin.get("/api/v1/events/").status_code == 200


@pytest.mark.parametrize("url", ["/api/v1/decisions/evaluate/", "/api/v1/nodes/import/", "/api/v1/rollouts/preview/"])
def test_json_nested_a_thousand_deep_is_a_400(admin, url):
    response = post_raw(admin, url, DEEP)
    assert response.status_code == 400
    assert "nested more than" in response.json()["detail"]
    forty_deep = "[" * 40 + "]" * 40
    nested = post_raw(admin, url, '{"nodes": [{"cluster": "east", "name": "n1", "labels": {"a": ' + forty_deep + "}}]}")
    assert nested.status_code == 400 and "nested more than 32 levels deep" in json.dumps(nested.json())


def test_commands_refuse_deep_or_broken_files_with_a_clear_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(CommandError, match="nested more than"):
        call_command("import_nodes", str(deep), stdout=io.StringIO(), stderr=io.StringIO())
    json_file = tmp_path / "fleet.json"
    json_file.write_text('{"nodes": [{"cluster": "east", "name": "n1", "labels": {"pool": "\\ud800"}}]}')
    with pytest.raises(CommandError, match=r"nodes\[0\]\.labels\.pool: is not valid Unicode text"):
        call_command("import_nodes", str(json_file), stdout=io.StringIO(), stderr=io.StringIO())
    yaml_file = tmp_path / "fleet.yaml"
    yaml_file.write_text('nodes:\n  - {cluster: east, name: n1, labels: {pool: "\\ud800"}}\n')
    with pytest.raises(CommandError, match="bad YAML"):
        call_command("import_nodes", str(yaml_file), stdout=io.StringIO(), stderr=io.StringIO())
    wide = tmp_path / "wide.csv"
    wide.write_text("cluster,name,labels\neast,n1," + "x" * 200_000 + "\n")
    with pytest.raises(CommandError, match="line 2: a cell is longer than 131072 characters"):
        call_command("import_nodes", str(wide), stdout=io.StringIO(), stderr=io.StringIO())
    spec = tmp_path / "spec.yaml"
    spec.write_text("clusters: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(CommandError, match="nested too deep|cannot read"):
        call_command("simfleet", str(spec), stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("offset", ["+16:00", "-15:30", "+14:01"])
def test_a_time_zone_no_clock_has_is_a_400(admin, offset):
    response = admin.get("/api/v1/events/", {"created_at__gte": f"2026-11-29T00:00:00{offset}"})
    assert response.status_code == 400
    assert "between -14:00 and +14:00" in response.json()["created_at__gte"][0]
    assert admin.get("/api/v1/events/", {"created_at__gte": "2026-11-29T00:00:00+14:00"}).status_code == 200


def test_the_audit_log_page_says_what_is_wrong_with_its_filter(make_cluster):
    from tests.integration.test_dashboard import signed_in

    page = signed_in("vera").get("/events/", {"created_at__gte": "2026-11-29T00:00+16:00"})
    assert page.status_code == 200 and "between -14:00 and +14:00" in page.content.decode()


def test_a_nul_in_a_cluster_filter_is_a_400(admin):
    response = admin.get("/api/v1/fleet/summary/", {"cluster": "\x00"})
    assert response.status_code == 400 and "no cluster named" in response.json()["cluster"][0]
    assert admin.get("/api/v1/nodes/", {"label": "pool=\x00"}).status_code == 400


def test_a_cluster_created_with_its_credential(admin):
    DockerCredential.objects.create(name="tls", ca_cert="-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----")
    response = admin.post("/api/v1/clusters/", {"name": "east", "docker_credential": "tls"}, format="json")
    assert response.status_code == 201, response.json()
    assert Cluster.objects.get(name="east").docker_credential.name == "tls"
    assert response.json()["node_count"] == 0


def test_a_huge_value_is_not_repeated_back(admin, make_cluster):
    make_cluster("east")
    key = "k" * 5_000_000
    response = admin.post("/api/v1/nodes/", {"cluster": "east", "name": "n1", "labels": {key: "v"}}, format="json")
    assert response.status_code == 400
    assert len(response.content) < 2000
    assert "labels" in response.json()


def test_the_schema_says_an_audit_may_have_no_cluster(admin):
    from nodes.models import Audit

    Audit.objects.create(requested_by="test")
    assert admin.get("/api/v1/audits/").json()["results"][0]["cluster"] is None
    schema = admin.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert schema["components"]["schemas"]["Audit"]["properties"]["cluster"]["nullable"] is True


# --- over real HTTP, through gunicorn ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_thirty_parallel_wrong_passwords_then_the_right_one_stay_locked_out(web_server):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="mallory-target", password="correct horse battery staple")
    results = []

    def attempt(password):
        session = requests.Session()
        page = session.get(f"{web_server}/login/", timeout=30)
        token = page.cookies["csrftoken"]
        answer = session.post(
            f"{web_server}/login/",
            data={"username": "mallory-target", "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{web_server}/login/"},
            allow_redirects=False,
            timeout=30,
        )
        results.append(answer.status_code)

    threads = [threading.Thread(target=attempt, args=(f"guess-{i}",)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(302) == 0 and len(results) == 30
    attempt("correct horse battery staple")
    assert results[-1] == 200  # refused: the lockout holds, the right password changes nothing


@pytest.mark.django_db(transaction=True)
def test_bad_tokens_are_throttled_with_retry_after(tmp_path, clients):
    from tests.conftest import _free_port, subprocess_database_url, wait_for_http

    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "PIDNS_VAR_DIR": str(tmp_path),
        "PIDNS_API_BAD_TOKENS": "20",
        "WEB_WORKERS": "1",
        "PIDNS_API_RATE_TOKEN": "50/minute",
    }
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", process=server)
        session = requests.Session()
        codes = [
            session.get(f"{base}/api/v1/nodes/", headers={"Authorization": "Token nope"}, timeout=10).status_code
            for _ in range(30)
        ]
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
        last = session.get(f"{base}/api/v1/nodes/", headers={"Authorization": "Token nope"}, timeout=10)
        assert last.status_code == 429 and int(last.headers["Retry-After"]) > 0
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.django_db(transaction=True)
def test_a_token_is_throttled_per_token(tmp_path, clients):
    from tests.conftest import _free_port, subprocess_database_url, wait_for_http

    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "PIDNS_VAR_DIR": str(tmp_path),
        "WEB_WORKERS": "1",
        "PIDNS_API_RATE_TOKEN": "20/minute",
    }
    server = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", process=server)
        good = {"Authorization": f"Token {Token.objects.get(user=clients['viewer'].user).key}"}
        codes = [requests.get(f"{base}/api/v1/clusters/", headers=good, timeout=10).status_code for _ in range(25)]
        assert codes[:20] == [200] * 20 and set(codes[20:]) == {429}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    env = {
        **os.environ,
        "SECRET_KEY": "a-production-secret-" + "x" * 60,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "pidns.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://pidns.example.com",
        "SECURE_COOKIES": "1",
        "BEHIND_TLS_PROXY": "1",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
        "SECURE_HSTS_PRELOAD": "1",
        "PIDNS_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_signed_in_pages_are_not_stored_and_carry_a_content_security_policy(admin):
    from tests.integration.test_dashboard import signed_in

    for response in (signed_in("vera").get("/"), admin.get("/api/v1/nodes/")):
        assert response["Cache-Control"] == "no-store"
        assert "script-src 'self'" in response["Content-Security-Policy"]


def test_commands_refuse_text_no_database_can_store():
    with pytest.raises(CommandError, match="--name: is not valid Unicode text"):
        call_command("rollout", "preview", "--cluster", "east", "--intent", "shared", "--name", "r\udcff")
    with pytest.raises(CommandError, match="--cluster: must not contain NUL"):
        call_command("audit", "--cluster", "ea\x00st")
    with pytest.raises(CommandError, match="--username: is not valid Unicode"):
        call_command("create_api_token", "bob\udcff", "--role", "viewer")
