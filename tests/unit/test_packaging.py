"""The layer's pins: what requirements.txt asks for is what constraints.txt (and so the layer) ships."""

from __future__ import annotations

from importlib.metadata import version

from tools.deployed import LAYER_SOURCE
from tools.lock_layer import canonical, read_constraints


def layer_requirements() -> dict[str, str]:
    pins = {}
    for line in (LAYER_SOURCE / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, pinned = line.split("==")
            pins[canonical(name.split("[", 1)[0])] = pinned
    return pins


def test_every_layer_requirement_is_locked_at_its_own_version() -> None:
    """A bumped requirement without `python -m tools.lock_layer` would build a layer pip cannot resolve."""
    locked = read_constraints()
    assert {name: locked.get(name) for name in layer_requirements()} == layer_requirements()


def test_the_tests_run_the_locked_versions() -> None:
    """requirements-dev.txt installs with the layer's constraints: what is tested is what is shipped."""
    locked = read_constraints()
    for name in ("pydantic", "pydantic-core", "aws-lambda-powertools", "requests", "botocore", "urllib3"):
        assert version(name) == locked[name], name
