"""llmobs: low-cost, full-chain observability for LLM applications on OpenTelemetry.

``llmobs.configure()`` wires exporters (the embedded store by default, OTLP when ``OTEL_EXPORTER_OTLP_*``
is set); ``llmobs.span`` / ``llmobs.trace`` make custom spans; framework packages record through
``llmobs.recorder``. Imports are lazy so that ``import llmobs`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "configure": ("llmobs.export", "configure"),
    "flush": ("llmobs.export", "flush"),
    "shutdown": ("llmobs.export", "shutdown"),
    "span": ("llmobs.api", "span"),
    "trace": ("llmobs.api", "trace"),
    "get_recorder": ("llmobs.recorder", "get_recorder"),
    "ROOT": ("llmobs.recorder", "ROOT"),
    "hookimpl": ("llmobs.plugins", "hookimpl"),
}

if TYPE_CHECKING:
    from llmobs.api import span, trace
    from llmobs.export import configure, flush, shutdown
    from llmobs.plugins import hookimpl
    from llmobs.recorder import ROOT, get_recorder


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmobs' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


__all__ = ["ROOT", "__version__", "configure", "flush", "get_recorder", "hookimpl", "shutdown", "span", "trace"]
