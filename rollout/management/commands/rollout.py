"""Rollouts from scripts: preview, create, act, and follow with a live progress line.

    manage.py rollout create --cluster prod --intent shared --batch 25% --start --follow
    manage.py rollout preview --cluster prod --intent isolated --label pool=gpu
    manage.py rollout create --cluster prod --gate NodeSwap=true --gate OldGate=null --start --follow
    manage.py rollout pause|resume|abort|approve|rollback|start ID [--follow]
    manage.py rollout follow ID

Workers (``celery -A config worker``) carry the rollout out; ``follow`` exits 0 when it
succeeds and 1 when it ends any other way.
"""

import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.commands import refuse_hostile
from core.progress import ProgressLine
from rollout import selectors, transitions
from rollout.api.serializers import RolloutInputSerializer
from rollout.errors import RolloutError
from rollout.models import ROLLOUT_FINAL_STATES, Rollout, RolloutStatus
from rollout.selectors import progress_of
from rollout.states import STEP_WORDS
from rollout.tasks import rollout_kick

ACTOR = "command:rollout"
ACTIONS = transitions.ACTIONS


def _pairs(values, what):
    result = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep:
            raise CommandError(f"{what} {value!r} must be key=value")
        result[key] = val
    return result


def _gates(values):
    """``Name=true``, ``Name=false`` or ``Name=null`` pairs as the API's feature_gates."""
    gates = {}
    for name, value in _pairs(values, "--gate").items():
        lowered = value.strip().lower()
        if lowered not in ("true", "false", "null"):
            raise CommandError(f"--gate {name}={value[:40]}: the value is true, false or null")
        gates[name] = None if lowered == "null" else lowered == "true"
    return gates


def _window(text):
    """``"mon,tue 22:00-04:00 Europe/Paris"`` or ``"22:00-04:00"``."""
    if not text:
        return None
    parts = text.split()
    days = None
    if parts and "-" not in parts[0]:
        days = parts.pop(0).split(",")
    if not parts or "-" not in parts[0]:
        raise CommandError("--window is [DAYS] HH:MM-HH:MM [TZ], e.g. 'mon,tue 22:00-04:00 Europe/Paris'")
    start, end = parts[0].split("-", 1)
    window = {"start": start, "end": end, "tz": parts[1] if len(parts) > 1 else "UTC"}
    if days:
        window["days"] = days
    return window


class Command(BaseCommand):
    help = "Preview, create, control and follow rollouts."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        for name in ("create", "preview"):
            p = sub.add_parser(name)
            p.add_argument("--cluster", required=True)
            what = p.add_mutually_exclusive_group(required=True)
            what.add_argument("--intent", choices=["shared", "isolated"], help="change the PID-namespace mode")
            what.add_argument(
                "--gate",
                action="append",
                metavar="NAME=true|false|null",
                help="change a feature gate (null takes it out); repeat for several",
            )
            p.add_argument("--name", default="")
            p.add_argument("--label", action="append", help="key=value; repeat to require several")
            p.add_argument("--node", action="append", help="node name; repeat for several")
            p.add_argument("--canary", type=int, default=1)
            p.add_argument("--batch", default="10", help="nodes per wave, or a percentage: 25%%")
            p.add_argument("--max-unavailable", type=int, default=5)
            p.add_argument("--soak", type=int, default=0, help="seconds between waves")
            p.add_argument("--max-failures", type=int, default=0)
            p.add_argument("--no-auto-rollback", action="store_true")
            p.add_argument("--pause-after-canary", action="store_true")
            p.add_argument("--window", help="[DAYS] HH:MM-HH:MM [TZ]")
            p.add_argument("--wait-busy", action="store_true", help="wait for nodes busy in another rollout")
            drain = p.add_mutually_exclusive_group()
            drain.add_argument(
                "--drain",
                action="store_true",
                default=None,
                help="cordon and drain each node around its change (default when the cluster has a Kubernetes API)",
            )
            drain.add_argument("--no-drain", dest="drain", action="store_false", help="change nodes without a drain")
            p.add_argument("--drain-timeout", type=int, default=600, help="seconds a node's drain may take")
            p.add_argument("--delete-emptydir-data", action="store_true", help="evict pods with emptyDir volumes too")
            if name == "create":
                p.add_argument("--start", action="store_true")
                p.add_argument("--follow", action="store_true")
        for name in (*ACTIONS, "follow", "show"):
            p = sub.add_parser(name)
            p.add_argument("id", type=int)
            if name in ACTIONS:
                p.add_argument("--follow", action="store_true")

    def handle(self, *args, action, **options):
        refuse_hostile(options)
        if action in ("create", "preview"):
            return self._create(action, options)
        rollout = Rollout.objects.filter(pk=options["id"]).first()
        if rollout is None:
            raise CommandError(f"no rollout {options['id']}")
        if action == "show":
            self.stdout.write(json.dumps(self._summary(rollout), indent=2, default=str))
            return
        if action in ACTIONS:
            try:
                with transaction.atomic():
                    rollout = ACTIONS[action](actor=ACTOR, rollout=rollout)
                    if action in transitions.KICKS:
                        rollout_kick(rollout.pk)
            except RolloutError as exc:
                raise CommandError(_errors(exc.errors)) from None
            self.stdout.write(f"rollout {rollout.pk} {rollout.status}")
            if not options.get("follow"):
                return
        self._follow(rollout)

    def _create(self, action, options):
        data = {
            "name": options["name"],
            "cluster": options["cluster"],
            **(
                {"kind": "gates", "feature_gates": _gates(options["gate"])}
                if options["gate"]
                else {"kind": "pid", "intent": options["intent"]}
            ),
            "selector": {"labels": _pairs(options["label"], "--label"), "nodes": options["node"] or []},
            "canary_count": options["canary"],
            "batch_size": options["batch"],
            "max_unavailable": options["max_unavailable"],
            "soak_seconds": options["soak"],
            "max_failures": options["max_failures"],
            "auto_rollback": not options["no_auto_rollback"],
            "pause_after_canary": options["pause_after_canary"],
            "window": _window(options["window"]),
            "busy_policy": "wait" if options["wait_busy"] else "refuse",
            "drain": options["drain"],
            "drain_timeout": options["drain_timeout"],
            "delete_emptydir_data": options["delete_emptydir_data"],
        }
        serializer = RolloutInputSerializer(data=data)
        if not serializer.is_valid():
            raise CommandError(_errors(serializer.errors))
        v = serializer.validated_data
        if action == "preview":
            preview = selectors.rollout_preview(
                cluster=v["cluster"], selector=v["selector"], change=v["change"], strategy=v["strategy"]
            )
            self._print_preview(preview)
            return
        try:
            rollout = transitions.rollout_submit(actor=ACTOR, data=v, start=options["start"])
            if options["start"]:
                rollout_kick(rollout.pk)
        except RolloutError as exc:
            raise CommandError(_errors(exc.errors)) from None
        self.stdout.write(f"rollout {rollout.pk} {rollout.status}: {rollout.name}")
        if options["follow"]:
            self._follow(rollout)

    def _print_preview(self, preview):
        out = self.stdout
        out.write(
            f"{len(preview['targets'])} nodes to change in {len(preview['waves'])} waves; "
            f"{len(preview['skipped'])} skipped; predicted {preview['predicted_seconds']:.0f}s "
            f"({preview['seconds_per_node']:.1f}s per node)"
        )
        for index, wave in enumerate(preview["waves"]):
            out.write(f"  wave {index}: {', '.join(wave)}")
        for target in preview["targets"]:
            changes = ", ".join(f"{k}: {v['from']} -> {v['to']}" for k, v in target["flag_changes"].items())
            out.write(f"  change {target['node']}: {changes or 'no flag change'}")
        for skipped in preview["skipped"]:
            out.write(f"  skip {skipped['node']}: {skipped['code']} ({skipped['reason']})")

    def _summary(self, rollout):
        counts = selectors.rollout_counts(rollout)
        return {
            "id": rollout.pk,
            "name": rollout.name,
            "status": rollout.status,
            "reason": rollout.reason,
            "current_wave": rollout.current_wave,
            "counts": counts,
        }

    def _follow(self, rollout):
        line = ProgressLine(getattr(self.stdout, "_out", self.stdout), f"rollout {rollout.pk}")
        while True:
            rollout.refresh_from_db()
            counts = selectors.rollout_counts(rollout)
            forward, back = progress_of(counts["forward"]), counts["rollback"]
            text = (
                f"{rollout.status}, wave {rollout.current_wave}, {forward.finished}/{forward.total} done, "
                f"{forward.failed} failed, {forward.in_flight} in flight"
            )
            steps = selectors.running_steps(rollout)
            if steps:
                text += " (" + ", ".join(f"{n} {STEP_WORDS.get(step, step)}" for step, n in steps.items()) + ")"
            if back:
                text += f"; rollback {back.get('succeeded', 0)}/{sum(back.values())}"
            line.show(text)
            if rollout.status in ROLLOUT_FINAL_STATES or rollout.status == RolloutStatus.AWAITING_APPROVAL:
                break
            time.sleep(0.5)
        line.close()
        self.stdout.write(f"rollout {rollout.pk} {rollout.status}: {rollout.reason}")
        if rollout.status not in (RolloutStatus.SUCCEEDED, RolloutStatus.AWAITING_APPROVAL):
            raise CommandError(f"rollout {rollout.pk} ended {rollout.status}")


def _errors(errors):
    parts = []
    for field_name, messages in errors.items():
        if isinstance(messages, dict):
            messages = [f"{k}: {v}" for k, v in messages.items()]
        parts.append(f"{field_name}: {' '.join(str(m) for m in messages)}")
    return "; ".join(parts)
