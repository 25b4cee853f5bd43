"""Jobs over REST: list, read, upload, row errors, error reports, confirm, cancel, resume."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from .. import registry, reports, services
from ..conf import app_settings
from ..exceptions import FileRejected, TransitionRefused
from ..models import ImportJob
from ..uploads import limit_uploads, refused_upload
from . import permissions
from .serializers import ImportJobSerializer, RowErrorSerializer


class Pages(PageNumberPagination):
    page_size_query_param = None

    def get_page_size(self, request: Request) -> int:
        return app_settings.ERRORS_PER_PAGE


class ImportJobViewSet(viewsets.GenericViewSet):
    serializer_class = ImportJobSerializer
    permission_classes = [IsAuthenticated]
    pagination_class = Pages

    def initialize_request(self, request: Any, *args: Any, **kwargs: Any) -> Request:
        if request.method == "POST":
            limit_uploads(request, app_settings.MAX_FILE_BYTES)  # before the body is read
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        labels = permissions.viewable_importers(self.request.user)
        return ImportJob.objects.filter(importer__in=labels).order_by("-created_at")

    def job(self, perm: str) -> ImportJob:
        """The job in the URL, if the user holds ``perm`` on its importer (else 403)."""
        job = get_object_or_404(ImportJob.objects.all(), pk=self.kwargs["pk"])
        if not permissions.has_importer_perm(self.request.user, job.importer, "view"):
            raise PermissionDenied
        allowed = (
            permissions.can_confirm(self.request.user, job.importer)
            if perm == "confirm"
            else permissions.has_importer_perm(self.request.user, job.importer, perm)
        )
        if not allowed:
            raise PermissionDenied
        return job

    def list(self, request: Request) -> Response:
        if not permissions.viewable_importers(request.user):
            raise PermissionDenied
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self.get_serializer(self.job("view")).data)

    def create(self, request: Request) -> Response:
        importer = request.data.get("importer", "")  # reads the body, under the limit
        refusal = refused_upload(request._request)
        if refusal:
            raise ValidationError({"file": [refusal]})
        if importer not in registry.all_importers():
            raise ValidationError({"importer": [_("There is no such importer.")]})
        if not permissions.has_importer_perm(request.user, importer, "add"):
            raise PermissionDenied
        upload = request.data.get("file")
        if upload is None:
            raise ValidationError({"file": [_("No file was sent.")]})
        options = {k: request.data.get(k, "") for k in ("encoding", "delimiter", "sheet_name")}
        try:
            job = services.create_job(
                importer, upload, name=upload.name, user=request.user, **options
            )
        except FileRejected as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        return Response(self.get_serializer(job).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str) -> Response:
        job = self.job("delete")
        try:
            services.delete_job(job.pk)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["get"])
    def errors(self, request: Request, pk: str) -> Response:
        job = self.job("view")
        page = self.paginate_queryset(job.row_errors.order_by("row_number", "id"))
        return self.get_paginated_response(RowErrorSerializer(page, many=True).data)

    def report(self, request: Request, pk: str, fmt: str) -> FileResponse:
        job = self.job("view")
        if fmt not in reports.FORMATS:
            raise NotFound(_("There is no such report format."))
        return reports.error_report_response(job, fmt)

    def _start(self, start: Any) -> Response:
        job = self.job("confirm")
        try:
            job = start(job.pk, user=self.request.user)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(job).data)

    @action(detail=True, methods=["post"])
    def confirm(self, request: Request, pk: str) -> Response:
        return self._start(services.confirm_import)

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        return self._start(services.cancel_job)

    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return self._start(services.resume_import)
