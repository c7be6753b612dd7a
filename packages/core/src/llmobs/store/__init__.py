"""The embedded SQLite trace store: ``SQLiteSpanExporter`` writes spans, ``TraceStore`` reads them."""

from llmobs.store.exporter import Retention, SQLiteSpanExporter
from llmobs.store.queries import ModelStats, SpanRecord, TraceStore, TraceSummary
from llmobs.store.schema import StoreError, default_path

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
