"""Bulk import through the API and the import_nodes command: all or nothing, errors by row."""

import json

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from nodes.models import Cluster, Node

pytestmark = pytest.mark.django_db

URL = "/api/v1/nodes/import/"


def rows(n, cluster="east", **extra):
    return [
        {"cluster": cluster, "name": f"n{i}", "kubelet_version": "v1.6.4", "runtime_version": "1.12.6", **extra}
        for i in range(n)
    ]


def test_api_import_creates_then_updates(admin, make_cluster):
    make_cluster("east")
    first = admin.post(URL, {"nodes": rows(3)}, format="json")
    assert first.status_code == 200
    assert first.json() == {"created": 3, "updated": 0, "clusters_created": 0, "clusters_updated": 0}
    assert set(Node.objects.values_list("pid_namespace", flat=True)) == {"shared"}
    again = admin.post(URL, {"nodes": rows(4, kubelet_flags={"enable-cri": "false"})}, format="json")
    assert again.json()["created"] == 1 and again.json()["updated"] == 3
    assert set(Node.objects.values_list("pid_namespace", flat=True)) == {"isolated"}
    assert AuditEvent.objects.filter(verb="import").count() == 2


def test_api_import_is_all_or_nothing_with_errors_by_index(admin, make_cluster):
    make_cluster("east")
    body = rows(5)
    body[1]["kubelet_version"] = "v1.x"
    body[3]["cluster"] = "nowhere"
    body[4]["colour"] = "blue"
    response = admin.post(URL, {"nodes": body}, format="json")
    assert response.status_code == 400
    errors = response.json()["nodes"]
    assert set(errors) == {"1", "3", "4"}
    assert "kubelet_version" in errors["1"]
    assert errors["3"]["cluster"] == ["no cluster named 'nowhere'"]
    assert errors["4"]["colour"] == ["unknown field"]
    assert not Node.objects.exists()
    assert not AuditEvent.objects.filter(verb="import").exists()


def test_api_import_rejects_duplicates_in_one_file(admin, make_cluster):
    make_cluster("east")
    response = admin.post(URL, {"nodes": rows(2) + rows(1)}, format="json")
    assert response.status_code == 400
    assert "already at index 0" in response.json()["nodes"]["2"]["name"][0]


def test_api_import_can_create_clusters(admin):
    body = {"clusters": [{"name": "west", "plan": "upstream"}], "nodes": rows(2, cluster="west")}
    response = admin.post(URL, body, format="json")
    assert response.status_code == 200
    assert response.json()["clusters_created"] == 1
    assert Cluster.objects.get(name="west").plan == "upstream"
    assert set(Node.objects.values_list("pid_namespace", flat=True)) == {"isolated"}


def test_api_import_bad_cluster_rolls_back_everything(admin):
    body = {"clusters": [{"name": "west", "plan": "nightly"}], "nodes": rows(1, cluster="west")}
    response = admin.post(URL, body, format="json")
    assert response.status_code == 400
    assert "plan" in response.json()["clusters"]["0"]
    assert not Cluster.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"nodes": "all of them"}, "nodes"),
        ({"nodes": [], "extra": 1}, "extra"),
        ({"clusters": {}, "nodes": []}, "clusters"),
        ({}, "nodes"),
        ("text", "non_field_errors"),
        ({"nodes": [1, None]}, "nodes"),
    ],
)
def test_api_import_shape_errors(admin, body, field):
    response = admin.post(URL, json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()


def test_api_import_keeps_facts_missing_from_the_file(admin, make_cluster):
    make_cluster("east")
    admin.post(URL, {"nodes": rows(1, kubelet_flags={"enable-cri": "false"})}, format="json")
    response = admin.post(URL, {"nodes": [{"cluster": "east", "name": "n0", "labels": {"pool": "a"}}]}, format="json")
    assert response.json()["updated"] == 1
    node = Node.objects.get()
    assert node.labels == {"pool": "a"}
    assert node.kubelet_flags == {"enable-cri": "false"} and node.pid_namespace == "isolated"


CSV = """cluster,name,kubelet_version,runtime_version,kubelet_flags,labels
east,a1,v1.6.4,1.12.6,enable-cri=false,pool=gpu;zone=a
east,a2,v1.7.0,1.12.6,,
east,a3,v1.6.4,1.11.2,"{""enable-cri"": ""true""}",pool=general
"""


@pytest.mark.parametrize("fmt", ["csv", "json", "yaml"])
def test_import_command_reads_every_format(tmp_path, make_cluster, capsys, fmt):
    make_cluster("east")
    path = tmp_path / f"fleet.{fmt}"
    if fmt == "csv":
        path.write_text(CSV)
    else:
        data = {
            "nodes": [
                {
                    "cluster": "east",
                    "name": "a1",
                    "kubelet_version": "v1.6.4",
                    "runtime_version": "1.12.6",
                    "kubelet_flags": {"enable-cri": "false"},
                    "labels": {"pool": "gpu", "zone": "a"},
                },
                {"cluster": "east", "name": "a2", "kubelet_version": "v1.7.0", "runtime_version": "1.12.6"},
                {
                    "cluster": "east",
                    "name": "a3",
                    "kubelet_version": "v1.6.4",
                    "runtime_version": "1.11.2",
                    "kubelet_flags": {"enable-cri": "true"},
                    "labels": {"pool": "general"},
                },
            ]
        }
        import yaml

        path.write_text(json.dumps(data) if fmt == "json" else yaml.safe_dump(data))
    call_command("import_nodes", str(path))
    out, err = capsys.readouterr()
    assert "imported 3 nodes: 3 created, 0 updated" in out
    assert "write 3/3 (100%)" in err
    modes = dict(Node.objects.values_list("name", "pid_namespace"))
    assert modes == {"a1": "isolated", "a2": "shared", "a3": "isolated"}
    assert Node.objects.get(name="a1").labels == {"pool": "gpu", "zone": "a"}


def test_import_command_reports_errors_by_row_and_writes_nothing(tmp_path, make_cluster, capsys):
    make_cluster("east")
    path = tmp_path / "fleet.csv"
    path.write_text(CSV.replace("east,a2,v1.7.0", "east,a2,seven").replace("1.11.2", "eleven"))
    with pytest.raises(CommandError, match="nothing was written"):
        call_command("import_nodes", str(path), "--quiet")
    err = capsys.readouterr().err
    assert "node 2 (line 3): kubelet_version:" in err
    assert "node 3 (line 4): runtime_version:" in err
    assert not Node.objects.exists()


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.json", "{nope", "bad JSON"),
        ("bad.yaml", "nodes: [unclosed", "bad YAML"),
        ("bad.txt", "", "cannot tell the format"),
        ("top.json", '{"hosts": []}', "unknown top-level keys"),
        ("cells.csv", "cluster,name\neast,a,extra\n", "more cells than header"),
    ],
)
def test_import_command_unreadable_files(tmp_path, db, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_nodes", str(path))


def test_import_command_default_cluster(tmp_path, make_cluster):
    make_cluster("east")
    path = tmp_path / "fleet.csv"
    path.write_text("name,kubelet_version,runtime_version\nb1,v1.6.4,1.12.6\n")
    call_command("import_nodes", str(path), "--cluster", "east", "--quiet")
    assert Node.objects.get().cluster.name == "east"


def test_a_plan_changed_by_an_import_re_decides_every_node_of_its_cluster(admin, make_cluster, make_node):
    east = make_cluster("east")
    make_node(east, "outside", kubelet="v1.8.4", docker="17.03.2-ce")
    assert Node.objects.get(name="outside").pid_namespace == "shared"  # proposal: CRI is mandatory from 1.7
    body = {"clusters": [{"name": "east", "plan": "upstream"}], "nodes": rows(1, kubelet_version="v1.8.4")}
    body["nodes"][0]["runtime_version"] = "17.03.2-ce"
    response = admin.post(URL, body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["clusters_updated"] == 1
    # The node the import did not name is decided under the new plan too (1.8 isolates by default).
    assert dict(Node.objects.values_list("name", "pid_namespace")) == {"n0": "isolated", "outside": "isolated"}
    update = AuditEvent.objects.get(verb="update", object_type="cluster")
    assert (update.before["plan"], update.after["plan"]) == ("proposal", "upstream")


def test_reported_flags_become_the_desired_ones_unless_the_import_sets_them(admin, make_cluster):
    make_cluster("east")
    admin.post(URL, {"nodes": rows(1, kubelet_flags={"enable-cri": "false", "max-pods": "9"})}, format="json")
    node = Node.objects.get()
    assert node.kubelet_flags == {"enable-cri": "false", "max-pods": "9"}
    assert (node.desired_flags, node.desired_gates, node.observed_via) == ({"enable-cri": "false"}, {}, "inventory")
    body = rows(1, desired_flags={"enable-cri": "true"}, desired_gates={"PodShareProcessNamespace": "true"})
    assert admin.post(URL, {"nodes": body}, format="json").status_code == 200
    node.refresh_from_db()
    assert (node.desired_flags, node.desired_gates) == ({"enable-cri": "true"}, {"PodShareProcessNamespace": True})
    assert node.kubelet_flags == {"enable-cri": "false", "max-pods": "9"}  # what was reported stays
    bad = admin.post(URL, {"nodes": rows(1, desired_flags={"max-pods": "9"})}, format="json")
    assert bad.status_code == 400
    assert "not one this service manages" in bad.json()["nodes"]["0"]["desired_flags"][0]
