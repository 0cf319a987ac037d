from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import metrics as core_metrics
from core import views as core_views
from core.auth import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm
from nodes import views as node_views
from rollout import views

admin.site.login_form = ThrottledAdminAuthenticationForm

api_v1 = [
    path("", include("gates.api.urls")),
    path("", include("nodes.api.urls")),
    path("", include("rollout.api.urls")),
    path("", include("core.api.urls")),
]

urlpatterns = [
    path("", node_views.OverviewPage.as_view(), name="overview"),
    path("nodes/", node_views.NodeListPage.as_view(), name="node-list-page"),
    path("nodes/<int:pk>/", node_views.NodeDetailPage.as_view(), name="node-page"),
    path("nodes/<int:pk>/adopt/", node_views.node_adopt, name="node-adopt"),
    path("what-if/", node_views.WhatIfPage.as_view(), name="whatif-page"),
    path("gates/", node_views.GateCatalogPage.as_view(), name="gate-catalog-page"),
    path("gates/upgrade-check/", node_views.UpgradeCheckPage.as_view(), name="upgrade-check-page"),
    path("clusters/<str:name>/gates/", node_views.ClusterGatesPage.as_view(), name="cluster-gates-page"),
    path("clusters/<str:name>/history/", node_views.ClusterHistoryPage.as_view(), name="cluster-history-page"),
    path("audits/", node_views.AuditListPage.as_view(), name="audit-list-page"),
    path("audits/<int:pk>/", node_views.AuditDetailPage.as_view(), name="audit-page"),
    path("events/", core_views.EventListPage.as_view(), name="event-list-page"),
    path("rollouts/", views.RolloutListPage.as_view(), name="rollout-list-page"),
    path("rollouts/new/", views.RolloutCreatePage.as_view(), name="rollout-new-page"),
    path("rollouts/preview/", views.rollout_preview, name="rollout-preview-page"),
    path("rollouts/<int:pk>/", views.RolloutDetailPage.as_view(), name="rollout-page"),
    path("rollouts/<int:pk>/<str:action>/", views.rollout_act, name="rollout-act"),
    path("login/", auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", core_views.healthz, name="healthz"),
    path("metrics", core_metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI injects one <style> element; its script comes from a file (the split view).
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="schema")),
        name="api-docs",
    ),
]

handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
