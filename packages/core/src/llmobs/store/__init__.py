"""The embedded SQLite trace store: ``SQLiteSpanExporter`` writes spans, ``TraceStore`` reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmobs import lazy
from llmobs.store.queries import ModelStats, SpanRecord, TraceStore, TraceSummary
from llmobs.store.schema import StoreError, default_path

if TYPE_CHECKING:
    from llmobs.store.exporter import Retention, SQLiteSpanExporter

# The readers (``llmobs traces``, ``show``, ``stats``) do not need the OpenTelemetry SDK the exporter imports.
__getattr__ = lazy.exports(__name__, {"Retention": "exporter", "SQLiteSpanExporter": "exporter"})

__all__ = [
    "ModelStats",
    "Retention",
    "SQLiteSpanExporter",
    "SpanRecord",
    "StoreError",
    "TraceStore",
    "TraceSummary",
    "default_path",
]
