from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

# Before any app's models are built: the importer Meta option names (``target_model``, …) and
# the receiver that registers each importer proxy as its class is created.
from . import registry  # noqa: F401


class DataExchangeToolConfig(AppConfig):
    name = "data_exchange_tool"
    verbose_name = _("Data exchange")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
