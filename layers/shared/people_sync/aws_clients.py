"""boto3 clients created once per container (cold start) and reused by every invocation, all from boto3's
default session so they share its loaded endpoint and service data; and Powertools' parameter providers on
them (`parameters.get_secret` and `get_parameter` would each build a boto3 session of their own)."""

from __future__ import annotations

from functools import cache
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


@cache
def secretsmanager() -> SecretsManagerClient:
    return boto3.client("secretsmanager")


@cache
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
