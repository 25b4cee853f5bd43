"""``filtered_in``: the same rows as ``filter(<name>__in=…)``, in few queries."""

from __future__ import annotations

import pytest
from django.db import connection, models

from data_exchange_tool.validation.dbquery import filtered_in, keeps_text
from tests.testapp.models import Partner


@pytest.fixture
def partners(db):
    return [Partner.objects.create(code=f"P{i}", name=f"Partner {i}") for i in range(30)]


def found(name, values):
    return sorted(p.code for part in filtered_in(Partner.objects.all(), name, values) for p in part)


@pytest.mark.django_db
def test_finds_what_a_plain_in_lookup_finds(partners):
    wanted = ["P1", "P7", "nope", "P29", "P7", "p1"]
    assert found("code", wanted) == sorted(
        Partner.objects.filter(code__in=wanted).values_list("code", flat=True)
    )
    assert found("pk", [partners[3].pk, partners[5].pk, 10**9]) == ["P3", "P5"]


@pytest.mark.django_db
def test_no_values_no_query(partners, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert found("code", []) == []


@pytest.mark.django_db
def test_thousands_of_values_take_one_query_on_postgresql(partners, django_assert_num_queries):
    values = [f"P{i}" for i in range(5000)]
    expected = (
        1
        if connection.vendor == "postgresql"
        else -(-5000 // (connection.features.max_query_params or 5000))
    )
    with django_assert_num_queries(expected):
        assert len(found("code", values)) == 30


class UpperCaseCode(models.CharField):
    """A text field that prepares its values: its keys must go through it."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value.upper() if isinstance(value, str) else value


@pytest.mark.parametrize(
    ("field", "as_is"),
    [
        (models.CharField(max_length=5), True),
        (models.TextField(), True),
        (models.EmailField(), True),
        (models.SlugField(), True),
        (UpperCaseCode(max_length=5), False),
        (models.IntegerField(), False),
        (models.UUIDField(), False),
    ],
)
def test_text_keys_skip_preparation_only_where_it_changes_nothing(field, as_is):
    assert keeps_text(field) is as_is
    if as_is:
        assert field.get_db_prep_value("Ab c", connection, prepared=False) == "Ab c"
