"""The flood bench (bench/org_flood.py, `make bench`) in a quick mode, so that its code cannot rot: 20 files, each
figure it prints measured (nothing left at zero). Its verdict is about hundreds of files waiting for hours; 20
files wait minutes, mostly as the next in line, which asks every few seconds."""

from __future__ import annotations

import re

import pytest

from bench.org_flood import flood

QUEUE_LINE = r"([\d.]+) queue reads \((\d+) read units\), ([\d.]+) queue writes \((\d+) write units\)"


def test_a_small_flood_is_measured_and_meets_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    flood(20, 20.0)
    out = capsys.readouterr().out
    assert "flood: {'imported': 20}" in out, out
    assert "at the time limit: 0" in out, out
    assert "all DONE: True" in out, out
    found = re.search(QUEUE_LINE, out)
    assert found is not None, out
    assert min(float(value) for value in found.groups()) > 0, out
    assert "invocations per file" in out, out
