"""boto3 clients created once per container (cold start) and reused by every invocation."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient


@cache
def s3() -> S3Client:
    return boto3.client("s3")


@cache
def stepfunctions() -> SFNClient:
    return boto3.client("stepfunctions")


@cache
def lambda_client() -> LambdaClient:
    return boto3.client("lambda")


@cache
def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb")


def reset() -> None:
    """Forget cached clients (tests switch AWS mocks between cases)."""
    for factory in (s3, stepfunctions, lambda_client, dynamodb):
        factory.cache_clear()
