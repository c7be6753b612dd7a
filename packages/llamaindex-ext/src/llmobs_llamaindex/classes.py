"""LlamaIndex classes looked up by dotted path, so a class a version lacks is skipped rather than fatal."""

from __future__ import annotations

import importlib


def find(path: str) -> type | None:
    """The class at ``package.module.Class``, or None if this LlamaIndex install has no such class."""
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None
