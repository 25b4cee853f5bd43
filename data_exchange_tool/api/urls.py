"""``path("api/imports/", include("data_exchange_tool.api.urls"))``."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import ImportJobViewSet

app_name = "data_exchange_tool_api"

router = SimpleRouter()
router.register("jobs", ImportJobViewSet, basename="job")

urlpatterns = [
    path(
        "jobs/<uuid:pk>/errors.<str:fmt>",
        ImportJobViewSet.as_view({"get": "report"}),
        name="job-report",
    ),
    *router.urls,
]
