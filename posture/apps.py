from django.apps import AppConfig


class PostureConfig(AppConfig):
    name = "posture"
    verbose_name = "Posture: granted vs used, standing access, standing exceptions, evidence"
