"""The ``Meta`` options of an importer (a proxy model of ``ImportJob``).

Importing this module registers the option names with Django, so that ::

    class StockRecordImportJob(ImportJob):
        class Meta:
            proxy = True
            target_model = StockRecord
            serializer_class = "myapp.serializers.ImportStockRecordSerializer"

is accepted. :func:`importer_options` validates the shape of the options when the class is
created, so a misconfigured importer fails at start-up, not in a worker. References given as
strings (a dotted serializer path, an ``"app_label.Model"`` target) are resolved lazily; the
system checks resolve them at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db.models import options as django_options
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from .exceptions import ImproperlyConfiguredImporter
from .readers import FORMATS

if TYPE_CHECKING:
    from django.db.models import Model
    from rest_framework.serializers import BaseSerializer

IMPORTER_META_OPTIONS = (
    "target_model",
    "serializer_class",
    "unique_fields",
    "chunk_size",
    "accepted_formats",
    "header_aliases",
    "revalidate_on_import",
    "unknown_columns",
)
UNKNOWN_COLUMN_POLICIES = ("ignore", "error")

if not set(IMPORTER_META_OPTIONS) <= set(django_options.DEFAULT_NAMES):
    django_options.DEFAULT_NAMES = (*django_options.DEFAULT_NAMES, *IMPORTER_META_OPTIONS)


@dataclass(frozen=True)
class ImporterOptions:
    """The validated options of one importer proxy model."""

    label: str  # "app_label.ModelName" of the proxy
    target_model_ref: Any  # a model class or "app_label.Model"
    serializer_ref: Any  # a serializer class or a dotted path
    unique_fields: tuple[str, ...] = ()
    chunk_size: int | None = None
    accepted_formats: tuple[str, ...] = tuple(FORMATS)
    header_aliases: dict[str, str] = field(default_factory=dict)
    # "ignore": columns that match no writable field are skipped, named in a warning on the job;
    # "error": they fail the preview.
    unknown_columns: str = "ignore"
    # True: the import runs the whole serializer again on every row, instead of trusting the
    # values the preview validated and checking only related rows and unique values again.
    revalidate_on_import: bool = False

    @cached_property
    def target_model(self) -> type[Model]:
        from django.apps import apps

        ref = self.target_model_ref
        if isinstance(ref, str):
            try:
                return apps.get_model(ref)
            except (LookupError, ValueError) as exc:
                raise ImproperlyConfiguredImporter(
                    f"{self.label}: Meta.target_model {ref!r} is not an installed model."
                ) from exc
        return ref

    @cached_property
    def serializer_class(self) -> type[BaseSerializer]:
        ref = self.serializer_ref
        if isinstance(ref, str):
            try:
                ref = import_string(ref)
            except ImportError as exc:
                raise ImproperlyConfiguredImporter(
                    f"{self.label}: Meta.serializer_class {self.serializer_ref!r} "
                    f"cannot be imported: {exc}"
                ) from exc
        from rest_framework.serializers import BaseSerializer

        if not (isinstance(ref, type) and issubclass(ref, BaseSerializer)):
            raise ImproperlyConfiguredImporter(
                f"{self.label}: Meta.serializer_class must be a DRF serializer class, got {ref!r}."
            )
        return ref

    def format_refusal(self, file_format: str, name: str) -> str:
        """Why a file of ``file_format`` named ``name`` is refused; empty if it is accepted."""
        if file_format in self.accepted_formats:
            return ""
        kinds = {"csv": _("a CSV file"), "tsv": _("a TSV file"), "xlsx": _("an XLSX workbook")}
        return _("This importer accepts only %(accepted)s files; “%(name)s” is %(kind)s.") % {
            "accepted": _(" or ").join(FORMATS[f] for f in self.accepted_formats),
            "name": name,
            "kind": kinds.get(file_format, file_format),
        }

    def normalised_aliases(self) -> dict[str, str]:
        """Header aliases keyed by their normalised spelling."""
        return {normalise_header(k): v for k, v in self.header_aliases.items()}


def normalise_header(name: str) -> str:
    """The form in which headers are compared: stripped and case-folded."""
    return " ".join(str(name).split()).casefold()


def importer_options(model: type[Model]) -> ImporterOptions | None:
    """Build and check the options of an importer proxy; ``None`` for a non-importer."""
    meta = model._meta
    target = getattr(meta, "target_model", None)
    serializer = getattr(meta, "serializer_class", None)
    if target is None and serializer is None:
        return None
    label = meta.label

    def fail(message: str) -> None:
        raise ImproperlyConfiguredImporter(f"{label}: {message}")

    if not meta.proxy:
        fail("an importer must be a proxy model of ImportJob (Meta.proxy = True).")
    if target is None or serializer is None:
        fail("Meta.target_model and Meta.serializer_class must both be set.")
    if not (isinstance(target, str) or hasattr(target, "_meta")):
        fail(f"Meta.target_model must be a model class or 'app_label.Model', got {target!r}.")
    if not isinstance(serializer, str | type):
        fail(f"Meta.serializer_class must be a class or a dotted path, got {serializer!r}.")
    unique_fields = getattr(meta, "unique_fields", None) or ()
    if isinstance(unique_fields, str) or not all(isinstance(f, str) for f in unique_fields):
        fail("Meta.unique_fields must be a list or tuple of field names.")
    chunk_size = getattr(meta, "chunk_size", None)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        fail(f"Meta.chunk_size must be a positive integer, got {chunk_size!r}.")
    formats = tuple(getattr(meta, "accepted_formats", None) or FORMATS)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        fail(f"Meta.accepted_formats has unsupported formats {unknown}; use {tuple(FORMATS)}.")
    aliases = getattr(meta, "header_aliases", None) or {}
    if not isinstance(aliases, dict):
        fail("Meta.header_aliases must be a dict of {file header: serializer field}.")
    unknown_columns = getattr(meta, "unknown_columns", None) or "ignore"
    if unknown_columns not in UNKNOWN_COLUMN_POLICIES:
        fail(f"Meta.unknown_columns must be 'ignore' or 'error', got {unknown_columns!r}.")
    revalidate = getattr(meta, "revalidate_on_import", False)
    if not isinstance(revalidate, bool):
        fail(f"Meta.revalidate_on_import must be True or False, got {revalidate!r}.")
    return ImporterOptions(
        label=label,
        target_model_ref=target,
        serializer_ref=serializer,
        unique_fields=tuple(unique_fields),
        chunk_size=chunk_size,
        accepted_formats=formats,
        header_aliases=dict(aliases),
        unknown_columns=unknown_columns,
        revalidate_on_import=revalidate,
    )
