"""The demo's admin of the test app's stock models (their importers register themselves)."""

from django.contrib import admin

from tests.testapp.models import Partner, StockRecord


@admin.register(StockRecord)
class StockRecordAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", "quantity", "warehouse", "active", "partner")
    list_filter = ("partner", "warehouse", "active")
    search_fields = ("sku", "name")


admin.site.register(Partner)
