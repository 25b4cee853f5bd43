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


class StockRecordStrictImportJob(ImportJob):
    """Refuses a file with columns that match no writable field."""

    class Meta:
        proxy = True
        target_model = StockRecord
        serializer_class = "tests.testapp.serializers.ImportStockRecordWithIdSerializer"
        unknown_columns = "error"


class Member(models.Model):
    """A club member: every kind of unique constraint the preview checks in a file."""

    email = models.EmailField(unique=True)
    badge = models.PositiveIntegerField(unique=True)
    club = models.CharField(max_length=20)
    seat = models.PositiveIntegerField()
    joined = models.DateField()

    class Meta:
        unique_together = [("club", "seat")]
        constraints = [
            models.UniqueConstraint(fields=("club", "joined"), name="testapp_member_club_joined"),
        ]

    def __str__(self) -> str:
        return self.email


class MemberImportJob(ImportJob):
    """Validated row by row (the serializer lower-cases emails)."""

    class Meta:
        proxy = True
        target_model = Member
        serializer_class = "tests.testapp.serializers.ImportMemberSerializer"


class MemberColumnsImportJob(ImportJob):
    """Validated column by column (nothing runs per row)."""

    class Meta:
        proxy = True
        target_model = Member
        serializer_class = "tests.testapp.serializers.ImportMemberColumnsSerializer"


class MemberUpsertImportJob(ImportJob):
    class Meta:
        proxy = True
        target_model = Member
        serializer_class = "tests.testapp.serializers.ImportMemberColumnsSerializer"
        unique_fields = ("club", "seat")


class Shipment(models.Model):
    """A second target model, so imports into two models run at once (the soak test)."""

    reference = models.CharField(max_length=40, unique=True)
    quantity = models.PositiveIntegerField()
    weight = models.DecimalField(max_digits=10, decimal_places=3)
    shipped_on = models.DateField()
    fragile = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.reference


class ShipmentImportJob(ImportJob):
    class Meta:
        proxy = True
        target_model = Shipment
        serializer_class = "tests.testapp.serializers.ImportShipmentSerializer"
        unique_fields = ("reference",)


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
