from django.urls import path

from .views import EvaluateView, GateCatalogView, GateDetailView, GateValidateView

urlpatterns = [
    path("decisions/evaluate/", EvaluateView.as_view(), name="decision-evaluate"),
    path("gates/validate/", GateValidateView.as_view(), name="gate-validate"),
    path("gates/catalog/", GateCatalogView.as_view(), name="gate-catalog"),
    path("gates/catalog/<str:name>/", GateDetailView.as_view(), name="gate-detail"),
]
