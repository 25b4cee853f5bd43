"""The admin of import jobs: upload a file, read its preview, confirm the import.

:class:`ImportJobAdmin` is registered for :class:`~data_exchange_tool.models.ImportJob` and
handles every importer. :class:`GenericImporterModelAdmin` is the admin of one importer proxy::

    @admin.register(StockRecordImportJob)
    class StockRecordNewImporterAdmin(GenericImporterModelAdmin):
        ...

Jobs are never edited: the change page is the read-only preview, and jobs move only through
:mod:`data_exchange_tool.services`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, quote, unquote
from django.core import checks
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Model, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.timezone import localtime
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import registry, reports, services
from .conf import app_settings
from .exceptions import FileRejected, ImproperlyConfiguredImporter, TransitionRefused
from .forms import DELIMITER_CHOICES, ImportJobUploadForm, importer_choices
from .models import ImportChunk, ImportJob, JobEvent, RowError
from .services.error_summary import error_groups, invalid_rows_by_column
from .services.pickup import pickup_warning
from .services.progress import Progress, job_progress
from .states import RUNNING_STATES, JobState
from .uploads import limit_uploads, refused_upload

TEMPLATES = "admin/data_exchange_tool/importjob/"
CONFIRM_PERMISSION = "data_exchange_tool.confirm_importjob"
REFRESH_SECONDS = 5
POLL_MILLISECONDS = 1500
PHASE_TIMES = (
    ("preview_started_at", "preview_finished_at"),
    ("import_started_at", "import_finished_at"),
)
ERRORS_PAGE_VAR = "errors_page"
STATE_TONES = {
    JobState.CREATED: "running",
    JobState.PREVIEW_SUCCEEDED: "ready",
    JobState.PREVIEW_FAILED: "failed",
    JobState.IMPORT_IN_PROGRESS: "running",
    JobState.IMPORT_SUCCEEDED: "succeeded",
    JobState.IMPORT_FAILED: "failed",
}
READ_ONLY_CONTEXT = {
    "show_save": False,
    "show_save_and_continue": False,
    "show_save_and_add_another": False,
}


__all__ = ["GenericImporterModelAdmin", "ImportJobAdmin"]


def target_model(job: ImportJob) -> type[Model] | None:
    """The model a job imports into (``None`` if it is no longer installed)."""
    try:
        return registry.get_importer(job.importer).target_model
    except ImproperlyConfiguredImporter:
        return job.content_type.model_class()


def target_name(job: ImportJob, plural: bool = False) -> str:
    """The verbose name of the model a job imports into."""
    model = target_model(job)
    if model is None:
        return str(job.content_type)
    return str(model._meta.verbose_name_plural if plural else capfirst(model._meta.verbose_name))


class ImporterListFilter(admin.SimpleListFilter):
    """Filter jobs by the importer they were uploaded for."""

    title = _("importer")
    parameter_name = "importer"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return importer_choices()

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(importer=self.value())
        return queryset


class MyJobsListFilter(admin.SimpleListFilter):
    """Only the jobs the current user uploaded."""

    title = _("uploaded by")
    parameter_name = "mine"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("1", _("My jobs"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "1":
            return queryset.filter(created_by=request.user)
        return queryset


def describe_progress(progress: Progress) -> str:
    """``1,200 of 5,000 rows · 3 of 10 chunks · 850 rows/s · about 5 s left``."""
    if progress.rows_total is None:
        parts = [gettext("%(rows)s rows checked; reading the file…") % {
            "rows": f"{progress.rows_done:,}"
        }]
    else:
        parts = [
            gettext("%(done)s of %(total)s rows")
            % {"done": f"{progress.rows_done:,}", "total": f"{progress.rows_total:,}"},
            gettext("%(done)s of %(total)s chunks")
            % {"done": progress.chunks_done, "total": progress.chunks_total},
        ]
    if progress.rows_per_second:
        parts.append(gettext("%s rows/s") % f"{progress.rows_per_second:,.0f}")
    if progress.seconds_left is not None:
        parts.append(gettext("about %s left") % _duration(progress.seconds_left))
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return gettext("%d s") % seconds
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return gettext("%(m)d min %(s)d s") % {"m": minutes, "s": seconds}
    hours, minutes = divmod(minutes, 60)
    return gettext("%(h)d h %(m)d min") % {"h": hours, "m": minutes}


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Upload files for any registered importer, preview them and confirm their import."""

    add_form_template = TEMPLATES + "add_form.html"
    change_form_template = TEMPLATES + "change_form.html"
    change_list_template = TEMPLATES + "change_list.html"
    upload_form_class = ImportJobUploadForm

    list_display = (
        "original_name",
        "target",
        "state_badge",
        "total_rows",
        "valid_rows",
        "invalid_rows",
        "imported_rows",
        "progress_display",
        "list_size",
        "created_by",
        "created_at",
    )
    list_display_links = ("original_name",)
    list_filter = ("state", ImporterListFilter, MyJobsListFilter, "created_by")
    list_select_related = ("content_type", "created_by")
    search_fields = ("original_name",)
    search_help_text = _("Search by file name.")
    ordering = ("-created_at",)
    actions = None

    fieldsets = (
        (
            _("Status"),
            {
                "fields": (
                    "state_badge",
                    "failure_kind",
                    "importer_display",
                    "created_by",
                    "confirmed_by",
                )
            },
        ),
        (
            _("Rows"),
            {
                "fields": (
                    "total_rows",
                    "valid_rows",
                    "invalid_rows",
                    "imported_rows",
                    "chunk_count",
                )
            },
        ),
        (
            _("File"),
            {
                "fields": (
                    "original_name",
                    "size_display",
                    "file_format",
                    "encoding_display",
                    "delimiter_display",
                    "sheet_name",
                )
            },
        ),
        (
            _("Times"),
            {
                "fields": (
                    "created_at",
                    "preview_started_at",
                    "preview_finished_at",
                    "import_started_at",
                    "import_finished_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = flatten_fieldsets(fieldsets)

    def get_fieldsets(self, request: HttpRequest, obj: ImportJob | None = None) -> Any:
        """A phase's times appear only once they are known (no "started: -")."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        unknown = {
            name
            for pair in PHASE_TIMES
            for name in pair
            if getattr(obj, name) is None
        }
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in unknown]})
            for title, options in fieldsets
        ]

    # -- list columns and read-only fields ---------------------------------------------------

    @admin.display(description=_("target"), ordering="content_type")
    def target(self, obj: ImportJob) -> str:
        return target_name(obj)

    @admin.display(description=_("state"), ordering="state")
    def state_badge(self, obj: ImportJob) -> str:
        return format_html(
            '<span class="dxt-state dxt-state--{}">{}</span>',
            STATE_TONES.get(obj.state, "running"),
            obj.get_state_display(),
        )

    @admin.display(description=_("target"))
    def importer_display(self, obj: ImportJob) -> str:
        return dict(importer_choices()).get(obj.importer) or f"{target_name(obj)} ({obj.importer})"

    @admin.display(description=_("progress"))
    def progress_display(self, obj: ImportJob) -> str:
        if obj.state not in RUNNING_STATES:
            return ""
        progress = job_progress(obj)
        return format_html(
            '<progress max="100" value="{}" aria-label="{}"></progress> <span>{}</span>',
            f"{progress.percent or 0:.1f}",
            gettext("Progress"),
            describe_progress(progress),
        )

    @admin.display(description=_("size"), ordering="file_size")
    def list_size(self, obj: ImportJob) -> str:
        return filesizeformat(obj.file_size)

    @admin.display(description=_("size"))
    def size_display(self, obj: ImportJob) -> str:
        size = filesizeformat(obj.file_size)
        return size if obj.file_size < 1024 else f"{size} ({obj.file_size:,} bytes)"

    @admin.display(description=_("encoding"))
    def encoding_display(self, obj: ImportJob) -> str:
        return obj.encoding or gettext("UTF-8 (default)")

    @admin.display(description=_("delimiter"))
    def delimiter_display(self, obj: ImportJob) -> str:
        names = dict(DELIMITER_CHOICES)
        if obj.delimiter:
            return gettext("%s, as chosen at upload") % names.get(obj.delimiter, obj.delimiter)
        if obj.detected_delimiter:
            return gettext("%s, detected") % names.get(
                obj.detected_delimiter, obj.detected_delimiter
            )
        return self.get_empty_value_display()

    # -- permissions -------------------------------------------------------------------------

    def has_confirm_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        """Confirming or resuming needs the change permission and ``confirm_importjob``."""
        return self.has_change_permission(request, obj) and request.user.has_perm(
            CONFIRM_PERMISSION
        )

    def has_cancel_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        """Cancelling a running preview or import needs what confirming needs."""
        return self.has_confirm_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ImportJob | None = None) -> bool:
        if obj is not None and not services.can_delete(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: HttpRequest, obj: ImportJob) -> None:
        """Delete through the services (the state is checked under the job's row lock, and the
        stored files go too); a job that started meanwhile is kept, with the reason shown."""
        try:
            services.delete_job(obj.pk)
        except TransitionRefused as exc:
            request._dxt_delete_refused = obj  # type: ignore[attr-defined]
            self.message_user(request, str(exc), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
        for job in queryset:
            try:
                services.delete_job(job.pk)
            except TransitionRefused as exc:
                self.message_user(request, f"{job}: {exc}", messages.ERROR)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        refused = getattr(request, "_dxt_delete_refused", None)
        if refused is not None:
            return HttpResponseRedirect(self.job_url(refused))
        return super().response_delete(request, obj_display, obj_id)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        """Count a job's chunks, row errors and events instead of listing each of them."""
        jobs = list(objs)
        counts = {self.opts.verbose_name_plural: len(jobs)}
        for model in (ImportChunk, RowError, JobEvent):
            count = model.objects.filter(job__in=jobs).count()
            if count:
                counts[model._meta.verbose_name_plural] = count
        return [str(job) for job in jobs], counts, set(), []

    # -- URLs --------------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/confirm/",
                wrap(self.confirm_view),
                name="{}_{}_confirm".format(*info),
            ),
            path(
                "<path:object_id>/resume/",
                wrap(self.resume_view),
                name="{}_{}_resume".format(*info),
            ),
            path(
                "<path:object_id>/cancel/",
                wrap(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
            path(
                "<path:object_id>/status/",
                wrap(self.status_view),
                name="{}_{}_status".format(*info),
            ),
            path(
                "<path:object_id>/errors.<str:fmt>",
                wrap(self.error_report_view),
                name="{}_{}_errors".format(*info),
            ),
            path("add/", wrap(self.limited_add_view), name="{}_{}_add".format(*info)),
            *(p for p in super().get_urls() if p.name != "{}_{}_add".format(*info)),
        ]

    def job_url(self, job: ImportJob, action: str = "change") -> str:
        """The URL of ``action`` (change, confirm, resume) for ``job`` in this admin."""
        name = f"admin:{self.opts.app_label}_{self.opts.model_name}_{action}"
        return reverse(name, args=(quote(job.pk),), current_app=self.admin_site.name)

    # -- upload ------------------------------------------------------------------------------

    @csrf_exempt
    def limited_add_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The add view behind an upload size limit that holds while the body streams.

        Upload handlers must be set before the body is read, and the CSRF check reads it, so
        this entry is exempt from the middleware's check and makes the same check itself after
        setting the handler (the pattern Django documents for per-view upload handlers).
        """
        limit_uploads(request, app_settings.MAX_FILE_BYTES)
        return csrf_protect(self.add_view)(request, *args, **kwargs)

    def upload_form_kwargs(self, request: HttpRequest) -> dict[str, Any]:
        """Keyword arguments of the upload form: the request's data on POST."""
        if request.method != "POST":
            return {}
        return {
            "data": request.POST,
            "files": request.FILES,
            "file_refusal": refused_upload(request),
        }

    def get_upload_form(self, request: HttpRequest) -> ImportJobUploadForm:
        """The upload form, bound to the request's data on POST."""
        return self.upload_form_class(**self.upload_form_kwargs(request))

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Upload a file: create the job through the services and show its preview page."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = self.get_upload_form(request)
        if request.method == "POST" and form.is_valid():
            job = self.create_job(request, form)
            if job is not None:
                return self.response_upload(request, job)
        return self.render_upload_form(request, form, form_url, extra_context)

    def create_job(self, request: HttpRequest, form: ImportJobUploadForm) -> ImportJob | None:
        """Store the file and queue its preview; ``None`` (with a form error) if refused."""
        upload = form.cleaned_data["file"]
        try:
            job = services.create_job(
                form.importer_label,
                upload,
                name=upload.name,
                user=request.user,
                **form.job_options(),
            )
        except FileRejected as exc:
            form.add_error("file", str(exc))
            return None
        return self.model._default_manager.get(pk=job.pk)

    def response_upload(self, request: HttpRequest, job: ImportJob) -> HttpResponse:
        self.log_addition(request, job, [{"added": {}}])
        self.message_user(
            request,
            gettext(
                "“%s” was uploaded. Its rows are checked now; nothing is imported until you "
                "confirm."
            )
            % job.original_name,
            messages.SUCCESS,
        )
        return HttpResponseRedirect(self.job_url(job))

    def upload_title(self) -> str:
        return gettext("Upload a file to import")

    def render_upload_form(
        self,
        request: HttpRequest,
        form: ImportJobUploadForm,
        form_url: str,
        extra_context: dict | None,
    ) -> HttpResponse:
        first = [name for name in ("importer", "file") if name in form.fields]
        fieldsets = [
            (None, {"fields": first}),
            (
                _("Reading options"),
                {
                    "fields": ["encoding", "delimiter", "sheet_name"],
                    "description": _("Leave them blank unless the preview cannot read the file."),
                },
            ),
        ]
        adminform = admin.helpers.AdminForm(form, fieldsets, {}, model_admin=self)
        context = {
            **self.admin_site.each_context(request),
            "title": self.upload_title(),
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": admin.helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    # -- the preview (change) page -----------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        """The job's preview, read only: jobs are never saved through a form."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        context = {**READ_ONLY_CONTEXT, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: ImportJob | None = None,
    ) -> TemplateResponse:
        if change and obj is not None:
            context.update(self.preview_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def preview_context(self, request: HttpRequest, job: ImportJob) -> dict[str, Any]:
        """What the preview page shows besides the read-only fields."""
        columns, rows = self.sample_table(job)
        progress = job_progress(job) if job.state in RUNNING_STATES else None
        return {
            "title": capfirst(self.opts.verbose_name),
            "subtitle": f"{job.original_name} → {target_name(job)}",
            "target_plural": target_name(job, plural=True),
            "running_message": self.running_message(job),
            "pickup_warning": pickup_warning(job),
            "refresh_seconds": REFRESH_SECONDS,
            "poll_milliseconds": POLL_MILLISECONDS,
            "status_url": self.job_url(job, "status"),
            "progress": progress,
            "progress_text": describe_progress(progress) if progress else "",
            "sample_columns": columns,
            "sample_rows": rows,
            "events": job.events.all(),
            **self.errors_context(request, job),
            **self.actions_context(request, job),
        }

    def running_message(self, job: ImportJob) -> str:
        if job.state == JobState.CREATED:
            return gettext("The preview is running: every row of the file is being checked.")
        if job.state == JobState.IMPORT_IN_PROGRESS:
            return gettext("The import is running: the rows are being written.")
        return ""

    def sample_table(self, job: ImportJob) -> tuple[list[str], list[tuple[Any, list[str]]]]:
        """The column names (as in the file) and the sample rows, in the file's column order.

        ``column_map`` gives the order where JSON keeps it; PostgreSQL's jsonb does not, so
        the order of ``header`` (the columns as in the file) wins when it is known.
        """
        sample = job.preview_sample or []
        column_map = job.column_map or (dict.fromkeys(sample[0]["values"]) if sample else {})
        position = {column: index for index, column in enumerate(job.header or [])}
        fields = sorted(column_map, key=lambda f: position.get(column_map[f], len(position)))
        columns = [column_map[f] or f for f in fields]
        rows = [(s["row"], [s["values"].get(f, "") for f in fields]) for s in sample]
        return columns, rows

    def errors_context(self, request: HttpRequest, job: ImportJob) -> dict[str, Any]:
        """One page of the job's row errors, with links to the pages before and after it."""
        errors = job.row_errors.order_by("row_number", "id")
        paginator = Paginator(errors, app_settings.ERRORS_PER_PAGE)
        page = paginator.get_page(request.GET.get(ERRORS_PAGE_VAR))
        return {
            "errors_page": page,
            "error_count": paginator.count,
            "error_groups": error_groups(job) if paginator.count else [],
            "error_columns": invalid_rows_by_column(job) if paginator.count else [],
            "errors_previous_url": self._errors_page_url(request, page, -1),
            "errors_next_url": self._errors_page_url(request, page, +1),
            "error_report_urls": {
                fmt.upper(): reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_errors",
                    args=(quote(job.pk), fmt),
                    current_app=self.admin_site.name,
                )
                for fmt in reports.FORMATS
            },
        }

    def _errors_page_url(self, request: HttpRequest, page: Page, step: int) -> str:
        has_page = page.has_next() if step > 0 else page.has_previous()
        if not has_page:
            return ""
        query = request.GET.copy()
        query[ERRORS_PAGE_VAR] = str(page.number + step)
        return f"?{query.urlencode()}#row-errors"

    def actions_context(self, request: HttpRequest, job: ImportJob) -> dict[str, Any]:
        """Whether to offer Confirm Import, Resume or Cancel, and why Confirm is refused."""
        allowed = self.has_confirm_permission(request, job)
        confirm = services.can_confirm(job) if allowed else None
        show_confirm = confirm is not None and confirm.offered
        show_resume = allowed and bool(services.can_resume(job))
        show_cancel = bool(services.can_cancel(job)) and self.has_cancel_permission(request, job)
        return {
            "files_removed_message": self.files_removed_message(job),
            "show_cancel": show_cancel,
            "cancel_url": self.job_url(job, "cancel") if show_cancel else "",
            "show_confirm": show_confirm,
            "confirm_refusals": [confirm.reason] if show_confirm and not confirm else [],
            "confirm_url": self.job_url(job, "confirm") if show_confirm else "",
            "show_resume": show_resume,
            "resume_url": self.job_url(job, "resume") if show_resume else "",
        }

    def files_removed_message(self, job: ImportJob) -> str:
        """What the page says of a job whose stored files were removed; empty otherwise."""
        if job.files_removed_at is None:
            return ""
        return gettext(
            "The stored file and its chunks were removed on %(date)s, as "
            "DATA_EXCHANGE_KEEP_FILES_FOR sets for finished jobs. The counts and row errors "
            "stay; to import these rows, upload the file again."
        ) % {"date": date_format(localtime(job.files_removed_at), "DATETIME_FORMAT")}

    # -- the error report ------------------------------------------------------------------

    def status_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The job's state and progress as JSON, for the page's live progress bar."""
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404
        if not self.has_view_or_change_permission(request, job):
            raise PermissionDenied
        progress = job_progress(job)
        return JsonResponse(
            {**progress.as_dict(), "text": describe_progress(progress)},
            headers={"Cache-Control": "no-store"},
        )

    def error_report_view(self, request: HttpRequest, object_id: str, fmt: str) -> HttpResponse:
        """GET: the job's row errors as CSV or XLSX, formula triggers neutralised."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if fmt not in reports.FORMATS:
            raise Http404(gettext("There is no such report format."))
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404(gettext("There is no such import job."))
        if not self.has_view_or_change_permission(request, job):
            raise PermissionDenied
        return reports.error_report_response(job, fmt)

    # -- confirm and resume ------------------------------------------------------------------

    def confirm_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: start the import of a previewed job."""
        return self._start_view(
            request,
            object_id,
            services.confirm_import,
            gettext("The import of “%s” was confirmed; its rows are being written."),
            gettext("Confirmed the import."),
        )

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: run the unfinished chunks of an import that failed by a fault."""
        return self._start_view(
            request,
            object_id,
            services.resume_import,
            gettext("The import of “%s” was resumed; its remaining rows are being written."),
            gettext("Resumed the import."),
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: cancel a running preview or import."""
        return self._start_view(
            request,
            object_id,
            services.cancel_job,
            gettext("“%s” was cancelled."),
            gettext("Cancelled the job."),
        )

    def _start_view(
        self,
        request: HttpRequest,
        object_id: str,
        start: Any,
        success: str,
        log_message: str,
    ) -> HttpResponse:
        """POST only, with the confirm permission: run ``start(job id, user=…)`` and go back to
        the job's page with its outcome."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_confirm_permission(request):
            raise PermissionDenied
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404(gettext("There is no such import job."))
        if not self.has_confirm_permission(request, job):
            raise PermissionDenied
        try:
            start(job.pk, user=request.user)
        except TransitionRefused as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.log_change(request, job, log_message)
            self.message_user(request, success % job.original_name, messages.SUCCESS)
        return HttpResponseRedirect(self.job_url(job))


class GenericImporterModelAdmin(ImportJobAdmin):
    """The admin of one importer proxy: only its jobs, and uploads without a target choice.

    Permissions are the proxy's own (``<app>.add_<proxy>``, ``<app>.view_<proxy>``…); confirming
    also needs ``data_exchange_tool.confirm_importjob``.
    """

    list_filter = ("state",)

    @property
    def importer_label(self) -> str:
        return self.model._meta.label

    def get_upload_form(self, request: HttpRequest) -> ImportJobUploadForm:
        return self.upload_form_class(
            **self.upload_form_kwargs(request), importer=self.importer_label
        )

    def upload_title(self) -> str:
        model = registry.get_importer(self.importer_label).target_model
        return gettext("Upload a file to import into %s") % model._meta.verbose_name_plural

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        if self.importer_label not in registry.all_importers():
            errors.append(
                checks.Error(
                    f"{type(self).__name__} is registered for {self.importer_label}, which is "
                    "not an importer (a proxy of ImportJob with Meta.target_model and "
                    "Meta.serializer_class).",
                    obj=type(self),
                    id="data_exchange_tool.E101",
                )
            )
        return errors
