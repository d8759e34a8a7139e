"""The fault campaign's seeded schedules run only when asked (`make chaos`, CHAOS=1, or `pytest tests/chaos
--chaos`); the checkers' own tests run with every test. `--seeds N` runs seeds 1..N (default 50,
the fixed set), `--seed S` replays one, `--first-seed F` starts a deeper run past them; CHAOS_SEEDS,
CHAOS_SEED and CHAOS_FIRST_SEED do the same. The end of the run prints the campaign's statistics."""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import pytest

from tests.chaos.campaign import Result

DEFAULT_SEEDS = 50
#: The user property a schedule's test puts its Result on (JSON), so it reaches the summary from any worker.
RESULT_PROPERTY = "chaos_result"
#: Every schedule's result in this session, for the summary.
RESULTS: list[Result] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "randomized fault campaign (tests/chaos)")
    group.addoption("--chaos", action="store_true", default=False, help="run the fault campaign")
    group.addoption("--seeds", type=int, default=None, help="run seeds 1..N (default 50)")
    group.addoption("--seed", type=int, default=None, help="replay one seed")
    group.addoption("--first-seed", type=int, default=None, help="with --seeds: start at this seed (default 1)")


def _option(config: pytest.Config, name: str) -> object:
    return config.getoption(name, default=None)


def chaos_enabled(config: pytest.Config) -> bool:
    return bool(_option(config, "--chaos")) or os.environ.get("CHAOS", "") not in ("", "0")


def chosen_seeds(config: pytest.Config) -> list[int]:
    seed = _option(config, "--seed") or os.environ.get("CHAOS_SEED") or None
    if seed not in (None, ""):
        return [int(str(seed))]
    count = int(str(_option(config, "--seeds") or os.environ.get("CHAOS_SEEDS") or DEFAULT_SEEDS))
    first = int(str(_option(config, "--first-seed") or os.environ.get("CHAOS_FIRST_SEED") or 1))
    return list(range(first, first + count))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", chosen_seeds(metafunc.config))


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    """The seeded schedules run only when asked; the checkers' own tests (test_checkers.py) always run."""
    if "seed" in request.fixturenames and not chaos_enabled(request.config):
        pytest.skip("the fault campaign's schedules run with --chaos, CHAOS=1 or `make chaos`")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == RESULT_PROPERTY:
            RESULTS.append(Result.from_json(str(value)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    write = terminalreporter.write_line
    faults: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    violations: dict[str, list[int]] = defaultdict(list)
    by_invariant: Counter[str] = Counter()
    for result in RESULTS:
        faults.update(result.faults)
        crashes.update(result.crashes)
        for violation in result.violations:
            by_invariant[violation.invariant] += 1
            if result.seed not in violations[violation.kind]:
                violations[violation.kind].append(result.seed)
    terminalreporter.section("fault campaign")
    seconds = sum(result.seconds for result in RESULTS)
    write(f"schedules: {len(RESULTS)} ({seconds:.0f} s of schedules)")
    write(f"faults injected: {sum(faults.values())}")
    for name, count in sorted(faults.items()):
        write(f"  {name}: {count}")
    write(f"crashes: {sum(crashes.values())}")
    for name, count in sorted(crashes.items()):
        write(f"  {name}: {count}")
    write(f"invariant violations: {sum(by_invariant.values())}")
    for invariant in ("I1", "I2", "I3", "I4", "I5"):
        write(f"  {invariant}: {by_invariant[invariant]}")
    for kind, seeds in sorted(violations.items()):
        shown = ", ".join(str(seed) for seed in seeds[:10]) + (" ..." if len(seeds) > 10 else "")
        write(f"  {kind}: seeds {shown} (replay: make chaos SEED={seeds[0]})")
