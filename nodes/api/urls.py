from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import ClusterViewSet, FleetSummaryView, NodeViewSet

router = DefaultRouter(trailing_slash=True)
router.register("clusters", ClusterViewSet, basename="cluster")
router.register("nodes", NodeViewSet, basename="node")

urlpatterns = [path("fleet/summary/", FleetSummaryView.as_view(), name="fleet-summary"), *router.urls]
