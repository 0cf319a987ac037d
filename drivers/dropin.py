"""The kubelet drop-in this service manages, and the node helper's output. Pure functions.

On a node, the managed flags live in one systemd drop-in next to the kubelet's own
configuration (``/etc/kubernetes/pidns/20-pidns.conf`` by default)::

    # Managed by the PID namespace rollout manager. Changes here are overwritten.
    [Service]
    Environment="KUBELET_PIDNS_ARGS=--enable-cri=false"

The kubelet's unit passes ``$KUBELET_PIDNS_ARGS`` on its command line. The helper keeps the
previous drop-in as ``20-pidns.conf.prev`` and touches ``restart-requested``, which a path unit
(or, on simulated nodes, the kubelet stand-in) turns into a kubelet restart.
"""

from __future__ import annotations

import re
from pathlib import Path

from gates.policy import FLAG_DISABLE_SHARED_PID, FLAG_ENABLE_CRI, FLAG_EXPERIMENTAL_CRI, FLAG_FEATURE_GATES

MANAGED_FLAGS = (FLAG_ENABLE_CRI, FLAG_EXPERIMENTAL_CRI, FLAG_DISABLE_SHARED_PID, FLAG_FEATURE_GATES)
DROPIN_NAME = "20-pidns.conf"
VERSION_NAME = "kubelet-version"
RESTART_NAME = "restart-requested"
ENV_NAME = "KUBELET_PIDNS_ARGS"
HEADER = "# Managed by the PID namespace rollout manager. Changes here are overwritten."
HELPER_SCRIPT = (Path(__file__).with_name("helper.sh")).read_text()

_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._,=:/+-]*$", re.ASCII)
_ENV_LINE = re.compile(r'^Environment="' + ENV_NAME + r'=(?P<args>[^"]*)"\s*$')
_ARG = re.compile(r"^--(?P<name>[a-z0-9][a-z0-9-]*)(?:=(?P<value>.*))?$")


class DropinError(ValueError):
    """A drop-in or helper output that cannot be read, or flags that cannot be written."""


def managed_subset(flags: dict[str, str]) -> dict[str, str]:
    return {name: flags[name] for name in MANAGED_FLAGS if name in flags}


def render_dropin(flags: dict[str, str]) -> str:
    """The drop-in text for the managed flags (others are not this service's to write)."""
    args = []
    for name, value in sorted(managed_subset(flags).items()):
        if not _SAFE_VALUE.match(value):
            raise DropinError(f"flag {name}: value {value!r} cannot be written into a kubelet drop-in")
        args.append(f"--{name}={value}")
    return f'{HEADER}\n[Service]\nEnvironment="{ENV_NAME}={" ".join(args)}"\n'


def parse_dropin(text: str) -> dict[str, str]:
    """The managed flags in a drop-in; an empty or missing drop-in has none."""
    flags: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line.strip())
        if not match:
            continue
        for arg in match.group("args").split():
            parsed = _ARG.match(arg)
            if not parsed:
                raise DropinError(f"unreadable kubelet argument {arg!r} in {DROPIN_NAME}")
            value = parsed.group("value")
            flags[parsed.group("name")] = "true" if value is None else value
    return flags


def parse_helper_output(text: str) -> dict[str, str]:
    """Split the helper's output into its sections: ``==> NAME`` lines start each one."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("==> "):
            current = sections.setdefault(line[4:].strip(), [])
        elif current is not None:
            current.append(line)
    if "status" not in sections:
        raise DropinError(f"the node helper gave no status: {text.strip()[:200]!r}")
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}
