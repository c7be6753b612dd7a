"""llmobs: low-cost, full-chain observability for LLM applications on OpenTelemetry.

``llmobs.configure()`` wires exporters (the embedded store by default, OTLP when ``OTEL_EXPORTER_OTLP_*``
is set); ``llmobs.span`` / ``llmobs.trace`` make custom spans; framework packages record through
``llmobs.recorder``. Imports are lazy so that ``import llmobs`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmobs import lazy

__version__ = "0.1.0"

if TYPE_CHECKING:
    from llmobs.api import span, trace
    from llmobs.export import configure, flush, shutdown
    from llmobs.plugins import hookimpl
    from llmobs.recorder import ROOT, get_recorder

__getattr__ = lazy.exports(__name__, {
    "configure": "export", "flush": "export", "shutdown": "export", "span": "api", "trace": "api",
    "get_recorder": "recorder", "ROOT": "recorder", "hookimpl": "plugins",
})  # fmt: skip


__all__ = ["ROOT", "__version__", "configure", "flush", "get_recorder", "hookimpl", "shutdown", "span", "trace"]
