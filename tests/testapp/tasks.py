"""Small tasks the end-to-end infrastructure tests send to the real worker."""

from __future__ import annotations

import time

import boto3
from celery import shared_task
from django.conf import settings
from django.db import connection

from .models import Partner


@shared_task(name="tests.count_partners")
def count_partners() -> int:
    """Rows of ``Partner`` as the worker's database connection sees them."""
    return Partner.objects.count()


@shared_task(name="tests.create_partners")
def create_partners(prefix: str, count: int) -> int:
    """Insert ``count`` partners, one transaction each; return how many were written."""
    for number in range(count):
        Partner.objects.create(code=f"{prefix}{number}", name=f"{prefix} {number}")
    return count


@shared_task(name="tests.database_name")
def database_name() -> str:
    """Name of the database the worker is connected to."""
    return str(connection.settings_dict["NAME"])


@shared_task(name="tests.read_s3_object")
def read_s3_object(key: str) -> str:
    """Read an object of the import bucket through the worker's own S3 settings."""
    client = boto3.client(
        "s3",
        endpoint_url=settings.AWS_S3_ENDPOINT_URL,
        aws_access_key_id=settings.AWS_ACCESS_KEY_ID,
        aws_secret_access_key=settings.AWS_SECRET_ACCESS_KEY,
        region_name=settings.AWS_S3_REGION_NAME,
    )
    bucket = settings.MODEL_DATA_EXCHANGE_S3_BUCKET_NAME
    return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


@shared_task(name="tests.sleep")
def sleep(seconds: float) -> float:
    """Sleep, to keep a pool process busy."""
    time.sleep(seconds)
    return seconds
