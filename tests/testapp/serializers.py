from rest_framework import serializers

from .models import Member, Partner, Shipment, StockRecord


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
