"""The admin's permissions, per importer: the proxy's view/add/change/delete, plus confirm."""

from __future__ import annotations

from typing import Any

from django.apps import apps

from .. import registry

CONFIRM_PERMISSION = "data_exchange_tool.confirm_importjob"


def has_importer_perm(user: Any, importer: str, action: str) -> bool:
    """Whether ``user`` holds ``<app>.<action>_<proxy>`` for the importer labelled ``importer``."""
    if importer not in registry.all_importers():
        return False
    opts = apps.get_model(importer)._meta
    return bool(user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}"))


def can_confirm(user: Any, importer: str) -> bool:
    """Confirm, resume and cancel need the change permission and ``confirm_importjob``."""
    return has_importer_perm(user, importer, "change") and user.has_perm(CONFIRM_PERMISSION)


def viewable_importers(user: Any) -> list[str]:
    """Labels of the importers whose jobs ``user`` may see."""
    return [label for label in registry.all_importers() if has_importer_perm(user, label, "view")]
