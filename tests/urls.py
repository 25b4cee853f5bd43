from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/imports/", include("data_exchange_tool.api.urls")),
]
