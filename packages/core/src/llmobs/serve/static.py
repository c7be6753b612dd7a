"""The console's files, shipped inside the package under ``static/``: no CDN, no build step."""

from __future__ import annotations

import functools
from importlib import resources
from importlib.abc import Traversable

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@functools.cache
def _assets() -> dict[str, tuple[bytes, str]]:
    """Every shipped file by its path under ``static/``, read once. Serving looks names up here, so a
    request can never reach a file outside the directory."""
    found: dict[str, tuple[bytes, str]] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif (kind := _TYPES.get("." + child.name.rsplit(".", 1)[-1])) is not None:
                found[prefix + child.name] = (child.read_bytes(), kind)

    walk(resources.files(__package__).joinpath("static"), "")
    return found


def asset(name: str) -> tuple[bytes, str] | None:
    """(content, content type) of a shipped file, or None."""
    return _assets().get(name)


def page(name: str) -> bytes:
    return _assets()[name][0]
