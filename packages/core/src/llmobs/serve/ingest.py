"""From a decoded OTLP request to rows in the store, through :func:`llmobs.interop.normalise`."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmobs import config, export, interop, plugins
from llmobs import semconv as sc
from llmobs.content import CaptureMode, ContentPolicy
from llmobs.pricing import ModelPrice
from llmobs.serve import otlp
from llmobs.store import SQLiteSpanExporter


@dataclass(frozen=True)
class Result:
    """What became of one request: spans stored, spans rejected (with why), and whether the store failed."""

    accepted: int
    rejected: int
    reason: str
    stored: bool


class Ingestor:
    """Normalises received spans and writes them with the store's exporter.

    With the store's own exporter, spans go from the protobuf straight to its rows (:func:`otlp.decode_rows`);
    any other exporter is handed SDK spans (:func:`otlp.decode`).

    Content follows ``settings`` (capture mode, size cap, redactors from plugins, PII redaction) just
    as in an instrumented process. Spans from llmobs' own recorder (scope ``llmobs``) were already made
    safe by their process's policy and already carry llmobs semantics: they are stored as sent, except
    that a ``NO_CONTENT`` receiver still drops their content.
    """

    def __init__(self, exporter: SpanExporter, settings: config.Settings) -> None:
        self.exporter = exporter
        self.policy = ContentPolicy(
            mode=settings.capture, max_bytes=settings.max_attribute_bytes, redactors=plugins.redactors(settings)
        )
        self._trust_own = settings.capture is not CaptureMode.NO_CONTENT
        self._price = functools.lru_cache(maxsize=4096)(
            lambda provider, model: plugins.price_of(provider, model, settings)
        )

    @classmethod
    def for_store(cls, path: str | os.PathLike[str], settings: config.Settings | None = None) -> Ingestor:
        """An ingestor writing to the store at ``path`` with the retention of ``settings`` (default: current)."""
        settings = dataclasses.replace(settings or config.current(), store=path)
        return cls(export.store_exporter(settings), settings)

    def price(self, provider: str | None, model: str) -> ModelPrice | None:
        return self._price(provider, model)

    def span_attributes(self, attributes: dict[str, Any], name: str, scope: str) -> tuple[str, dict[str, Any]]:
        if scope == sc.SCOPE_NAME and self._trust_own:
            return name, attributes
        return interop.normalise_span(attributes, name=name, policy=self.policy, price=self.price)

    def event_attributes(self, name: str, attributes: dict[str, Any]) -> dict[str, Any] | None:
        return interop.normalise_event(name, attributes, self.policy)

    def receive(self, body: bytes, encoding: str) -> Result:
        """Store the spans of a request body in ``encoding`` (:data:`otlp.PROTOBUF` or :data:`otlp.JSON`);
        raises :class:`otlp.PayloadError` if it is not an OTLP trace export request."""
        return self.ingest(otlp.parse(body, encoding))

    def ingest(self, request: ExportTraceServiceRequest) -> Result:
        """Store the request's spans (with the store's exporter, as rows made straight from the protobuf)."""
        if isinstance(self.exporter, SQLiteSpanExporter):
            rows = self.rows(request)
            stored = (not rows.rows or self.exporter.write_rows(rows.rows)) and not rows.failed
            return Result(len(rows.rows) + rows.failed, rows.rejected, rows.reason, stored)
        decoded = otlp.decode(request, self.span_attributes, self.event_attributes, interop.normalise_resource)
        stored = not decoded.spans or self.exporter.export(decoded.spans) is SpanExportResult.SUCCESS
        return Result(len(decoded.spans), decoded.rejected, decoded.reason, stored)

    def rows(self, request: ExportTraceServiceRequest, share: tuple[int, int] | None = None) -> otlp.DecodedRows:
        """The store rows of the request's spans, or of the ``share`` of them (see :func:`otlp.decode_rows`)."""
        return otlp.decode_rows(request, self.span_attributes, self.event_attributes, interop.normalise_resource,
                                share)

    def shutdown(self) -> None:
        self.exporter.shutdown()
