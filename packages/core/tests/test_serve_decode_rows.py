"""The receiver's hot path: ``otlp.decode_rows`` (protobuf straight to store rows) makes exactly the rows the
store's exporter makes of ``otlp.decode``'s SDK spans, for our own spans, foreign ones and odd values alike."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from llmobs import config, interop, selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs.serve import otlp
from llmobs.serve.ingest import Ingestor
from llmobs.store import SQLiteSpanExporter, TraceStore
from llmobs.store import exporter as store_exporter


@pytest.fixture(autouse=True)
def _clean_selfstats():
    selfstats.reset()
    yield
    selfstats.reset()


def sdk_request() -> ExportTraceServiceRequest:
    """Spans of two scopes (ours, OpenInference's) made by the SDK, with events, errors and every value type."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "svc", "deployment.environment": "t"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    ours = provider.get_tracer(sc.SCOPE_NAME, "0.1")
    with ours.start_as_current_span("invoke_agent a", attributes={
        sc.OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.SPAN_KIND: sc.KIND_AGENT, sc.SESSION_ID: "s-1",
    }):
        with ours.start_as_current_span("chat m", attributes={
            sc.OPERATION_NAME: sc.OP_CHAT, sc.SPAN_KIND: sc.KIND_LLM, sc.PROVIDER_NAME: "openai",
            sc.REQUEST_MODEL: "gpt-4o-mini", sc.USAGE_INPUT_TOKENS: 12, sc.USAGE_OUTPUT_TOKENS: 3,
            sc.RESPONSE_TIME_TO_FIRST_CHUNK: 0.25, sc.COST_USD: 0.5, sc.RESPONSE_FINISH_REASONS: ("stop",),
            sc.INPUT_MESSAGES: json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hé \"x\""}]}]),
            "empty": "", "zero": 0, "false": False, "ratio": 0.0, "ints": (1, 2), "flags": (True, False),
            "nan": float("nan"), "doubles": (1.5, float("inf")),
        }) as chat:
            chat.add_event("chunk", {"index": 1, "text": "ab"})
            chat.add_event("bare")
        with ours.start_as_current_span("execute_tool t", attributes={sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL}) as tool:
            tool.record_exception(TimeoutError("slow"))
            tool.set_status(Status(StatusCode.ERROR, "slow"))
    foreign = provider.get_tracer("openinference.instrumentation.openai")
    with foreign.start_as_current_span("ChatCompletion") as span:
        span.set_attributes({
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
            "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
            "llm.token_count.prompt": 12, "llm.token_count.completion": 3, "session.id": "conv-1",
        })
        span.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return encode_spans(memory.get_finished_spans())


def odd_request() -> ExportTraceServiceRequest:
    """Values the SDK never makes: nested arrays, key-value lists, bytes, unknown status codes, bad ids."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="openinference.project.name").value.string_value = "proj"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "some.library"
    span = scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, parent_span_id=b"\3" * 8, name="odd",
                                 start_time_unix_nano=10, end_time_unix_nano=5)
    span.status.code = 7
    attrs = span.attributes
    attrs.add(key="kv").value.kvlist_value.values.add(key="a").value.int_value = 1
    mixed = attrs.add(key="mixed").value.array_value.values
    mixed.add().string_value = "x"
    mixed.add().int_value = 2
    mixed.add().array_value.values.add().bool_value = True
    attrs.add(key="bytes").value.bytes_value = b"\0\1"
    attrs.add(key="unset")
    attrs.add(key="empty").value.string_value = ""
    attrs.add(key="minus").value.double_value = float("-inf")
    attrs.add(key=sc.USAGE_INPUT_TOKENS).value.string_value = "12"
    attrs.add(key="dup").value.int_value = 1
    attrs.add(key="dup").value.string_value = "later wins"
    event = span.events.add(name="e")  # no time: the span's start
    event.attributes.add(key="exception.type").value.string_value = "E"
    error = scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\4" * 8, name="failed", start_time_unix_nano=1)
    error.status.code = 2
    error.events.add(name="exception", time_unix_nano=3).attributes.add(key="exception.type").value.string_value = "E"
    scope_spans.spans.add(trace_id=b"\0" * 16, span_id=b"\2" * 8, name="zero trace id")
    scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 7, name="short span id")
    scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\5" * 8, parent_span_id=b"\0" * 8, name="zero parent")
    return request


@pytest.mark.parametrize("capture", [CaptureMode.SPAN_ONLY, CaptureMode.NO_CONTENT])
@pytest.mark.parametrize("make", [sdk_request, odd_request])
def test_rows_from_protobuf_equal_rows_from_sdk_spans(tmp_path, make, capture):
    ingestor = Ingestor(SQLiteSpanExporter(tmp_path / "t.db"), config.Settings(capture=capture))
    request = make()
    args = (ingestor.span_attributes, ingestor.event_attributes, interop.normalise_resource)
    decoded = otlp.decode(request, *args)
    direct = otlp.decode_rows(request, *args)
    assert direct.rows, "nothing decoded"
    # repr: NaN in a typed column compares unequal to itself
    assert repr(direct.rows) == repr(store_exporter.span_rows(decoded.spans))
    assert (direct.rejected, direct.reason, direct.failed) == (decoded.rejected, decoded.reason, 0)
    ingestor.shutdown()


def test_ingest_writes_the_direct_rows_and_reports_rejections(tmp_path):
    path = tmp_path / "t.db"
    ingestor = Ingestor(SQLiteSpanExporter(path, retention=None), config.Settings())  # its spans are from 1970
    result = ingestor.ingest(odd_request())
    assert (result.accepted, result.rejected, result.stored) == (2, 3, True)
    assert result.reason == "invalid trace or span id"
    ingestor.shutdown()
    with TraceStore(path) as store:
        spans = {s.name: s for s in store.get_trace("01" * 16)}
    assert set(spans) == {"odd", "failed"}
    assert spans["failed"].error_type == "E" and spans["failed"].status == "ERROR"
    odd = spans["odd"]
    assert (odd.status, odd.start_ns, odd.end_ns, odd.input_tokens, odd.service) == ("UNSET", 10, 10, 12, "proj")
    assert odd.attributes["dup"] == "later wins" and odd.attributes["minus"] == "-inf"
    assert odd.events == [{"name": "e", "time_ns": 10, "attributes": {"exception.type": "E"}}]


def test_a_span_whose_row_cannot_be_made_fails_the_request(tmp_path, monkeypatch):
    """As with the exporter: the span is counted as dropped and the request is not reported stored (503)."""
    ingestor = Ingestor(SQLiteSpanExporter(tmp_path / "t.db"), config.Settings())
    real = store_exporter.span_row

    def fail_odd(*args):
        if args[3] == "odd":
            raise ValueError("boom")
        return real(*args)

    monkeypatch.setattr(store_exporter, "span_row", fail_odd)
    result = ingestor.ingest(odd_request())
    assert (result.accepted, result.stored) == (2, False)
    assert selfstats.snapshot() == {"store.dropped_spans": 1, "store.convert_failed": 1}
    ingestor.shutdown()
