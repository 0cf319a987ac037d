from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core: roles, audit log"
    default_auto_field = "django.db.models.BigAutoField"
