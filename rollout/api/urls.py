from rest_framework.routers import DefaultRouter

from .views import EventViewSet, RolloutViewSet

router = DefaultRouter(trailing_slash=True)
router.register("rollouts", RolloutViewSet, basename="rollout")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
