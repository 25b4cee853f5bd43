"""The registry of importers: proxy models of ``ImportJob`` with importer Meta options.

Importers register themselves when their class is created (``class_prepared``). Models built
by the migration framework's historical app registry are ignored. This module sits below
:mod:`.models` (which reads it for ``ImportJob.importer_options``) and never imports it; the
app config imports it first, so the Meta option names and the receiver exist before any
app's models are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.apps import apps as global_apps
from django.db.models.signals import class_prepared
from django.dispatch import receiver

from .exceptions import ImproperlyConfiguredImporter
from .options import ImporterOptions, importer_options

if TYPE_CHECKING:
    from django.db.models import Model

_importers: dict[str, tuple[type[Model], ImporterOptions]] = {}


@receiver(class_prepared)
def _register_importer(sender: type[Model], **kwargs: object) -> None:
    meta = sender._meta
    if meta.apps is not global_apps:
        return  # a historical model built by migrations
    if (
        getattr(meta, "target_model", None) is None
        and getattr(meta, "serializer_class", None) is None
    ):
        return
    if not _is_import_job(sender):
        raise ImproperlyConfiguredImporter(
            f"{meta.label}: importer Meta options are only valid on a proxy of ImportJob."
        )
    options = importer_options(sender)
    if options is not None:
        _importers[options.label] = (sender, options)


def _is_import_job(model: type[Model]) -> bool:
    """True for ``ImportJob`` and its subclasses, looked up without importing the models."""
    try:
        job_model = global_apps.get_registered_model("data_exchange_tool", "ImportJob")
    except LookupError:
        return False  # ImportJob is not defined yet, so ``model`` cannot be one
    return issubclass(model, job_model)


def all_importers() -> dict[str, ImporterOptions]:
    """Every registered importer, keyed by its proxy label ("app_label.ModelName")."""
    return {label: opts for label, (_model, opts) in sorted(_importers.items())}


def get_importer(label: str) -> ImporterOptions:
    """The options of the importer ``label``; raises if none is registered under it."""
    try:
        return _importers[label][1]
    except KeyError:
        raise ImproperlyConfiguredImporter(f"No importer is registered as {label!r}.") from None
