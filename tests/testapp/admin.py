from django.contrib import admin

from data_exchange_tool.admin import GenericImporterModelAdmin

from .models import (
    MemberColumnsImportJob,
    MemberImportJob,
    MemberUpsertImportJob,
    StockRecordImportJob,
    StockRecordUpsertImportJob,
)


@admin.register(StockRecordImportJob)
class StockRecordNewImporterAdmin(GenericImporterModelAdmin): ...


@admin.register(StockRecordUpsertImportJob)
class StockRecordUpsertImporterAdmin(GenericImporterModelAdmin): ...


@admin.register(MemberImportJob)
class MemberImporterAdmin(GenericImporterModelAdmin): ...


@admin.register(MemberColumnsImportJob)
class MemberColumnsImporterAdmin(GenericImporterModelAdmin): ...


@admin.register(MemberUpsertImportJob)
class MemberUpsertImporterAdmin(GenericImporterModelAdmin): ...
