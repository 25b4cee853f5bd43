from rest_framework import serializers

from .models import Partner, StockRecord


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
