"""No OTLP request exceeds a safe size: batches split by encoded size, halved on 413, oversized content truncated.

A receiver that rejects bodies above its limit (as collectors do at 4 MiB for gRPC and proxies at a few
MB) must never see a request over it when llmobs is told the limit, and must lose nothing when it is not
(413 → halves → retried). Each part is checked to encode exactly as the SDK's own encoder would.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link

from llmobs import config, content, export, otlp_wire, selfstats
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder

sys.path.insert(0, str(Path(__file__).parent))
from faultserver import FaultServer

LIMIT = 256 * 1024


def _recorder(provider, max_attribute_bytes=8192):
    config.swap(config.load({"max_attribute_bytes": max_attribute_bytes, "capture": "span_only"}, environ={}))
    return Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())


def _big_traces(recorder, n: int) -> set[str]:
    """Traces whose prompts are far over the content limit (1 MB each), as LLM apps make them."""
    ids = set()
    for i in range(n):
        agent = recorder.start(sc.OP_INVOKE_AGENT, "rag", parent=ROOT)
        llm = recorder.start(sc.OP_CHAT, provider="openai", model="gpt-4o", parent=agent)
        llm.set_input([content.message("user", [content.text_part(f"{i} " + "context " * 130_000)])])
        llm.set_output([content.output_message([content.text_part("answer " * 2000)], "stop")])
        llm.set_usage(300_000, 2000)
        llm.end()
        agent.end()
        ids.add(agent.trace_id)
    return ids


@pytest.fixture(autouse=True)
def _settings():
    previous = config.current()
    selfstats.reset()
    yield
    config.swap(previous)


def _pipeline(monkeypatch, endpoint, max_bytes):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # one batch of everything, at force_flush
    settings = config.load({"export_max_request_bytes": max_bytes}, environ={})
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "big-app"}))
    provider.add_span_processor(export.span_processor("otlp", settings))
    return provider


def test_batches_split_to_the_configured_size(monkeypatch):
    server = FaultServer(max_body=LIMIT)
    try:
        provider = _pipeline(monkeypatch, server.endpoint, LIMIT)
        ids = _big_traces(_recorder(provider), 120)  # ~2 MB of spans: one SDK batch would be 8x the limit
        provider.force_flush()
        assert {s.trace_id.hex() for s in server.accepted_spans()} == ids
        assert len(server.accepted_spans()) == 240
        assert all(a.status == 200 for a in server.attempts), "a request went over the receiver's limit"
        assert max(a.size for a in server.attempts) <= LIMIT
        assert len(server.attempts) > 1
        provider.shutdown()
    finally:
        server.close()


def test_a_413_splits_the_batch_in_halves_and_loses_nothing(monkeypatch):
    server = FaultServer(max_body=LIMIT)  # stricter than the exporter's own 4 MB
    try:
        provider = _pipeline(monkeypatch, server.endpoint, export.DEFAULT_MAX_REQUEST_BYTES)
        ids = _big_traces(_recorder(provider), 120)
        provider.force_flush()
        assert any(a.status == 413 for a in server.attempts)
        assert {s.trace_id.hex() for s in server.accepted_spans()} == ids
        assert len(server.accepted_spans()) == 240
        assert selfstats.snapshot().get(export.DROP_TOO_LARGE, 0) == 0
        assert selfstats.snapshot().get(export.DROP_EXPORT_FAILED, 0) == 0
        provider.shutdown()
    finally:
        server.close()


def test_oversized_attributes_are_truncated_by_the_content_policy(monkeypatch):
    server = FaultServer()
    try:
        provider = _pipeline(monkeypatch, server.endpoint, LIMIT)
        _big_traces(_recorder(provider, max_attribute_bytes=4096), 2)
        provider.force_flush()
        chats = [s for s in server.accepted_spans() if s.name.startswith("chat")]
        assert len(chats) == 2
        for span in chats:
            for attribute in span.attributes:
                value = attribute.value.string_value
                assert len(value.encode()) <= 4096, f"{attribute.key} is {len(value)} bytes"
            keys = {a.key for a in span.attributes}
            assert sc.INPUT_MESSAGES in keys
        provider.shutdown()
    finally:
        server.close()


def test_one_span_over_the_limit_is_dropped_and_counted(monkeypatch):
    server = FaultServer()
    try:
        provider = _pipeline(monkeypatch, server.endpoint, 64 * 1024)
        tracer = provider.get_tracer("raw")  # past the recorder's content policy: raw SDK attributes
        with tracer.start_as_current_span("huge") as span:
            for i in range(40):
                span.set_attribute(f"blob.{i}", "x" * 4000)
        with tracer.start_as_current_span("small"):
            pass
        provider.force_flush()
        assert [s.name for s in server.accepted_spans()] == ["small"]
        assert selfstats.snapshot()[export.DROP_TOO_LARGE] == 1
        provider.shutdown()
    finally:
        server.close()


def _sample_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "naïve-服务", "k": ("a", "b")}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope", "1.0", schema_url="https://opentelemetry.io/schemas/1.30.0")
    other = provider.get_tracer("other")
    texts = ["", "ascii", "é" * 300, "中文" * 500, "\U0001f600" * 200, "x" * 70_000]
    for i, text in enumerate(texts):
        with tracer.start_as_current_span(f"span {text[:20]}") as span:
            span.set_attribute("text", text)
            span.set_attribute("n", i)
            span.set_attribute("f", 1.5)
            span.set_attribute("flag", True)
            span.set_attribute("list", [text[:50], "b", "c"])
            span.set_attribute("ints", [1, 2, 3_000_000_000])
            span.add_event("evt", {"payload": text[:1000], "k": 1})
            span.set_status("ERROR" if i % 2 else "OK", text[:100] if i % 2 else None)
            with other.start_as_current_span("child", links=[Link(span.get_span_context(), {"why": text[:10]})]):
                pass
    return memory.get_finished_spans()


def test_parts_fit_the_limit_and_encode_as_the_sdk_does():
    spans = list(_sample_spans()) * 4
    limit = 100_000
    parts = export.SizeLimitedExporter(_Counting(), max_bytes=limit)._parts(spans)
    assert len(parts) > 1
    assert [span for part, _ in parts for span in part] == spans
    for part, encoded in parts:
        body = otlp_wire.request(part, encoded)
        assert len(body) <= limit
        assert body == encode_spans(part).SerializeToString()


class _Counting:
    def __init__(self):
        self.batches = []

    def export(self, spans):
        self.batches.append(len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30_000):
        return True


def test_splitting_keeps_every_span_in_order():
    spans = list(_sample_spans()) * 20
    inner = _Counting()
    sized = export.SizeLimitedExporter(inner, max_bytes=100_000)
    assert sized.export(spans) is SpanExportResult.SUCCESS
    assert sum(inner.batches) == len(spans)
    assert len(inner.batches) > 1


def test_the_limit_is_a_setting_for_both_otlp_protocols(monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    assert config.load(environ={}).export_max_request_bytes == export.DEFAULT_MAX_REQUEST_BYTES
    assert config.load(environ={"LLMOBS_EXPORT_MAX_REQUEST_BYTES": "1000000"}).export_max_request_bytes == 1_000_000
    toml = tmp_path / "llmobs.toml"
    toml.write_text("[export]\nmax_request_bytes = 2000000\nshutdown_timeout_s = 3\nhandle_sigterm = false\n")
    settings = config.load(environ={"LLMOBS_CONFIG": str(toml)})
    assert (settings.export_max_request_bytes, settings.export_shutdown_timeout_s, settings.export_handle_sigterm) \
        == (2_000_000, 3, False)
    with pytest.raises(config.ConfigError, match="max_request_bytes"):
        config.load({"export_max_request_bytes": 100}, environ={})
    for protocol in ("http/protobuf", "grpc"):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
        processor = export.span_processor("otlp", config.load({"export_max_request_bytes": 1_000_000}, environ={}))
        try:
            assert isinstance(processor.span_exporter, export.SizeLimitedExporter)
            assert processor.span_exporter.max_bytes == 1_000_000
            assert protocol.split("/")[0] in type(processor.span_exporter.inner).__module__
            # Requests are encoded by llmobs and sent by the SDK exporter's own client.
            assert processor.span_exporter._post is not None
        finally:
            processor.shutdown()


def test_the_sdk_encodes_itself_while_its_internal_metrics_are_on(monkeypatch):
    """Only the SDK exporter's own export() records its opt-in metrics, so llmobs leaves the encoding to it."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    processor = export.span_processor("otlp", config.load(environ={}))
    try:
        assert processor.span_exporter._post is None
    finally:
        processor.shutdown()


def test_grpc_sends_the_requests_llmobs_encoded(monkeypatch):
    """Over gRPC the SDK exporter sends what llmobs encoded: with the SDK's encoder made unusable, a real gRPC
    receiver still gets every span, each request equal to what that encoder would have built."""
    from concurrent import futures

    import grpc
    from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as sdk_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    from llmobs.export_grpc import EncodedGrpcSpanExporter

    spans = list(_sample_spans()) * 4
    expected = [encode_spans(part) for part, _ in export.SizeLimitedExporter(_Counting(), 100_000)._parts(spans)]
    requests = []

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):
            requests.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    def unusable(_spans):
        raise AssertionError("the SDK's encoder was used")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setattr(sdk_grpc, "encode_spans", unusable)
        sized = export.SizeLimitedExporter(EncodedGrpcSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True),
                                           max_bytes=100_000)
        assert sized.export(spans) is SpanExportResult.SUCCESS
        sized.shutdown()
    finally:
        server.stop(grace=None)
    assert len(requests) == len(expected) > 1
    assert requests == expected
