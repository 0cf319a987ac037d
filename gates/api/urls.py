from django.urls import path

from .views import EvaluateView

urlpatterns = [path("decisions/evaluate/", EvaluateView.as_view(), name="decision-evaluate")]
