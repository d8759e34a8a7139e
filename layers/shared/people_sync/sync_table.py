"""What every store kept in the sync table shares: the table (key `id` (S), TTL attribute `expiration`), its
DynamoDB client created at first use (never while a handler is imported), and how a failed condition reads.

The table holds the loop memory (`loop#`), the start journal (`upload#`, `start#`), the targets' queues
(`queue#`), slots (`slot#`, `sync-now#`) and closed marks (`closed#`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from people_sync import aws_clients

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class SyncTableStore:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws_clients.dynamodb()
        return self._client

    def get(self, key: str) -> dict[str, Any]:
        """The item (strongly consistent), or {}."""
        item = self.client.get_item(TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True).get("Item")
        return dict(item or {})


def condition_failed(error: ClientError) -> bool:
    response: Any = error.response
    return bool(response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")
