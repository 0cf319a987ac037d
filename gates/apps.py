from django.apps import AppConfig


class GatesConfig(AppConfig):
    name = "gates"
    verbose_name = "Decision engine"
    default_auto_field = "django.db.models.BigAutoField"
