"""Evaluate a decision from facts, and the Decision's documented shape."""

from rest_framework import serializers

from gates.facts import FactsError, parse_facts
from gates.policy import INTENTS, MECHANISMS, PID_NAMESPACES, PLAN_PROPOSAL, PLANS, ROLLBACK_METHODS, RUNTIMES


class FindingSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class FlagChangeSerializer(serializers.Serializer):
    to = serializers.CharField(allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.CharField(allow_null=True)
        return fields


class RollbackSerializer(serializers.Serializer):
    possible = serializers.BooleanField(help_text="Whether the node can return to isolated PID namespaces at all.")
    automatic = serializers.BooleanField(help_text="Whether this service can do it by itself (flag change or nothing).")
    method = serializers.ChoiceField(choices=ROLLBACK_METHODS)
    kubelet_flags = serializers.DictField(child=serializers.CharField(), allow_null=True)
    detail = serializers.CharField()


class DecisionSerializer(serializers.Serializer):
    """The engine's answer (read-only; documents the response)."""

    plan = serializers.ChoiceField(choices=PLANS)
    intent = serializers.ChoiceField(choices=INTENTS)
    pid_namespace = serializers.ChoiceField(choices=PID_NAMESPACES)
    mechanism = serializers.ChoiceField(choices=MECHANISMS)
    kubelet_flags = serializers.DictField(child=serializers.CharField(), help_text="The flags that give this result.")
    changes_required = serializers.BooleanField()
    flag_changes = serializers.DictField(child=FlagChangeSerializer())
    reasons = FindingSerializer(many=True)
    warnings = FindingSerializer(many=True)
    blockers = FindingSerializer(many=True)
    rollback = RollbackSerializer()


class EvaluateSerializer(serializers.Serializer):
    """Input facts of a node plus the plan and intent to decide under."""

    kubelet_version = serializers.CharField(max_length=128, help_text="e.g. v1.6.4, v1.7.0-beta.2, v1.6.2-gke.0")
    container_runtime = serializers.ChoiceField(choices=RUNTIMES, default="docker")
    runtime_version = serializers.CharField(
        max_length=128, required=False, allow_blank=True, default="", help_text="Docker version; required for docker."
    )
    kubelet_flags = serializers.JSONField(required=False, default=dict, help_text='e.g. {"enable-cri": "false"}')
    pause_image = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    plan = serializers.ChoiceField(choices=PLANS, default=PLAN_PROPOSAL)
    intent = serializers.ChoiceField(choices=INTENTS, default="default")

    def validate(self, attrs):
        try:
            attrs["facts"] = parse_facts(attrs)
        except FactsError as exc:
            raise serializers.ValidationError(exc.errors) from None
        return attrs


# --- feature gates ----------------------------------------------------------------------------------


class GateValidateSerializer(serializers.Serializer):
    kubelet_version = serializers.CharField(
        max_length=128, help_text="The kubelet's version; a pre-release belongs to its line (v1.19.0-beta.2 is 1.19)."
    )
    feature_gates = serializers.JSONField(help_text='{"Name": true|false|"true"|"false"}')


class GateFindingSerializer(serializers.Serializer):
    gate = serializers.CharField(help_text="The gate (empty for a finding about the catalog).")
    code = serializers.CharField()
    message = serializers.CharField()


class GateReportSerializer(serializers.Serializer):
    name = serializers.CharField()
    value = serializers.BooleanField()
    known = serializers.BooleanField(help_text="Some Kubernetes release had this gate.")
    recognised = serializers.BooleanField(help_text="A kubelet of this minor recognises it.")
    stage = serializers.CharField(allow_null=True)
    default = serializers.BooleanField(allow_null=True)
    locked = serializers.BooleanField()
    first_release = serializers.CharField(allow_null=True)
    removed_in = serializers.CharField(allow_null=True)


class GateCheckSerializer(serializers.Serializer):
    kubelet_minor = serializers.CharField()
    judged_as = serializers.CharField(help_text="The release judged: the kubelet's, or the catalog's newest.")
    valid = serializers.BooleanField(help_text="The kubelet would start with these gates.")
    problems = GateFindingSerializer(many=True, help_text="Why the kubelet would not start.")
    warnings = GateFindingSerializer(many=True)
    gates = GateReportSerializer(many=True)


class StageSerializer(serializers.Serializer):
    stage = serializers.CharField()
    default = serializers.BooleanField(allow_null=True)
    start = serializers.CharField()
    end = serializers.CharField(allow_null=True)


class CatalogGateSerializer(serializers.Serializer):
    name = serializers.CharField()
    first_release = serializers.CharField()
    removed_in = serializers.CharField(allow_null=True)
    locked_from = serializers.CharField(allow_null=True)
    stages = StageSerializer(many=True)
    at = serializers.DictField(allow_null=True, help_text="stage, default, locked and recognised at ?at=")
