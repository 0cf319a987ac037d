"""Rollout serializers: input validation into a Strategy, and the read shapes."""

from rest_framework import serializers

from core.api.serializers import EventSerializer
from core.fields import NameRelatedField
from gates.facts import normalize_gate_map, normalize_labels
from nodes.models import Cluster, Node

from ..models import ROLLOUT_INTENTS, ROLLOUT_KINDS, NodeOperation, Rollout
from ..planning import GATES, PID, Change
from ..selectors import rollout_timeline
from ..states import activity
from ..strategy import Strategy, StrategyError, Window, parse_batch
from ..transitions import rollout_actions


class SelectorSerializer(serializers.Serializer):
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    nodes = serializers.ListField(
        child=serializers.CharField(max_length=253), required=False, default=list, max_length=100_000
    )

    def validate_labels(self, value):
        try:
            return normalize_labels(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class WindowSerializer(serializers.Serializer):
    days = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="mon..sun; every day if left out"
    )
    start = serializers.CharField(help_text="HH:MM")
    end = serializers.CharField(help_text="HH:MM; before start spans midnight")
    tz = serializers.CharField(required=False, default="UTC")


class RolloutInputSerializer(serializers.Serializer):
    """A rollout to preview or create."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    cluster = NameRelatedField(queryset=Cluster.objects.all())
    kind = serializers.ChoiceField(
        choices=ROLLOUT_KINDS, default=PID, help_text="pid: change the PID-namespace mode; gates: change feature gates"
    )
    intent = serializers.ChoiceField(choices=ROLLOUT_INTENTS, required=False, help_text="For kind pid: the mode.")
    feature_gates = serializers.JSONField(
        required=False, help_text='For kind gates: {"Name": true|false|null}; null takes the gate out of the drop-in.'
    )
    selector = SelectorSerializer(required=False, default=dict)
    canary_count = serializers.IntegerField(min_value=0, max_value=10_000, default=1)
    batch_size = serializers.CharField(default="10", help_text="nodes per wave after the canary, or a percentage: 25%")
    max_unavailable = serializers.IntegerField(
        min_value=1, max_value=10_000, default=5, help_text="operations in flight at once"
    )
    soak_seconds = serializers.IntegerField(min_value=0, max_value=86_400, default=0)
    max_failures = serializers.IntegerField(min_value=0, max_value=100_000, default=0, help_text="failure budget")
    auto_rollback = serializers.BooleanField(default=True)
    pause_after_canary = serializers.BooleanField(default=False)
    window = WindowSerializer(required=False, allow_null=True, default=None)
    busy_policy = serializers.ChoiceField(
        choices=["refuse", "wait"],
        default="refuse",
        help_text="nodes busy in another rollout: refuse, or wait for them",
    )
    drain = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="cordon and drain each node around its change (default: when the cluster has a Kubernetes API)",
    )
    drain_timeout = serializers.IntegerField(
        min_value=10, max_value=86_400, default=600, help_text="seconds a node's drain may take"
    )
    delete_emptydir_data = serializers.BooleanField(default=False, help_text="evict pods with emptyDir volumes too")
    canary_analysis = serializers.BooleanField(
        default=False,
        help_text="decide on the canary's evidence (verified, Ready, restarts): go on when healthy, roll back "
        "(or stop, without auto_rollback) when not",
    )
    start = serializers.BooleanField(default=False, help_text="start at once")

    def validate(self, attrs):
        errors = {}
        if attrs["kind"] == PID:
            if not attrs.get("intent"):
                errors["intent"] = ["this field is required for a change of mode (kind pid)"]
            attrs["change"] = Change(PID, intent=attrs.get("intent", ""))
        else:
            try:
                gates = normalize_gate_map(attrs.get("feature_gates"), allow_null=True)
                if not gates:
                    raise ValueError("name at least one gate to change")
            except ValueError as exc:
                errors["feature_gates"] = [str(exc)]
                gates = {}
            attrs["change"] = Change(GATES, gates=gates)
        try:
            batch, percent = parse_batch(attrs["batch_size"])
        except StrategyError as exc:
            errors[exc.field] = [str(exc)]
            batch, percent = 10, False
        try:
            window = Window.parse(dict(attrs["window"])) if attrs.get("window") else None
        except StrategyError as exc:
            head, _, part = exc.field.partition(".")
            errors[head] = {part: [str(exc)]} if part else [str(exc)]
            window = None
        has_api = attrs["cluster"].has_kube_api
        if attrs.get("drain") is None:
            attrs["drain"] = has_api
        elif attrs["drain"] and not has_api:
            errors["drain"] = [f"cluster {attrs['cluster'].name} has no Kubernetes API to cordon and drain through"]
        names = list(dict.fromkeys((attrs.get("selector") or {}).get("nodes") or []))
        if names:
            known = set(Node.objects.filter(cluster=attrs["cluster"], name__in=names).values_list("name", flat=True))
            missing = [name for name in names if name not in known]
            if missing:
                shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                errors["selector"] = {"nodes": [f"no node named {shown} in cluster {attrs['cluster'].name}"]}
        if errors:
            raise serializers.ValidationError(errors)
        attrs["strategy"] = Strategy(
            canary_count=attrs["canary_count"],
            batch_size=batch,
            batch_percent=percent,
            max_unavailable=attrs["max_unavailable"],
            soak_seconds=attrs["soak_seconds"],
            max_failures=attrs["max_failures"],
            auto_rollback=attrs["auto_rollback"],
            pause_after_canary=attrs["pause_after_canary"],
            window=window,
        )
        attrs["selector"] = {k: v for k, v in dict(attrs["selector"]).items() if v}
        if not attrs["name"]:
            attrs["name"] = f"{attrs['cluster'].name} {attrs['change'].label()}"[:100]
        return attrs


class PreviewTargetSerializer(serializers.Serializer):
    node = serializers.CharField()
    node_id = serializers.IntegerField()
    wave = serializers.IntegerField()
    pid_namespace = serializers.CharField(allow_null=True)
    mechanism = serializers.CharField(allow_null=True)
    flag_changes = serializers.DictField()
    warnings = serializers.ListField(child=serializers.CharField())
    rollback = serializers.CharField()
    busy_in_rollout = serializers.IntegerField(allow_null=True)


class PreviewSkippedSerializer(serializers.Serializer):
    node = serializers.CharField()
    node_id = serializers.IntegerField()
    code = serializers.CharField()
    reason = serializers.CharField()


class PreviewSerializer(serializers.Serializer):
    cluster = serializers.CharField()
    plan = serializers.CharField()
    kind = serializers.CharField()
    intent = serializers.CharField()
    feature_gates = serializers.DictField(child=serializers.BooleanField(allow_null=True))
    skipped_by_code = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="The skipped nodes per reason, e.g. the nodes a gate problem blocks",
    )
    targets = PreviewTargetSerializer(many=True)
    skipped = PreviewSkippedSerializer(many=True)
    waves = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    seconds_per_node = serializers.FloatField()
    predicted_seconds = serializers.FloatField()


class OperationSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node.name", read_only=True)
    activity = serializers.SerializerMethodField(
        help_text="What a running operation is doing, in words: cordoning, draining, applying, verifying, uncordoning."
    )

    class Meta:
        model = NodeOperation
        fields = [
            "id",
            "node",
            "phase",
            "wave",
            "state",
            "step",
            "activity",
            "wake_at",
            "deadline",
            "cordoned",
            "drain_state",
            "expected_mode",
            "before_mode",
            "before_flags",
            "target_flags",
            "after_flags",
            "changed",
            "attempts",
            "skip_reason",
            "error_code",
            "error",
            "proof",
            "dispatched_at",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]
        read_only_fields = fields

    def get_activity(self, op) -> str:
        return activity(op.state, op.step, op.drain_state, op.verify_state)


class RolloutSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="rollout-detail")
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True)
    total = serializers.IntegerField(read_only=True, source="ops_total")
    done = serializers.IntegerField(read_only=True, source="ops_done")
    failed = serializers.IntegerField(read_only=True, source="ops_failed")
    progress = serializers.SerializerMethodField(help_text="Percent of forward operations finished.")
    actions = serializers.SerializerMethodField(
        help_text="The operator actions the rollout's status allows (POST rollouts/{id}/{action}/)."
    )

    class Meta:
        model = Rollout
        fields = [
            "id",
            "url",
            "name",
            "cluster",
            "kind",
            "intent",
            "gate_changes",
            "status",
            "reason",
            "total",
            "done",
            "failed",
            "progress",
            "actions",
            "current_wave",
            "canary_count",
            "batch_size",
            "batch_percent",
            "max_unavailable",
            "soak_seconds",
            "max_failures",
            "auto_rollback",
            "pause_after_canary",
            "window",
            "busy_policy",
            "drain",
            "drain_timeout",
            "delete_emptydir_data",
            "canary_analysis",
            "canary_evidence",
            "selector",
            "predicted_seconds",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_actions(self, rollout) -> list[str]:
        return rollout_actions(rollout)

    def get_progress(self, rollout) -> int:
        total = getattr(rollout, "ops_total", 0)
        return 100 * getattr(rollout, "ops_done", 0) // total if total else 100


class RolloutDetailSerializer(RolloutSerializer):
    timeline = serializers.SerializerMethodField(
        help_text="Per forward wave: started, ended, seconds, and what comes after it (approval, soak); and the "
        "maintenance window (open now, or when it next opens, in its time zone)."
    )
    counts = serializers.DictField(
        read_only=True,
        help_text="operations per phase and state (forward and rollback), and skipped_at_creation: nodes "
        "recorded but not targeted (already in the mode, blocked or unreachable when the rollout was created)",
    )
    waves = serializers.ListField(read_only=True)
    operations = OperationSerializer(many=True, read_only=True)
    events = EventSerializer(many=True, read_only=True)

    class Meta(RolloutSerializer.Meta):
        fields = [*RolloutSerializer.Meta.fields, "counts", "waves", "timeline", "operations", "events"]
        read_only_fields = fields

    def get_timeline(self, rollout) -> dict:
        timeline = rollout_timeline(rollout)
        return {
            "waves": [
                {
                    "wave": w["wave"],
                    "label": w["label"],
                    "size": w["size"],
                    "started": w["started"].isoformat() if w["started"] else None,
                    "ended": w["ended"].isoformat() if w["ended"] else None,
                    "seconds": w["seconds"],
                    "after": [{"kind": kind, "text": text} for kind, text in w["after"]],
                }
                for w in timeline["waves"]
            ],
            "window": timeline["window"],
        }
