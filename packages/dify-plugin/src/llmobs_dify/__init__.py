"""llmobs Dify plugin: receives Dify's own trace export and forwards it in GenAI semantics."""

import sys

from llmobs import __version__ as core_version

if sys.version_info < (3, 12):  # pragma: no cover - the package metadata already refuses older Pythons
    raise ImportError("llmobs-dify-plugin needs Python >= 3.12, as Dify's plugin daemon does")

__all__ = ["core_version"]
