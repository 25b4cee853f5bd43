from django.contrib import admin

from data_exchange_tool.admin import GenericImporterModelAdmin

from .models import StockRecordImportJob, StockRecordUpsertImportJob


@admin.register(StockRecordImportJob)
class StockRecordNewImporterAdmin(GenericImporterModelAdmin): ...


@admin.register(StockRecordUpsertImportJob)
class StockRecordUpsertImporterAdmin(GenericImporterModelAdmin): ...
