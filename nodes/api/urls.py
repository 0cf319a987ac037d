from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import AuditViewSet, ClusterViewSet, CredentialViewSet, FleetSummaryView, NodeViewSet, UpgradeCheckView

router = DefaultRouter(trailing_slash=True)
router.register("clusters", ClusterViewSet, basename="cluster")
router.register("nodes", NodeViewSet, basename="node")
router.register("audits", AuditViewSet, basename="audit")
router.register("credentials", CredentialViewSet, basename="credential")

urlpatterns = [
    path("fleet/summary/", FleetSummaryView.as_view(), name="fleet-summary"),
    path("gates/upgrade-check/", UpgradeCheckView.as_view(), name="gate-upgrade-check"),
    *router.urls,
]
