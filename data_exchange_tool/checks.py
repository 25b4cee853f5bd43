"""System checks, registered in ``AppConfig.ready()``. Ids: ``data_exchange_tool.E00x`` / ``W00x``."""
from __future__ import annotations
