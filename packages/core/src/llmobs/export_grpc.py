"""The SDK's OTLP/gRPC span exporter, sending requests that :mod:`llmobs.otlp_wire` encoded.

Every OTLP/gRPC exporter of the SDK turns its batch into a request through its ``_translate_data`` hook,
which each signal's exporter overrides; this one parses the bytes llmobs already wrote (protobuf's C
parser) instead of building the request object by object. Everything else — channel, credentials,
headers, compression, retries, timeout and the SDK's own exporter metrics — is the SDK exporter's.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult


class EncodedGrpcSpanExporter(OTLPSpanExporter):
    """``OTLPSpanExporter`` (gRPC) with :meth:`export_encoded`; its ``export`` encodes as the SDK does."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._encoded = threading.local()

    def export_encoded(self, spans: Sequence[ReadableSpan], request: bytes) -> bool:
        """Export ``spans``, whose ``ExportTraceServiceRequest`` is ``request``; True if the destination took it."""
        self._encoded.pending = (spans, request)
        try:
            return self.export(spans) is SpanExportResult.SUCCESS
        finally:
            self._encoded.pending = None

    def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        pending = getattr(self._encoded, "pending", None)
        if pending is not None and pending[0] is data:
            return ExportTraceServiceRequest.FromString(pending[1])
        return super()._translate_data(data)
