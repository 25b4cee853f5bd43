"""Forms of the admin: the upload form that creates an import job."""

from __future__ import annotations

import codecs
from collections import Counter
from typing import Any

from django import forms
from django.apps import apps
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from . import registry

DELIMITER_CHOICES = (
    ("", _("Detect")),
    (",", _("Comma (,)")),
    (";", _("Semicolon (;)")),
    ("\t", _("Tab")),
    ("|", _("Pipe (|)")),
)


def importer_choices() -> list[tuple[str, str]]:
    """``(label, display)`` of every registered importer.

    The display is the target model's verbose name, followed by the importer's own verbose
    name when several importers share that target (never its internal label).
    """
    importers = registry.all_importers()
    targets = {label: opts.target_model for label, opts in importers.items()}
    shared = Counter(targets.values())
    choices = []
    for label, model in targets.items():
        name = capfirst(model._meta.verbose_name)
        if shared[model] > 1:
            name = f"{name} ({apps.get_model(label)._meta.verbose_name})"
        choices.append((label, str(name)))
    return choices


class ImportJobUploadForm(forms.Form):
    """Upload a file for an importer, with optional reading options.

    With ``importer`` given, the form has no target choice and uploads for that importer.
    """

    importer = forms.ChoiceField(label=_("Target"), help_text=_("Where the rows are imported."))
    file = forms.FileField(
        label=_("File"),
        help_text=_(
            "A CSV or TSV file (may be gzip-compressed) or an Excel .xlsx workbook. "
            "Its first row is the header."
        ),
    )
    encoding = forms.CharField(
        label=_("Encoding"),
        max_length=40,
        required=False,
        help_text=_("Text encoding of a CSV file, such as cp1252 or latin-1. Blank: UTF-8."),
    )
    delimiter = forms.ChoiceField(
        label=_("Delimiter"),
        choices=DELIMITER_CHOICES,
        required=False,
        help_text=_("Column separator of a CSV file. Detect: read from the header line."),
    )
    sheet_name = forms.CharField(
        label=_("Sheet"),
        max_length=100,
        required=False,
        help_text=_("Name of the sheet of an Excel file. Blank: the first sheet."),
    )

    def __init__(
        self, *args: Any, importer: str | None = None, file_refusal: str = "", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fixed_importer = importer
        self.file_refusal = file_refusal  # why the upload was stopped while it streamed
        if file_refusal:
            self.fields["file"].required = False
        if importer is None:
            self.fields["importer"].choices = [("", "---------"), *importer_choices()]
        else:
            del self.fields["importer"]

    def clean_file(self) -> Any:
        if self.file_refusal:
            raise forms.ValidationError(self.file_refusal, code="too_big")
        return self.cleaned_data["file"]

    def clean_encoding(self) -> str:
        encoding = self.cleaned_data["encoding"].strip()
        if encoding:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise forms.ValidationError(
                    _("“%(encoding)s” is not a known text encoding."),
                    code="unknown_encoding",
                    params={"encoding": encoding},
                ) from None
        return encoding

    @property
    def importer_label(self) -> str:
        """The label of the importer the file is uploaded for (after validation)."""
        return self.fixed_importer or self.cleaned_data["importer"]

    def job_options(self) -> dict[str, str]:
        """The reading options, as keyword arguments of ``services.create_job``."""
        return {
            "encoding": self.cleaned_data["encoding"],
            "delimiter": self.cleaned_data["delimiter"],
            "sheet_name": self.cleaned_data["sheet_name"].strip(),
        }
