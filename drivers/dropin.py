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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gates.facts import format_feature_gates, parse_feature_gates
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


def managed_subset(flags: Mapping[str, str]) -> dict[str, str]:
    return {name: flags[name] for name in MANAGED_FLAGS if name in flags}


def split_gates(flags: Mapping[str, str]) -> tuple[dict[str, str], dict[str, bool]]:
    """Managed flags as (the flags but ``--feature-gates``, the gates as a map). Gates that cannot be
    read are left in the flags, where validation reports them."""
    managed = managed_subset(flags)
    text = managed.pop(FLAG_FEATURE_GATES, None)
    if text is None:
        return managed, {}
    try:
        return managed, parse_feature_gates(text)
    except ValueError:
        return {**managed, FLAG_FEATURE_GATES: text}, {}


def join_gates(flags: Mapping[str, str], gates: Mapping[str, bool]) -> dict[str, str]:
    """The managed flags to write: ``flags`` with ``gates`` as one ``--feature-gates`` flag."""
    joined = {k: v for k, v in managed_subset(flags).items() if k != FLAG_FEATURE_GATES}
    if gates:
        joined[FLAG_FEATURE_GATES] = format_feature_gates(gates)
    return joined


@dataclass(frozen=True)
class Desired:
    """What the service intends for a node: managed kubelet flags and feature gates. Either part may
    be None: no intent for it (it is then neither written nor compared)."""

    flags: dict[str, str] | None = field(default_factory=dict)
    gates: dict[str, bool] | None = field(default_factory=dict)

    @classmethod
    def of(cls, kubelet_flags: Mapping[str, str]) -> Desired:
        flags, gates = split_gates(kubelet_flags)
        return cls(flags=flags, gates=gates)

    def kubelet_flags(self, observed: Mapping[str, str] | None = None) -> dict[str, str]:
        """The managed flags as the drop-in carries them; a part without intent is taken from
        ``observed`` (the node's managed flags as read)."""
        observed_flags, observed_gates = split_gates(observed or {})
        flags = self.flags if self.flags is not None else observed_flags
        gates = self.gates if self.gates is not None else observed_gates
        return join_gates(flags, gates)


def effective_gates(cluster_gates: Mapping[str, bool] | None, overrides: Mapping[str, bool | None] | None):
    """A node's desired gates: its cluster's, with the node's own settings over them (a null setting
    takes the cluster's gate away on this node). None when neither says anything."""
    if not cluster_gates and overrides is None:
        return None
    merged = dict(cluster_gates or {})
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def overrides_for(cluster_gates: Mapping[str, bool] | None, gates: Mapping[str, bool]) -> dict[str, bool | None]:
    """The fewest node settings that make the node's desired gates ``gates`` under its cluster's."""
    cluster_gates = cluster_gates or {}
    overrides: dict[str, bool | None] = {k: v for k, v in gates.items() if cluster_gates.get(k) != v}
    overrides.update({k: None for k in cluster_gates if k not in gates})
    return overrides


def render_args(flags: Mapping[str, str]) -> str:
    """The managed flags as the drop-in's argument list (sorted, so equal flags render equal)."""
    args = []
    for name, value in sorted(managed_subset(flags).items()):
        if not _SAFE_VALUE.match(value):
            raise DropinError(f"flag {name}: value {value!r} cannot be written into a kubelet drop-in")
        args.append(f"--{name}={value}")
    return " ".join(args)


def render_dropin(flags: Mapping[str, str]) -> str:
    """The drop-in text for the managed flags (others are not this service's to write)."""
    return f'{HEADER}\n[Service]\nEnvironment="{ENV_NAME}={render_args(flags)}"\n'


def parse_args(text: str) -> dict[str, str]:
    """Kubelet arguments (``--name=value ...``) as a map."""
    flags: dict[str, str] = {}
    for arg in text.split():
        parsed = _ARG.match(arg)
        if not parsed:
            raise DropinError(f"unreadable kubelet argument {arg[:80]!r}")
        value = parsed.group("value")
        flags[parsed.group("name")] = "true" if value is None else value
    return flags


def parse_dropin(text: str) -> dict[str, str]:
    """The managed flags in a drop-in; an empty or missing drop-in has none."""
    flags: dict[str, str] = {}
    for line in text.splitlines():
        match = _ENV_LINE.match(line.strip())
        if match:
            try:
                flags.update(parse_args(match.group("args")))
            except DropinError as exc:
                raise DropinError(f"{exc} in {DROPIN_NAME}") from None
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
