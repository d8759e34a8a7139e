"""The deployed package as Lambda loads it, reproduced on this machine.

Lambda imports a function from its code (/var/task) and its layers (/opt/python) with an interpreter that
has none of this machine's packages. The bench and the build check import handlers the same way: the
shared layer built by the recipe `sam build` runs (layers/shared/Makefile), an isolated interpreter
(`-I -S`: stdlib only, environment variables ignored) and `-B` (Lambda cannot write bytecode either).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from offline.aws_stack import load_template

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER_SOURCE = REPO_ROOT / "layers" / "shared"
#: Lambda's wheel platform for this machine's architecture: a layer built for it imports here.
HOST_PLATFORM = f"manylinux2014_{platform.machine()}"


def build_layer(artifacts_dir: Path) -> Path:
    """Builds the shared layer into `artifacts_dir` as `sam build` does; returns its `python/` directory.

    Its binary wheels are for this machine's architecture (Lambda's platform), so its handlers import here.
    """
    make = shutil.which("make") or "make"
    subprocess.run(  # noqa: S603 - our own Makefile, fixed arguments
        [make, "-s", "-C", str(LAYER_SOURCE), "build-SharedLayer", f"ARTIFACTS_DIR={artifacts_dir}"],
        env={**os.environ, "PYTHON": sys.executable, "PLATFORM": HOST_PLATFORM},
        check=True,
    )
    return artifacts_dir / "python"


def without_bytecode(layer: Path, destination: Path) -> Path:
    """A copy of a built layer as SAM's python3.13 builder ships one: sources only, no .pyc files."""
    shutil.copytree(layer, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def lambda_environment() -> dict[str, str]:
    """The environment a deployed function imports with, as far as it changes what importing does.

    Lambda sets `LAMBDA_TASK_ROOT`: with it Powertools Tracer is on (the template deploys `Tracing: Active`)
    and patches the libraries each handler names, and the X-Ray SDK uses the Lambda context (outside Lambda
    it would build a centralized-sampling recorder with two botocore clients). The template's literal values
    (`PYDANTIC_DISABLE_PLUGINS`, ...) come from template.yaml's Globals, so this follows what `sam deploy` ships.
    """
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    literal = {name: value for name, value in variables.items() if isinstance(value, str)}
    return {
        **literal,
        "PATH": os.environ.get("PATH", ""),
        "LAMBDA_TASK_ROOT": "/var/task",
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "deployed-check",
        "AWS_SECRET_ACCESS_KEY": "deployed-check",
    }


def run_as_lambda(code: str, path: Sequence[Path], *, cwd: Path = REPO_ROOT) -> str:
    """Runs `code` in an interpreter that sees the stdlib and `path` only; returns what it printed."""
    prelude = f"import sys; sys.path[:0] = {[str(entry) for entry in path]!r}\n"
    result = subprocess.run(  # noqa: S603 - this interpreter, code from our own tooling
        [sys.executable, "-I", "-S", "-B", "-c", prelude + code],
        env=lambda_environment(),
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    if result.returncode:
        raise RuntimeError(f"failed in the Lambda-like interpreter:\n{result.stderr[-3000:]}")
    return result.stdout
