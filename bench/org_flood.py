"""(g) One org's flood of files, on a simulated clock:  python -m bench.org_flood [--files 300] [--import-seconds 20]

`--files` files are staged for one org within a minute, and one file for each of five other orgs in the same
minute and an hour later; each import takes `--import-seconds` at the target. offline/queue_sim.py runs it
through the real domain code and the state machine as the ASL defines it (its time limit, WaitForTurn), with the
import starter's default reserved concurrency (20); the target queue is the deployed DynamoDB store, on moto, so
its reads and writes are counted as DynamoDB would bill them (item sizes estimated from the items themselves:
a strongly consistent read costs one unit per 4 KB, a write one per 1 KB of the larger of the item before and
after).

Printed: how the flood ended (imported, given up, at the time limit), how long the target stood idle between two
of its imports, when the other orgs' imports started, and what each waiting file cost per hour of waiting:
import-starter invocations, queue-item reads and writes and their units, and the queue item's largest size.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from offline.queue_sim import Simulation, peak_invocations  # noqa: E402
from people_sync.target_queue import DynamoDBTargetQueue  # noqa: E402

ORG = "org-flood"
OTHERS = [f"org-{n}" for n in range(1, 6)]
#: What a waiting file may cost (bench target, the same as tests/reliability/test_org_flood.py's).
MAX_INVOCATIONS_PER_FILE_HOUR = 35


class QueueMeter:
    """Counts the target queue's DynamoDB calls on its items (`queue#...`, parked tokens apart) and estimates
    their capacity units from the items' sizes."""

    def __init__(self) -> None:
        self.reads = self.writes = self.read_units = self.write_units = 0
        self.token_writes = 0
        self.largest = 0
        self._size: dict[str, int] = {}
        self._key = ""

    def before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        """before-parameter-build: the call's own parameters (the simulation is single-threaded)."""
        key = self._key = params.get("Key", {}).get("id", {}).get("S", "")
        if not key.startswith("queue#") or model.name != "UpdateItem":
            return
        if "#wake#" in key:
            self.token_writes += 1
            return
        self.writes += 1
        self.write_units += max(1, math.ceil(self._size.get(key, 0) / 1024))

    def after(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        key = self._key
        if model.name != "GetItem" or not key.startswith("queue#") or "#wake#" in key:
            return
        size = _item_bytes(parsed.get("Item") or {})
        self._size[key] = size
        self.largest = max(self.largest, size)
        self.reads += 1
        self.read_units += max(1, math.ceil(size / 4096))


def _item_bytes(item: dict[str, Any]) -> int:
    """About DynamoDB's size of an item: names and values as stored (JSON text is close for these items)."""
    return sum(len(name.encode()) + len(json.dumps(value, ensure_ascii=False).encode()) for name, value in item.items())


def flood(files: int, import_seconds: float) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="sync",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        meter = QueueMeter()
        client.meta.events.register("before-parameter-build.dynamodb", meter.before)
        client.meta.events.register("after-call.dynamodb", meter.after)
        sim = Simulation(import_seconds=import_seconds, queue=DynamoDBTargetQueue("sync", client), concurrency=20)
        start = sim.clock()
        syncs = [sim.stage(ORG, f"flood-{n:03d}.csv", start + 60 * n / files) for n in range(files)]
        others = [sim.stage(org, "roster.csv", start + 10 + n) for n, org in enumerate(OTHERS)]
        others += [sim.stage(org, "roster-2.csv", start + 3600 + n) for n, org in enumerate(OTHERS)]
        began = time.perf_counter()
        sim.run()
        took = time.perf_counter() - began

    print(
        f"(g) one org's flood: {files} files of {import_seconds:g}-s imports staged within a minute, 5 other orgs "
        "(simulated clock, import starter concurrency 20, queue on moto DynamoDB)"
    )
    outcome = Counter(
        "imported" if sync.status == "DONE" else "given up" if "turn did not come" in sync.message else sync.status
        for sync in syncs
    )
    ended = max(sync.closed_at or start for sync in syncs)
    limit = sum(sync.timed_out for sync in syncs)
    print(f"    flood: {dict(outcome)}, all closed after {(ended - start) / 3600:.1f} h; at the time limit: {limit}")
    imported = sorted((s for s in syncs if s.import_started_at is not None), key=lambda s: s.import_started_at or 0)
    idle = [
        (later.import_started_at or 0) - (earlier.closed_at or 0) for earlier, later in itertools.pairwise(imported)
    ]
    if idle:
        print(f"    target idle between two imports: median {statistics.median(idle):.1f} s, max {max(idle):.1f} s")
    delays = [(s.import_started_at or math.inf) - s.staged_at for s in others]
    print(
        f"    other orgs: import started {min(delays):.1f}-{max(delays):.1f} s after staging, all DONE: "
        f"{all(s.status == 'DONE' for s in others)}"
    )
    waited = sum(((s.import_started_at or s.closed_at or start) - s.staged_at) for s in syncs) / 3600
    invoked = [at for at, org, _sync, _kind in sim.invocations if org == ORG]
    # while waiting: each file's asks after its first ask and park, before the ask that gets (or gives up) its turn
    asked = sum(max(0, len(sync.asks) - 3) for sync in syncs)
    asking = sum(max(0.0, sync.asks[-1] - sync.asks[1]) for sync in syncs if len(sync.asks) > 3) / 3600
    per_hour = asked / asking if asking else 0.0
    print(
        f"    import starter: {len(invoked) / files:.1f} invocations per file "
        f"(peak {peak_invocations(invoked, 1.0)} in one second, {len(sim.throttled)} throttled and retried); "
        f"while waiting, {per_hour:.1f} per file and hour"
    )
    print(f"    target queue, per waiting file and hour ({waited:.0f} file-hours of waiting in all):")
    print(
        f"      {meter.reads / waited:5.1f} queue reads ({meter.read_units / waited:.0f} read units), "
        f"{meter.writes / waited:.1f} queue writes ({meter.write_units / waited:.0f} write units), "
        f"{meter.token_writes / waited:.1f} parked tokens written; queue item at most {meter.largest / 1024:.0f} KB"
    )
    verdict = "ok" if per_hour <= MAX_INVOCATIONS_PER_FILE_HOUR and limit == 0 else "MISSED"
    print(
        f"    [target: <= {MAX_INVOCATIONS_PER_FILE_HOUR} invocations per waiting file and hour, none at the time "
        f"limit]  {verdict}   (simulated in {took:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300, help="files the org stages within a minute")
    parser.add_argument("--import-seconds", type=float, default=20.0, help="how long each import takes")
    args = parser.parse_args()
    flood(args.files, args.import_seconds)


if __name__ == "__main__":
    main()
