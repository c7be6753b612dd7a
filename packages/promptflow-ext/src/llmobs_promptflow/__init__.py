"""llmobs for Promptflow.

Hooks in through Promptflow's own OpenTelemetry pipeline (a span processor on the global
TracerProvider), never by patching.
"""

from llmobs import __version__ as core_version

__all__ = ["core_version"]
