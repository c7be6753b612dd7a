"""Analysis results over OTLP: one ``gen_ai.evaluation.result`` event (an OTLP log record with that
event name) per result, in the trace and span context of the evaluated span, so a backend that already
holds the trace attaches the evaluation to it — as the GenAI conventions define evaluation events.

Configured by the standard variables: ``OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT``, ``..._HEADERS`` and
``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`` (``http/protobuf`` default, or ``grpc``). The text vectors are
never exported, only the results.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from llmobs import semconv as sc

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter

    from llmobs.analyze.analysis import Analysis


def exporter(environ: Mapping[str, str] | None = None) -> LogRecordExporter:
    environ = os.environ if environ is None else environ
    protocol = environ.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if (protocol or "http/protobuf").strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter()


def export(analysis: Analysis, log_exporter: LogRecordExporter | None = None) -> int:
    """Export every result the store write-back would hold; returns the number of events sent."""
    from opentelemetry import trace
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from llmobs.analyze.analysis import events_of

    provider = LoggerProvider(resource=Resource.create({sc.SERVICE_NAME: analysis.service or "llmobs-analyze"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter or exporter()))
    logger = provider.get_logger(sc.SCOPE_NAME)
    params = inspect.signature(LogRecord.__init__).parameters
    ends = {(c.trace_id, c.span_id): c.end_ns for c in analysis.calls}
    sent = 0
    for (trace_id, span_id), events in events_of(analysis).items():
        span_context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                                   trace_flags=TraceFlags(TraceFlags.SAMPLED))
        for event in events:
            attributes: dict[str, Any] = event.attributes()
            record: dict[str, Any] = {
                "timestamp": ends.get((trace_id, span_id)), "severity_number": SeverityNumber.INFO,
                "attributes": attributes,
            }
            if "context" in params:
                record["context"] = trace.set_span_in_context(NonRecordingSpan(span_context))
            else:  # older SDKs take the ids themselves
                record.update(trace_id=span_context.trace_id, span_id=span_context.span_id,
                              trace_flags=span_context.trace_flags)
            if "event_name" in params:
                record["event_name"] = sc.EVENT_EVALUATION_RESULT
            else:
                attributes[sc.EVENT_NAME] = sc.EVENT_EVALUATION_RESULT
            logger.emit(LogRecord(**record))
            sent += 1
    provider.shutdown()
    return sent
