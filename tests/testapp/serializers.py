from rest_framework import serializers

from .models import Partner, Shipment, StockRecord


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


class ImportShipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Shipment
        fields = ["reference", "quantity", "weight", "shipped_on", "fragile"]
