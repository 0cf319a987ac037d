from rest_framework.routers import DefaultRouter

from .views import RolloutViewSet

router = DefaultRouter(trailing_slash=True)
router.register("rollouts", RolloutViewSet, basename="rollout")

urlpatterns = router.urls
