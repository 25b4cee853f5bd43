from django.contrib import admin

from data_exchange_tool.admin import GenericImporterModelAdmin

from .models import Partner, StockRecord, StockRecordImportJob


@admin.register(StockRecordImportJob)
class StockRecordNewImporterAdmin(GenericImporterModelAdmin):
    pass


@admin.register(StockRecord)
class StockRecordAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price", "quantity", "warehouse", "active", "partner")
    list_filter = ("partner", "warehouse", "active")
    search_fields = ("sku", "name")


admin.site.register(Partner)
