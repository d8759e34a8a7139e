"""Checks what `sam build` made is what Lambda should load:
    python -m tools.check_build [.aws-sam/build] [--architecture arm64|x86_64]

`make sam-check` runs it after `sam build`:
- every module of the shared layer has Python 3.13 bytecode that Python uses without checking the sources
  (unchecked-hash, PEP 552): Lambda's /opt is read-only, so a missing .pyc means compiling at every cold start;
- the layer holds exactly the packages pinned in layers/shared/constraints.txt, at those versions;
- its binary wheels are for Lambda's platform: CPython 3.13 (cp313) manylinux wheels for the functions'
  architecture, and every extension module (.so) is an ELF file for that machine;
- every function's handler module imports from its built code and the built layer alone (no package of this
  machine), with tracing on as deployed: the package is complete. For a layer built for another architecture
  than this machine's, its binary packages are replaced, for this import only, by the same pinned versions'
  wheels for this machine (downloaded from the package index).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from offline.aws_stack import load_template
from tools.deployed import HOST_PLATFORM, run_as_lambda
from tools.lock_layer import canonical, read_constraints

#: PEP 552 flags word of a .pyc: bit 0 "hash-based", bit 1 "check the source"; unchecked-hash is 0b01.
UNCHECKED_HASH = 0b01
CACHE_TAG = "cpython-313"
#: The wheels' interpreter tag (cp313-cp313, or the stable ABI cp3x-abi3) for Lambda's python3.13.
PYTHON_TAGS = ("cp313-cp313-", "-abi3-")
#: Lambda architecture -> (machine in wheel platform tags, ELF e_machine of its extension modules).
ARCHITECTURES = {"x86_64": ("x86_64", 0x3E), "arm64": ("aarch64", 0xB7)}


def missing_bytecode(layer: Path) -> list[str]:
    """Layer modules without unchecked-hash Python 3.13 bytecode."""
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


def binary_packages(layer: Path) -> dict[str, tuple[str, list[str]]]:
    """The layer's packages installed from platform wheels: {name: (version, wheel tags)}."""
    binaries = {}
    for metadata in sorted(layer.glob("*.dist-info")):
        wheel = (metadata / "WHEEL").read_text().splitlines()
        if "Root-Is-Purelib: true" in wheel:
            continue
        name, version = metadata.name.removesuffix(".dist-info").rsplit("-", 1)
        tags = [line.split(":", 1)[1].strip() for line in wheel if line.startswith("Tag:")]
        binaries[canonical(name)] = (version, tags)
    return binaries


def wrong_platform(layer: Path, architecture: str) -> list[str]:
    """Binary wheels or extension modules in the layer that Lambda's python3.13 on `architecture` cannot load."""
    machine, elf_machine = ARCHITECTURES[architecture]
    problems = []
    for name, (version, tags) in binary_packages(layer).items():
        for tag in tags or ["no Tag"]:
            if not (any(part in tag for part in PYTHON_TAGS) and "manylinux" in tag and tag.endswith(machine)):
                problems.append(f"{name} {version}: wheel tag {tag}, not a cp313 manylinux {machine} wheel")
    extensions = sorted(layer.rglob("*.so"))
    for extension in extensions:
        header = extension.read_bytes()[:20]
        if header[:4] != b"\x7fELF":
            problems.append(f"{extension.relative_to(layer)}: not an ELF file")
        elif int.from_bytes(header[18:20], "little") != elf_machine:
            problems.append(f"{extension.relative_to(layer)}: not built for {machine}")
        elif "cpython-" in extension.name and ".cpython-313-" not in extension.name:
            problems.append(f"{extension.relative_to(layer)}: not for CPython 3.13")
    if not extensions:
        problems.append("no extension modules in the layer (pydantic_core has some): platform not checked")
    return problems


def host_binaries(layer: Path, scratch: Path) -> Path:
    """The layer's binary packages, at their pinned versions, as wheels for this machine (for the import check)."""
    pins = [f"{name}=={version}" for name, (version, _) in binary_packages(layer).items()]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    command += ["--no-compile", "--target", str(scratch), "--only-binary=:all:", "--platform", HOST_PLATFORM]
    command += ["--implementation", "cp", "--python-version", "3.13", *pins]
    subprocess.run(command, check=True)  # noqa: S603 - this interpreter's pip, pinned packages of the layer
    return scratch


def handler_import_failures(build_dir: Path, layer: Path, architecture: str) -> list[str]:
    """Handlers that do not import from the built code and layer (on this machine)."""
    if ARCHITECTURES[architecture][0] == platform.machine():
        return handler_imports(build_dir, [layer])
    with tempfile.TemporaryDirectory() as scratch:
        return handler_imports(build_dir, [host_binaries(layer, Path(scratch)), layer])


def handler_imports(build_dir: Path, layers: list[Path]) -> list[str]:
    problems = []
    resources = load_template(build_dir / "template.yaml")["Resources"]
    for name, resource in sorted(resources.items()):
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code_dir = build_dir / resource["Properties"]["CodeUri"]
        module = resource["Properties"]["Handler"].rsplit(".", 1)[0]
        try:
            run_as_lambda(f"import {module}", [code_dir, *layers], cwd=code_dir)
        except RuntimeError as error:
            problems.append(f"{name}: {error}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", nargs="?", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="arm64")
    arguments = parser.parse_args()
    build_dir, architecture = arguments.build_dir.resolve(), arguments.architecture
    layer = build_dir / "SharedLayer" / "python"
    problems = missing_bytecode(layer) + unpinned_packages(layer) + wrong_platform(layer, architecture)
    problems += handler_import_failures(build_dir, layer, architecture)
    if problems:
        raise SystemExit("sam build output is not what Lambda should load:\n  " + "\n  ".join(problems))
    modules = sum(1 for _ in layer.rglob("*.py"))
    print(
        f"sam build output ok: {modules} layer modules with cp313 bytecode, the pinned packages only, "
        f"binary wheels for python3.13 on {architecture}, every handler imports from the package alone"
    )


if __name__ == "__main__":
    main()
