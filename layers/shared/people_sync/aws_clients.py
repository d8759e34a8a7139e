"""boto3 clients created once per container (cold start) and reused by every invocation, all from boto3's
default session so they share its loaded endpoint and service data; and Powertools' parameter providers on
them (`parameters.get_secret` and `get_parameter` would each build a boto3 session of their own)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache, wraps
from typing import TYPE_CHECKING

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient

#: boto3's default session is not thread-safe while it creates clients. Lambda runs one invocation per
#: container at a time, but the offline stack runs every function in one process, on threads.
_creating = threading.Lock()


def _one_at_a_time[Client](factory: Callable[[], Client]) -> Callable[[], Client]:
    @wraps(factory)
    def create() -> Client:
        with _creating:
            return factory()

    return create


@cache
@_one_at_a_time
def s3() -> S3Client:
    return boto3.client("s3")


@cache
@_one_at_a_time
def stepfunctions() -> SFNClient:
    return boto3.client("stepfunctions")


@cache
@_one_at_a_time
def lambda_client() -> LambdaClient:
    return boto3.client("lambda")


@cache
@_one_at_a_time
def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb")


@cache
@_one_at_a_time
def secretsmanager() -> SecretsManagerClient:
    return boto3.client("secretsmanager")


@cache
@_one_at_a_time
def ssm() -> SSMClient:
    return boto3.client("ssm")


@cache
def secrets() -> SecretsProvider:
    """Secrets Manager through Powertools (values cached per container, see config.PARAMETER_MAX_AGE)."""
    return SecretsProvider(boto3_client=secretsmanager())


@cache
def ssm_parameters() -> SSMProvider:
    return SSMProvider(boto3_client=ssm())


def reset() -> None:
    """Forget cached clients and the values the providers hold (tests switch AWS mocks between cases)."""
    for factory in (s3, stepfunctions, lambda_client, dynamodb, secretsmanager, ssm, secrets, ssm_parameters):
        factory.cache_clear()
