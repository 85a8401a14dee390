from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "People, roles and API tokens"

    def ready(self) -> None:
        from accounts import sessions  # noqa: F401  (connects the sign-in receiver)
