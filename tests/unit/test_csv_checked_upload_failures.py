"""CheckedUpload when something other than the file fails (issue 11, item 3): a read error from the
staged stream, a checker that raises, a stream shorter or longer than its stated size.

Whatever fails, the reader of the stream gets an exception: never a silently complete body, never a
hang, and never the end of the file. Sizes straddle the checker's read-ahead (8 blocks of CHUNK; 8 MiB
as deployed) because below it a dead checker had let the upload through and above it hung it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from people_sync import csv_checks
from people_sync.csv_checks import CheckedUpload, CsvRejected, CsvRules, CsvSummary

SMALL_CHUNK = 512
READ_AHEAD = 8 * SMALL_CHUNK


def within[T](seconds: float, run: Callable[[], T]) -> T:
    """Runs `run` on a thread; a hang fails the test instead of stalling CI."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the upload hung (not finished within {seconds} s)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def roster(size: int) -> bytes:
    body = b"Employee ID,Name\n"
    row = b"E1,Ada Lovelace\n"
    return body + row * max(1, (size - len(body)) // len(row))


class FailingStream(io.RawIOBase):
    """A staged stream whose read raises once the first `fail_at` bytes are out (then reads on, as a
    flaky stream would, to catch a reader that retries)."""

    def __init__(self, body: bytes, fail_at: int) -> None:
        super().__init__()
        self._body = io.BytesIO(body)
        self._fail_at = fail_at
        self.failed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        position = self._body.tell()
        if not self.failed and position + (size if size >= 0 else len(self._body.getvalue())) > self._fail_at:
            if position < self._fail_at:
                return self._body.read(self._fail_at - position)
            self.failed = True
            raise OSError("connection reset while reading the staged object")
        return self._body.read(size)


def drain(upload: CheckedUpload, block: int, *, retry_after_errors: bool) -> tuple[bytes, list[Exception]]:
    """Reads like an uploader; a tolerant one reads on after an error (it must keep getting errors)."""
    received, errors = bytearray(), list[Exception]()
    while True:
        try:
            chunk = upload.read(block)
        except Exception as error:  # noqa: BLE001 - collected for the assertions
            errors.append(error)
            if not retry_after_errors or len(errors) >= 3:
                break
            continue
        if not chunk:
            break
        received += chunk
    return bytes(received), errors


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_checks, "CHUNK", SMALL_CHUNK)


SIZES = st.one_of(
    st.integers(min_value=100, max_value=READ_AHEAD - 1),  # below the read-ahead
    st.integers(min_value=READ_AHEAD + 1, max_value=5 * READ_AHEAD),  # above it
)


@settings(max_examples=40, deadline=None)
@given(size=SIZES, data=st.data(), block=st.sampled_from([7, 100, 8192, -1]), retry=st.booleans())
def test_a_read_error_from_the_staged_stream_never_yields_a_complete_body(
    size: int, data: st.DataObject, block: int, retry: bool
) -> None:
    body = roster(size)
    fail_at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", SMALL_CHUNK)
        raw = FailingStream(body, fail_at)
        upload = CheckedUpload(raw, len(body), "roster.csv", CsvRules())
        received, errors = within(10, lambda: drain(upload, block, retry_after_errors=retry))
        assert errors, "the stream failed but the reader saw no error"
        assert len(received) < len(body), "the end of the file reached the target"
        if retry:
            assert len(errors) == 3  # every later read fails too: no gap is silently skipped
        upload._thread.join(timeout=5)
        assert not upload._thread.is_alive(), "the checking thread was left waiting"
        upload.close()


class CheckerBroke(Exception):
    pass


def broken_checker(after_reads: int) -> Callable[..., CsvSummary]:
    def check(stream: csv_checks.Readable, size: int, name: str, rules: CsvRules) -> CsvSummary:
        for _ in range(after_reads):
            if not stream.read(csv_checks.CHUNK):
                break
        raise CheckerBroke("a bug in the checker")

    return check


@settings(max_examples=40, deadline=None)
@given(size=SIZES, after_reads=st.integers(min_value=0, max_value=12), block=st.sampled_from([7, 100, 8192, -1]))
def test_a_checker_that_raises_never_lets_the_end_through(size: int, after_reads: int, block: int) -> None:
    body = roster(size)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(csv_checks, "CHUNK", SMALL_CHUNK)
        patch.setattr(csv_checks, "check_csv", broken_checker(after_reads))
        upload = CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
        received, errors = within(10, lambda: drain(upload, block, retry_after_errors=True))
    assert errors
    assert len(received) < len(body)
    assert all(not isinstance(error, CsvRejected) for error in errors)  # not the file's fault: not refused
    assert isinstance(errors[0], csv_checks.CsvCheckFailed)
    assert isinstance(errors[0].__cause__, CheckerBroke)


@pytest.mark.parametrize("after_reads", [0, 3, 20])
def test_a_checker_that_raises_with_the_deployed_read_ahead(after_reads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployed sizes: 9 MiB, over the 8 MiB read-ahead (it hung), and 2 MiB under it (it passed)."""
    monkeypatch.setattr(csv_checks, "check_csv", broken_checker(after_reads))
    for size in (2 * 1024 * 1024, 9 * 1024 * 1024):
        body = roster(size)
        upload = CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
        received, errors = within(20, lambda: drain(upload, 64 * 1024, retry_after_errors=False))  # noqa: B023
        assert errors
        assert len(received) < len(body)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("stated", [-100, 100])
def test_a_stream_whose_length_differs_from_its_stated_size_fails(stated: int) -> None:
    body = roster(3 * READ_AHEAD)
    upload = CheckedUpload(io.BytesIO(body), len(body) + stated, "roster.csv", CsvRules())
    received, errors = within(10, lambda: drain(upload, 1000, retry_after_errors=True))
    assert errors
    # longer: the bytes past the stated size never leave; shorter: the reader gets an error, not an end
    assert len(received) < len(body) + stated if stated < 0 else len(received) <= len(body)


@pytest.mark.usefixtures("small_chunks")
def test_a_refusal_still_wins_over_the_end_of_the_file() -> None:
    body = roster(3 * READ_AHEAD) + b"E2\n"
    upload = CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
    received, errors = within(10, lambda: drain(upload, 1000, retry_after_errors=True))
    assert errors
    assert all(isinstance(error, CsvRejected) for error in errors)
    assert len(received) < len(body)


@pytest.mark.usefixtures("small_chunks")
def test_reading_nothing_does_not_end_the_check() -> None:
    body = roster(3 * READ_AHEAD)
    upload = CheckedUpload(io.BytesIO(body), len(body), "roster.csv", CsvRules())
    assert upload.read(0) == b""
    received, errors = within(10, lambda: drain(upload, 1000, retry_after_errors=False))
    assert (received, errors) == (body, [])
    assert upload.summary is not None


def test_a_report_that_cannot_be_written_leaves_no_unexplained_copy_in_failed() -> None:
    """Campaign seed 181: the report's PutObject failed after the file was copied to failed/, leaving a copy that
    nothing explained. The report is written first: a failure leaves the file staged and nothing in failed/."""
    import boto3
    import pytest
    from botocore.exceptions import ClientError
    from moto import mock_aws

    from people_sync.staging import quarantine

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="staging-bucket")
        s3.put_bucket_versioning(Bucket="staging-bucket", VersioningConfiguration={"Status": "Enabled"})
        version = s3.put_object(Bucket="staging-bucket", Key="staging/org/roster.csv", Body=b"a,b\n1,2\n")["VersionId"]
        real_put = s3.put_object

        def failing_put(**kwargs: Any) -> Any:
            if str(kwargs.get("Key", "")).startswith("failed/"):
                raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "PutObject")
            return real_put(**kwargs)

        s3.put_object = failing_put  # type: ignore[method-assign,assignment]
        with pytest.raises(ClientError):
            quarantine(
                s3, bucket="staging-bucket", key="staging/org/roster.csv", version_id=version, folder="org", report={}
            )
        listed = s3.list_objects_v2(Bucket="staging-bucket").get("Contents", [])
        assert [item["Key"] for item in listed] == ["staging/org/roster.csv"]


def test_a_retried_move_to_failed_leaves_one_copy_and_report_per_staged_version() -> None:
    """A refused file whose close kept failing was copied to failed/ again on each retry (the key carried the
    time of the move). The key names the staged version now: a retry rewrites the same copy; another upload
    of the same name gets its own."""
    import time as time_module

    import boto3
    from moto import mock_aws

    from people_sync.staging import quarantine

    real_gmtime = time_module.gmtime
    moves = iter(range(1_800_000_000, 1_800_009_999, 7))  # each move (and retry) a few seconds after the last

    def later_each_move(seconds: float | None = None) -> time_module.struct_time:
        return real_gmtime(next(moves) if seconds is None else seconds)

    with mock_aws(), patch("people_sync.staging.time.gmtime", later_each_move):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="staging-bucket")
        s3.put_bucket_versioning(Bucket="staging-bucket", VersioningConfiguration={"Status": "Enabled"})
        first = s3.put_object(Bucket="staging-bucket", Key="staging/org/roster.csv", Body=b"a,b\n")["VersionId"]
        second = s3.put_object(Bucket="staging-bucket", Key="staging/org/roster.csv", Body=b"a,b\n")["VersionId"]
        moved = {
            quarantine(
                s3, bucket="staging-bucket", key="staging/org/roster.csv", version_id=version, folder="org", report={}
            )
            for version in (first, first, second, first, second)
        }
        listed = sorted(
            item["Key"] for item in s3.list_objects_v2(Bucket="staging-bucket", Prefix="failed/")["Contents"]
        )
    assert len(moved) == 2
    assert listed == sorted([*moved, *(f"{key}.report.json" for key in moved)])
