"""A database router that writes the test app's models to another database than the ledger."""

from __future__ import annotations

from typing import Any


class TestappElsewhere:
    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return "elsewhere" if model._meta.app_label == "testapp" else None
