"""The systemd units shipped for nodes agree with what the driver and its helper write and read."""

from pathlib import Path

from django.conf import settings

from drivers.dropin import DROPIN_NAME, ENV_NAME, RESTART_NAME, VERSION_NAME, parse_dropin, render_dropin

UNITS = Path(__file__).resolve().parents[2] / "drivers" / "node-units"


def directives(name: str) -> list[tuple[str, str]]:
    pairs = []
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def test_the_path_unit_watches_the_file_the_helper_replaces():
    kubelet_dir = settings.PIDNS_KUBELET_DIR
    assert ("PathChanged", f"{kubelet_dir}/{RESTART_NAME}") in directives("kubelet-pidns-restart.path")
    assert ("Unit", "kubelet-pidns-restart.service") in directives("kubelet-pidns-restart.path")
    helper = (UNITS.parent / "helper.sh").read_text()
    assert f'"$dir/{RESTART_NAME}"' in helper and f'dropin="$dir/{DROPIN_NAME}"' in helper


def test_the_restart_reloads_units_before_restarting_the_kubelet():
    starts = [v for k, v in directives("kubelet-pidns-restart.service") if k == "ExecStart"]
    assert starts == ["/bin/systemctl daemon-reload", "/bin/systemctl restart kubelet.service"]


def test_the_kubelet_drop_in_records_the_version_and_defaults_the_variable():
    conf = directives("kubelet-pidns.conf")
    assert ("Environment", f'"{ENV_NAME}="') in conf
    pre = next(v for k, v in conf if k == "ExecStartPre")
    assert f"> {settings.PIDNS_KUBELET_DIR}/{VERSION_NAME}" in pre
    # The managed drop-in the helper writes sets the same variable, later in systemd's order.
    assert DROPIN_NAME > "15-pidns.conf" and f'Environment="{ENV_NAME}=' in render_dropin({"enable-cri": "false"})
    assert parse_dropin(render_dropin({"enable-cri": "false"})) == {"enable-cri": "false"}


def test_the_kubelet_drop_in_records_what_the_driver_reads_as_the_kubelet_status():
    from drivers.docker_engine import kubelet_args, kubelet_status

    conf = dict(directives("kubelet-pidns.conf"))
    status_file = f"{settings.PIDNS_KUBELET_DIR}/kubelet-status"
    assert status_file in conf["ExecStartPost"] and status_file in conf["ExecStopPost"]
    helper = (UNITS.parent / "helper.sh").read_text()
    assert 'cat "$dir/kubelet-status"' in helper
    # What the units write (systemd turns %% into %), read back by the driver.
    running = "running\nargs: --enable-cri=true --feature-gates=A=true\n"
    assert kubelet_status(running) == "running"
    assert kubelet_args(running) == {"enable-cri": "true", "feature-gates": "A=true"}
    failed = "failed: exit-code 1\nargs: --feature-gates=Gone=true\n"
    assert kubelet_status(failed) == "failed: exit-code 1" and kubelet_args(failed) == {"feature-gates": "Gone=true"}
