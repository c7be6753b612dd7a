"""Build the ``.difypkg``: the zip Dify installs, in the layout ``dify plugin package`` produces.

The plugin directory's files sit at the root of the zip (``manifest.yaml``, ``main.py``, ``_assets/``,
``provider/``, ``tools/``, ``endpoints/``, ``group/``, ``README.md``, ``PRIVACY.md``,
``requirements.txt``), next to the Python packages the plugin imports that are not on a registry:
``llmobs_dify`` and the core, ``llmobs``. Dify's daemon installs ``requirements.txt`` (third-party
packages only, pinned from the plugin's lock) and runs ``python -m main`` in the unpacked directory,
where both packages import from the working directory.

    python -m llmobs_dify.packaging [--out DIR]      # prints the path of the built package

``python dev.py dify-package`` refreshes ``requirements.txt`` from the lock first, then runs this.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import yaml

import llmobs
import llmobs_dify

#: Files and directories of the plugin directory that go into the package, as they are.
PLUGIN_FILES = ("manifest.yaml", "main.py", "README.md", "PRIVACY.md", "requirements.txt")
PLUGIN_DIRS = ("_assets", "provider", "tools", "endpoints", "group")
#: Dify's packager refuses packages over 50 MB uncompressed.
MAX_SIZE = 50 * 1024 * 1024
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


class PackageError(RuntimeError):
    pass


def plugin_root() -> Path:
    """The plugin directory: where manifest.yaml sits (two levels above this package's source)."""
    return Path(llmobs_dify.__file__).resolve().parents[2]


def _walk(directory: Path, prefix: str) -> Iterator[tuple[Path, str]]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_dir() or _SKIP_DIRS & set(relative.parts) or path.name.endswith(_SKIP_SUFFIXES):
            continue
        yield path, f"{prefix}{relative.as_posix()}"


def contents(root: Path | None = None) -> list[tuple[Path, str]]:
    """(file, name in the zip) for everything the package holds."""
    root = root or plugin_root()
    entries: list[tuple[Path, str]] = []
    for name in PLUGIN_FILES:
        path = root / name
        if not path.is_file():
            raise PackageError(f"{name} is missing from the plugin directory")
        entries.append((path, name))
    for name in PLUGIN_DIRS:
        entries.extend(_walk(root / name, f"{name}/"))
    entries.extend(_walk(Path(llmobs_dify.__file__).resolve().parent, "llmobs_dify/"))
    entries.extend(_walk(Path(llmobs.__file__).resolve().parent, "llmobs/"))
    return entries


def build(out_dir: Path, root: Path | None = None) -> Path:
    """Write ``<name>-<version>.difypkg`` into ``out_dir`` and return its path."""
    root = root or plugin_root()
    manifest = yaml.safe_load((root / "manifest.yaml").read_text(encoding="utf-8"))
    entries = contents(root)
    size = sum(path.stat().st_size for path, _ in entries)
    if size > MAX_SIZE:
        raise PackageError(f"the package would hold {size} bytes, over Dify's {MAX_SIZE} byte limit")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['name']}-{manifest['version']}.difypkg"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in entries:
            archive.write(path, name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the llmobs Dify plugin package (.difypkg)")
    parser.add_argument("--out", type=Path, default=plugin_root() / "dist", help="output directory")
    args = parser.parse_args(argv)
    try:
        print(build(args.out))
    except PackageError as exc:
        print(f"cannot build the package: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
