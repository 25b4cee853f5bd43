from rest_framework import serializers

from .models import Member, Partner, Shipment, StockRecord, Subscriber


class ImportStockRecordSerializer(serializers.ModelSerializer):
    partner = serializers.SlugRelatedField(slug_field="code", queryset=Partner.objects.all())

    class Meta:
        model = StockRecord
        fields = [
            "sku",
            "name",
            "price",
            "quantity",
            "warehouse",
            "active",
            "updated_at",
            "partner",
        ]


class ImportStockRecordWithIdSerializer(ImportStockRecordSerializer):
    """The same, with the model's ``id`` among its fields (read-only, as DRF makes it)."""

    class Meta(ImportStockRecordSerializer.Meta):
        fields = ["id", *ImportStockRecordSerializer.Meta.fields]


MEMBER_FIELDS = ["email", "badge", "club", "seat", "joined"]


class ImportMemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = Member
        fields = MEMBER_FIELDS

    def validate_email(self, value: str) -> str:
        return value.lower()


class ImportMemberColumnsSerializer(serializers.ModelSerializer):
    """No ``validate_<field>()`` and no serializer validators: validated column by column."""

    class Meta:
        model = Member
        fields = MEMBER_FIELDS
        validators: list = []


class ImportShipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Shipment
        fields = ["reference", "quantity", "weight", "shipped_on", "fragile"]


class CustomCreateStockRecordSerializer(ImportStockRecordSerializer):
    """Its own ``create()``: each new record also creates a partner ``A-<sku>`` (a side effect),
    and some names make it refuse the row the way user code does."""

    def create(self, validated_data):
        sku, name = validated_data["sku"], validated_data.get("name", "")
        Partner.objects.create(code=f"A-{sku}", name="audit")
        if name == "refuse-validation":
            raise serializers.ValidationError({"warehouse": ["This warehouse is closed."]})
        if name == "refuse-value":
            raise ValueError("No price list covers this item.")
        if name == "refuse-integrity":
            Partner.objects.create(code=f"A-{sku}", name="audit again")
        if name == "refuse-data":
            Partner.objects.create(code=f"A-{sku}-" + "x" * 40, name="too long a code")
        return super().create(validated_data)


class SubscriberSerializer(serializers.ModelSerializer):
    class Meta:
        model = Subscriber
        fields = ["email", "name"]


class LowercaseSubscriberSerializer(SubscriberSerializer):
    """Normalises the email: two cells that differ only in case become one value."""

    def validate_email(self, value: str) -> str:
        return value.lower()
