"""Checks what `sam build` made is what Lambda should load:  python -m tools.check_build [.aws-sam/build]

`make sam-check` runs it after `sam build`:
- every module of the shared layer has Python 3.11 bytecode that Python uses without checking the sources
  (unchecked-hash, PEP 552): Lambda's /opt is read-only, so a missing .pyc means compiling at every cold start;
- the layer holds exactly the packages pinned in layers/shared/constraints.txt, at those versions;
- every function's handler module imports from its built code and the built layer alone (no package of this
  machine), with tracing on as deployed: the package is complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offline.aws_stack import load_template
from tools.deployed import run_as_lambda
from tools.lock_layer import canonical, read_constraints

#: PEP 552 flags word of a .pyc: bit 0 "hash-based", bit 1 "check the source"; unchecked-hash is 0b01.
UNCHECKED_HASH = 0b01
CACHE_TAG = "cpython-311"


def missing_bytecode(layer: Path) -> list[str]:
    """Layer modules without unchecked-hash Python 3.11 bytecode."""
    problems = []
    for source in sorted(layer.rglob("*.py")):
        cached = source.parent / "__pycache__" / f"{source.stem}.{CACHE_TAG}.pyc"
        if not cached.exists():
            problems.append(f"{source.relative_to(layer)}: no {CACHE_TAG} bytecode")
        elif int.from_bytes(cached.read_bytes()[4:8], "little") != UNCHECKED_HASH:
            problems.append(f"{source.relative_to(layer)}: bytecode checks its source (not unchecked-hash)")
    return problems


def unpinned_packages(layer: Path) -> list[str]:
    """Differences between the packages in the layer and layers/shared/constraints.txt."""
    shipped = {}
    for metadata in layer.glob("*.dist-info"):
        name, version = metadata.name.removesuffix(".dist-info").rsplit("-", 1)
        shipped[canonical(name)] = version
    pinned = read_constraints()
    problems = [
        f"{name} {version} in the layer, pinned {pinned.get(name, 'nowhere')}"
        for name, version in sorted(shipped.items())
        if pinned.get(name) != version
    ]
    problems += [f"{name}: pinned {pinned[name]}, not in the layer" for name in sorted(set(pinned) - set(shipped))]
    return problems


def handler_import_failures(build_dir: Path, layer: Path) -> list[str]:
    problems = []
    resources = load_template(build_dir / "template.yaml")["Resources"]
    for name, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code_dir = build_dir / resource["Properties"]["CodeUri"]
        module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
        try:
            run_as_lambda(f"import {module}", [code_dir, layer], cwd=code_dir)
        except RuntimeError as error:
            problems.append(f"{name}: {error}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", nargs="?", type=Path, default=Path(".aws-sam/build"))
    build_dir = parser.parse_args().build_dir.resolve()
    layer = build_dir / "SharedLayer" / "python"
    problems = missing_bytecode(layer) + unpinned_packages(layer) + handler_import_failures(build_dir, layer)
    if problems:
        raise SystemExit("sam build output is not what Lambda should load:\n  " + "\n  ".join(problems))
    modules = sum(1 for _ in layer.rglob("*.py"))
    print(
        f"sam build output ok: {modules} layer modules with bytecode, the pinned packages only, "
        "every handler imports from the package alone"
    )


if __name__ == "__main__":
    main()
