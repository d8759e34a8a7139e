"""(a) Streaming a large staged CSV to ChartHop: the import starter's path against a raw loopback upload.

    python -m bench.upload [--size-mb 1024]

moto (as a server) holds the staged object and the ChartHop emulator runs in its own process, so the
measured process holds only the code under test. Each upload runs in a fresh interpreter that resets
its peak-RSS counter right before the upload and reports the growth (VmHWM) and the wall time:

* raw: the S3 object's bytes streamed straight into importDataCsv as the multipart part `file`;
* starter: the import starter's own path (`sync_start.start_import`: pre-flight check of the exact
  object version, streamed upload, status loop start).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench-staging"
ORG = "588f7ee98f138b19220041a7"  # the emulator's default org
TOKEN = "emulator-app-token"
KEY = f"staging/{ORG}/roster-large.csv"
HEADER = b"Employee ID,First Name,Last Name,Title,Department,Location,Manager Employee ID,Start Date,Work Email\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(moto_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]),
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
    }


@contextmanager
def _process(args: list[str], env: dict[str, str], url: str) -> Iterator[None]:
    process = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        host, port = url.removeprefix("http://").split(":")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(args)} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


class _GeneratedCsv:
    """A CSV of whole rows, about `size` bytes, generated as it is read (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.produced = len(HEADER)
        self.row = 0
        self.buffer = HEADER

    def read(self, amount: int = -1) -> bytes:
        while (amount < 0 or len(self.buffer) < amount) and self.produced < self.size:
            block = "".join(
                f"E{self.row + i:09d},Ada,Lovelace{self.row + i},Engineer,Engineering,London,E000000001,"
                f"2024-01-01,ada{self.row + i}@example.com\n"
                for i in range(2000)
            ).encode()
            self.row += 2000
            self.produced += len(block)
            self.buffer += block
        amount = len(self.buffer) if amount < 0 else amount
        chunk, self.buffer = self.buffer[:amount], self.buffer[amount:]
        return chunk


def _stage(size: int) -> None:
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.upload_fileobj(_GeneratedCsv(size), BUCKET, KEY)  # type: ignore[arg-type]


def _child(mode: str, emulator_url: str) -> dict[str, Any]:
    """Runs in a fresh interpreter: one upload, measured."""
    import boto3

    from people_sync.charthop_client import ChartHopClient, default_retry
    from people_sync.models import ImportOptions, StagedFile

    s3 = boto3.client("s3")
    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    staged = StagedFile(
        bucket=BUCKET, key=KEY, version_id=head.get("VersionId"), org_id=ORG, size=head["ContentLength"]
    )
    client = ChartHopClient(TOKEN, base_url=emulator_url, timeout=(5, 600), retry=default_retry(total=0))
    parent = client.create_process(ORG, label="bench", process_type="sync", run_user_id="bench")
    if mode == "starter":
        from people_sync import sync_service, sync_start
        from people_sync.config import AppSettings
        from people_sync.csv_checks import CsvRules
        from people_sync.targets.charthop import ChartHopProgressReporter, ChartHopTarget

        sfn = boto3.client("stepfunctions")
        role = "arn:aws:iam::123456789012:role/bench"
        machine = sfn.create_state_machine(
            name=f"bench-{os.getpid()}",
            roleArn=role,
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"]
        settings = AppSettings(
            org_id=ORG,
            app_name="bench",
            app_user_id="bench",
            charthop_base_url=emulator_url,
            token_secret_name="-",
            settings_parameter_name="-",
            staging_bucket=BUCKET,
            staging_prefix="staging/",
            state_machine_arn=machine,
            import_starter_function="-",
            poll_initial_seconds=5,
            poll_max_seconds=60,
            import_timeout_seconds=3600,
        )
        ctx = sync_service.SyncContext(
            settings=settings,
            charthop=client,
            target=ChartHopTarget(client, ORG, ImportOptions()),
            reporter=ChartHopProgressReporter(client, ORG, app_name="bench", app_user_id="bench-user"),
            s3=s3,
            stepfunctions=sfn,
            # ~10 million rows per GB: past the default MaxRows, which a deployment raises for files this big
            csv_rules=CsvRules(maxRows=100_000_000, maxBytes=8 * 1024**3),
        )

        def run() -> Any:
            return sync_start.start_import(ctx, staged, parent.id)

    else:

        def run() -> Any:
            def open_body() -> tuple[IO[bytes], int]:
                body = s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=staged.version_id or "")
                stream: IO[bytes] = body["Body"]  # type: ignore[assignment]
                return stream, int(body["ContentLength"])

            return client.import_csv(
                ORG, open_body, file_name=staged.name, options=ImportOptions(), parent_process_id=parent.id
            )

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "rss_growth_mb": (_status_kb("VmHWM") - before) / 1024,
        "size": staged.size,
        "ok": result is not None,
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each upload (median is shown)")
    parser.add_argument("--child", choices=["raw", "starter"], help=argparse.SUPPRESS)
    parser.add_argument("--emulator", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.emulator)))
        return
    moto_port, emulator_port = _free_port(), _free_port()
    moto_url, emulator_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{emulator_port}"
    env = _environment(moto_url)
    with (
        _process([sys.executable, "-m", "moto.server", "-p", str(moto_port)], env, moto_url),
        _process(
            [sys.executable, "-m", "offline.charthop_emulator", "--port", str(emulator_port), "--import-seconds", "1"],
            env,
            emulator_url,
        ),
    ):
        size = args.size_mb * 1024 * 1024
        print(f"(a) staging a generated {args.size_mb:,} MB CSV in moto S3 ...", flush=True)
        staged_at = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", f"from bench.upload import _stage; _stage({size})"],
            env=env,
            cwd=REPO_ROOT,
            check=True,
        )
        print(f"    staged in {time.perf_counter() - staged_at:.0f} s; uploading to the ChartHop emulator:", flush=True)
        samples: dict[str, list[dict[str, Any]]] = {"raw": [], "starter": []}
        for _ in range(args.repeat):  # alternated, so machine load hits both alike
            for mode in samples:
                out = subprocess.run(
                    [sys.executable, "-m", "bench.upload", "--child", mode, "--emulator", emulator_url],
                    env=env,
                    cwd=REPO_ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                samples[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results = {
        mode: {
            "seconds": statistics.median(run["seconds"] for run in runs),
            "rss_growth_mb": max(run["rss_growth_mb"] for run in runs),
            "size": runs[0]["size"],
            "ok": all(run["ok"] for run in runs),
        }
        for mode, runs in samples.items()
    }
    raw, starter = results["raw"], results["starter"]
    for mode, result in results.items():
        rate = result["size"] / result["seconds"] / 1024 / 1024
        print(
            f"    {mode:<8} {result['seconds']:6.1f} s (median of {args.repeat})  {rate:6.1f} MB/s  "
            f"peak RSS growth {result['rss_growth_mb']:6.1f} MB  {'ok' if result['ok'] else 'FAILED'}"
        )
    ratio = raw["seconds"] / starter["seconds"]
    print(
        f"    throughput starter/raw {ratio:4.2f}  [target >= 0.80]  {'ok' if ratio >= 0.8 else 'UNDER'};"
        f" starter RSS growth {starter['rss_growth_mb']:.1f} MB [target <= 64]"
        f"  {'ok' if starter['rss_growth_mb'] <= 64 else 'OVER'}"
    )


if __name__ == "__main__":
    main()
