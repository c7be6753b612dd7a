"""From a decoded OTLP request to rows in the store, through :func:`llmobs.interop.normalise`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Iterator
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

    def __init__(self, exporter: SpanExporter | None, settings: config.Settings) -> None:
        """``exporter`` None: an ingestor that only makes rows (:meth:`rows`), as the serve pool's workers do."""
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

    def ingest(self, request: ExportTraceServiceRequest) -> Result:
        """Store the spans of ``request``."""
        if isinstance(self.exporter, SQLiteSpanExporter):  # the store's rows straight from the protobuf
            return self.store(self.rows(request))
        decoded = otlp.decode(request, self.span_attributes, self.event_attributes, interop.normalise_resource)
        stored = not decoded.spans or self.exporter.export(decoded.spans) is SpanExportResult.SUCCESS
        return Result(len(decoded.spans), decoded.rejected, decoded.reason, stored)

    def rows(self, request: ExportTraceServiceRequest, share: range | None = None) -> otlp.DecodedRows:
        """The store rows of the spans of ``request`` (only those at the positions in ``share``, if given)."""
        return otlp.decode_rows(request, self.span_attributes, self.event_attributes, interop.normalise_resource,
                                share)

    def store(self, rows: otlp.DecodedRows) -> Result:
        """Write rows made by :meth:`rows` with the store's exporter."""
        return self.store_all((rows,))

    def store_all(self, parts: Iterable[otlp.DecodedRows]) -> Result:
        """Write the rows of every part in one transaction, each as ``parts`` yields it."""
        taken: list[otlp.DecodedRows] = []
        parts = iter(parts)

        def batches() -> Iterator[list[tuple[Any, ...]]]:
            for part in parts:
                taken.append(part)
                if part.rows:
                    yield part.rows

        written = self.exporter.write_batches(batches())
        for _ in batches():  # the rest, if the write stopped early: counted, and the producer finishes
            pass
        rows = sum(len(part.rows) for part in taken)
        failed = sum(part.failed for part in taken)
        rejected = sum(part.rejected for part in taken)
        reason = next((part.reason for part in taken if part.reason), "")
        return Result(rows + failed, rejected, reason, written and not failed)

    def shutdown(self) -> None:
        if self.exporter is not None:
            self.exporter.shutdown()
