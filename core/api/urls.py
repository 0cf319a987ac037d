from rest_framework.routers import DefaultRouter

from .views import EventViewSet, WebhookViewSet

router = DefaultRouter(trailing_slash=True)
router.register("events", EventViewSet, basename="event")
router.register("webhooks", WebhookViewSet, basename="webhook")

urlpatterns = router.urls
