"""Feature gates from the command line.

manage.py gates validate --kubelet v1.19.0 PodShareProcessNamespace=true   # exit 1: would not start
manage.py gates upgrade-check --cluster prod --to v1.19.0                  # exit 1: some would not
manage.py gates catalog [--search Pod] [--at 1.19] [--stage alpha|beta|ga|deprecated|removed]
manage.py gates load-catalog /path/to/feature_gates.json
"""

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.catalog import catalog, install_catalog
from core.commands import refuse_hostile
from gates.catalog import STAGES, CatalogError, minor_label, parse_minor
from gates.gatecheck import GateInputError, validate
from nodes.selectors import cluster_named
from nodes.upgrade import upgrade_check


class Command(BaseCommand):
    help = "Validate feature gates against a kubelet version, check an upgrade, read or load the catalog."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        check = sub.add_parser("validate", help="would a kubelet of this version start with these gates?")
        check.add_argument("--kubelet", required=True, help="kubelet version, e.g. v1.19.0")
        check.add_argument("gates", nargs="+", metavar="NAME=true|false")
        check.add_argument("--json", action="store_true", help="print the API's answer")
        upgrade = sub.add_parser("upgrade-check", help="which nodes' gates would stop a newer kubelet")
        upgrade.add_argument("--cluster", required=True)
        upgrade.add_argument("--to", required=True, help="the kubelet version to move to")
        upgrade.add_argument("--json", action="store_true", help="print the API's answer")
        listing = sub.add_parser("catalog", help="search the catalog")
        listing.add_argument("--search", default="")
        listing.add_argument("--at", help="a release line, e.g. 1.19")
        listing.add_argument("--stage", choices=[*STAGES, "removed"])
        load = sub.add_parser("load-catalog", help="install a newer catalog file of the same shape")
        load.add_argument("file", type=Path)

    def handle(self, *args, action, **options):
        refuse_hostile(options)
        return getattr(self, f"_{action.replace('-', '_')}")(**options)

    def _validate(self, kubelet, gates, json, **options):
        values = {}
        for item in gates:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"{item[:80]!r}: write gates as NAME=true or NAME=false")
            values[name] = value
        try:
            check = validate(kubelet, values, catalog())
        except GateInputError as exc:
            raise CommandError(f"{exc.field}: {exc}") from None
        if json:
            self._json(check.as_dict())
        else:
            for problem in check.problems:
                self.stdout.write(f"problem {problem.code}: {problem.message}")
            for warning in check.warnings:
                self.stdout.write(f"warning {warning.code}: {warning.message}")
            verdict = "starts" if check.valid else "does not start"
            self.stdout.write(f"kubelet {check.kubelet_minor} (judged as {check.judged_as}) {verdict} with these gates")
        if not check.valid:
            raise SystemExit(1)

    def _upgrade_check(self, cluster, to, json, **options):
        target = cluster_named(cluster)
        if target is None:
            raise CommandError(f"no cluster named {cluster[:80]!r}")
        started = time.perf_counter()
        try:
            result = upgrade_check(cluster=target, kubelet_version=to, catalog=catalog())
        except GateInputError as exc:
            raise CommandError(f"--to: {exc}") from None
        if json:
            self._json(result)
        else:
            self.stdout.write(f"{result['nodes']} nodes of {result['cluster']} to kubelet {result['kubelet_minor']}:")
            for part in ("current", "desired"):
                judged = result[part]
                self.stdout.write(f"  {part} gates: {judged['summary']}")
                for finding in judged["problems"]:
                    self.stdout.write(
                        f"    {finding['code']} {finding['gate']} on {finding['count']} nodes: {finding['message']}"
                    )
                for finding in judged["no_ops"]:
                    self.stdout.write(f"    no-op {finding['gate']} on {finding['count']} nodes (GA: drop it)")
            self.stderr.write(f"checked in {time.perf_counter() - started:.2f}s")
        if result["current"]["would_not_start"] or result["desired"]["would_not_start"]:
            raise SystemExit(1)

    def _catalog(self, search, at, stage, **options):
        known = catalog()
        minor = None
        if at:
            try:
                minor = parse_minor(at)
            except ValueError as exc:
                raise CommandError(f"--at: {exc}") from None
        gates = known.search(search, stage, minor)
        for gate in gates:
            spans = ", ".join(
                f"{stage} {minor_label(start)}-{minor_label(end) if end else ''}"
                for stage, start, end in gate.timeline()
            )
            removed = f"; removed in {minor_label(gate.removed_in)}" if gate.removed_in else ""
            locked = f"; locked from {minor_label(gate.locked_from)}" if gate.locked_from else ""
            self.stdout.write(f"{gate.name}: {spans}{removed}{locked}")
        span = f"releases {minor_label(known.oldest)} to {minor_label(known.newest)}"
        self.stderr.write(f"{len(gates)} of {len(known.gates)} gates ({span})")

    def _load_catalog(self, file, **options):
        try:
            installed = install_catalog(file)
        except (OSError, UnicodeDecodeError, ValueError, CatalogError) as exc:
            raise CommandError(f"{file}: {str(exc)[:300]}") from None
        self.stdout.write(
            f"installed {len(installed.gates)} gates, releases {minor_label(installed.oldest)} to "
            f"{minor_label(installed.newest)}"
        )

    def _json(self, data):
        self.stdout.write(json.dumps(data, indent=2))
