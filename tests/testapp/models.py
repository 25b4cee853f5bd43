from django.db import models
from django.db.models.functions import Lower

from data_exchange_tool.models import ImportJob


class Partner(models.Model):
    code = models.CharField(max_length=20, unique=True)
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.code


class StockRecord(models.Model):
    sku = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    quantity = models.PositiveIntegerField()
    warehouse = models.CharField(max_length=40, blank=True, default="")
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(null=True, blank=True)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="stock")

    def __str__(self) -> str:
        return self.sku


class StockRecordImportJob(ImportJob):
    class Meta:
        proxy = True
        target_model = StockRecord
        serializer_class = "tests.testapp.serializers.ImportStockRecordSerializer"


class StockRecordUpsertImportJob(ImportJob):
    class Meta:
        proxy = True
        target_model = StockRecord
        serializer_class = "tests.testapp.serializers.ImportStockRecordSerializer"
        unique_fields = ("sku",)


class Subscriber(models.Model):
    """Emails unique ignoring case: a rule only the database knows (an expression constraint)."""

    email = models.EmailField(max_length=100)
    name = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="testapp_subscriber_email_ci"),
        ]

    def __str__(self) -> str:
        return self.email
