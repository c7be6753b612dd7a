"""``llmobs serve`` as an OTLP/HTTP receiver: round trips with the real OTel exporter, for our own spans
and for spans other instrumentations make (OpenInference, OpenLLMetry), in protobuf, gzip and JSON."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.serve import create_server
from llmobs.store import TraceStore


@pytest.fixture(params=[1, 2], ids=["in-process", "2-workers"])
def server(request, tmp_path, settings):
    """The receiver ingesting in its own process, and with two worker processes sharing each request."""
    settings()
    srv = create_server(tmp_path / "served.db", port=0, workers=request.param).start()
    yield srv
    srv.close()


@pytest.fixture
def in_process_server(tmp_path, settings):
    settings()
    srv = create_server(tmp_path / "served.db", port=0).start()
    yield srv
    srv.close()


def provider_to(server, **exporter_options):
    """A TracerProvider exporting to the server with the real OTLP/HTTP exporter, plus a memory copy."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "round-trip"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{server.url}/v1/traces",
                                                                     **exporter_options)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def stored(server, trace_id: str):
    with TraceStore(server.app.readers.path) as store:
        return {s.name: s for s in store.get_trace(trace_id)}


def record_agent(provider):
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    agent = recorder.start("invoke_agent", "helper", parent=ROOT, session_id="sess-1")
    llm = recorder.start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_input([content.message("user", [content.text_part("hello")])])
    llm.chunk()
    llm.set_usage(40, 10)
    llm.set_output([content.output_message([content.text_part("hi!")], "stop")])
    llm.end()
    agent.end()
    return agent.trace_id


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_our_spans_round_trip_unchanged(server, compression):
    provider, memory = provider_to(server, compression=compression)
    trace_id = record_agent(provider)
    provider.shutdown()
    spans = stored(server, trace_id)
    sent = {s.name: s for s in memory.get_finished_spans()}
    assert set(spans) == set(sent) == {"invoke_agent helper", "chat gpt-4o-mini"}
    for name, span in spans.items():
        assert span.attributes == dict(sent[name].attributes)  # stored as sent: already llmobs spans
        assert span.service == "round-trip" and span.scope == "llmobs"
    chat = spans["chat gpt-4o-mini"]
    assert (chat.operation, chat.input_tokens, chat.total_tokens, chat.session_id) == ("chat", 40, 50, "sess-1")
    assert chat.ttft_ns is not None and chat.cost_usd > 0
    assert chat.parent_span_id == spans["invoke_agent helper"].span_id


def test_foreign_spans_built_with_the_sdk_are_normalised(server):
    provider, _ = provider_to(server)
    tracer = provider.get_tracer("openinference.instrumentation.openai")
    with tracer.start_as_current_span("Dify") as root:
        root.set_attributes({"openinference.span.kind": "CHAIN", "input.value": "hi", "session.id": "conv-1"})
        with tracer.start_as_current_span("ChatCompletion") as llm:
            llm.set_attributes({
                "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "llm.provider": "openai",
                "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "hi",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "hello",
                "llm.token_count.prompt": 12, "llm.token_count.completion": 3,
            })
    legacy = provider.get_tracer("opentelemetry.instrumentation.openai")
    with legacy.start_as_current_span("openai.chat") as span:
        span.set_attributes({"llm.request.type": "chat", "gen_ai.system": "OpenAI",
                             "gen_ai.request.model": "gpt-4o-mini", "gen_ai.prompt.0.role": "user",
                             "gen_ai.prompt.0.content": "ping", "gen_ai.usage.prompt_tokens": 5,
                             "gen_ai.usage.completion_tokens": 1})
    provider.shutdown()
    spans = stored(server, f"{root.get_span_context().trace_id:032x}")
    chat = spans["ChatCompletion"]
    assert (chat.operation, chat.span_kind, chat.provider, chat.request_model) == ("chat", "LLM", "openai",
                                                                                   "gpt-4o-mini")
    assert (chat.input_tokens, chat.output_tokens, chat.total_tokens, chat.session_id) == (12, 3, 15, None)
    assert chat.cost_usd == pytest.approx((12 * 0.15 + 3 * 0.60) / 1e6)
    assert json.loads(chat.attributes[sc.OUTPUT_MESSAGES])[0]["parts"] == [content.text_part("hello")]
    assert spans["Dify"].session_id == "conv-1" and spans["Dify"].operation == "chain"
    (legacy_span,) = stored(server, f"{span.get_span_context().trace_id:032x}").values()
    assert (legacy_span.operation, legacy_span.provider, legacy_span.total_tokens) == ("chat", "openai", 6)


def _langchain_run():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.prompts import ChatPromptTemplate

    model = GenericFakeChatModel(messages=iter([AIMessage(
        content="It shipped.", usage_metadata={"input_tokens": 20, "output_tokens": 3, "total_tokens": 23})]))
    chain = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")]) | model
    chain.invoke({"q": "where is order 42?"}, config={"metadata": {"session_id": "lc-1"}})


@pytest.mark.parametrize("instrumentation", ["openinference", "openllmetry"])
def test_real_langchain_instrumentations_round_trip(in_process_server, instrumentation):
    # One server: these instrumentors make no spans once instrumented a second time in a process.
    server = in_process_server
    if instrumentation == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor as Instrumentor
    else:
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor as Instrumentor
    provider, memory = provider_to(server)
    instrumentor = Instrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        _langchain_run()
    finally:
        instrumentor.uninstrument()
    provider.shutdown()
    (trace_id,) = {f"{s.context.trace_id:032x}" for s in memory.get_finished_spans()}
    spans = list(stored(server, trace_id).values())
    (chat,) = [s for s in spans if s.operation == "chat"]
    assert (chat.span_kind, chat.input_tokens, chat.output_tokens, chat.total_tokens) == ("LLM", 20, 3, 23)
    assert chat.session_id == "lc-1"
    said = json.loads(chat.attributes[sc.INPUT_MESSAGES])
    assert said[-1] == content.message("user", [content.text_part("where is order 42?")])
    answered = json.loads(chat.attributes[sc.OUTPUT_MESSAGES])
    assert answered[0]["parts"] == [content.text_part("It shipped.")]
    assert all(s.span_kind for s in spans), [(s.name, s.attributes) for s in spans if not s.span_kind]


def _as_otlp_json(spans) -> bytes:
    """The OTLP/JSON encoding: protobuf's JSON mapping with ids as hex, as the OTLP spec says."""
    document = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def post(server, body: bytes, content_type: str, **headers):
    request = urllib.request.Request(f"{server.url}/v1/traces", data=body, method="POST",
                                     headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_otlp_json_round_trip(server):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "json-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    record_agent(provider)
    status, headers, body = post(server, _as_otlp_json(memory.get_finished_spans()), "application/json")
    assert (status, headers["Content-Type"], json.loads(body)) == (200, "application/json", {})
    trace_id = f"{memory.get_finished_spans()[0].context.trace_id:032x}"
    spans = stored(server, trace_id)
    assert spans["chat gpt-4o-mini"].input_tokens == 40 and spans["chat gpt-4o-mini"].service == "json-app"


def test_exporter_reports_success_and_the_server_keeps_serving(server):
    provider, memory = provider_to(server)
    record_agent(provider)
    exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces")
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS  # re-export: idempotent
    with TraceStore(server.app.readers.path) as store:
        assert len(store.list_traces()) == 1


def test_cli_serves_until_interrupted(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    process = subprocess.Popen([str(Path(sys.executable).with_name("llmobs")), "serve", "--port", "0", "--store",
                                str(tmp_path / "cli.db"), "--workers", "2"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        console = process.stdout.readline().split()[-1]
        assert process.stdout.readline().split()[1].endswith("/v1/traces")
        with urllib.request.urlopen(f"{console}api/facets", timeout=30) as response:
            assert json.loads(response.read()) == {"services": [], "models": []}
        provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "cli-run"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{console}v1/traces")))
        trace_id = record_agent(provider)
        provider.shutdown()
        with TraceStore(tmp_path / "cli.db") as store:
            assert {s.name for s in store.get_trace(trace_id)} == {"invoke_agent helper", "chat gpt-4o-mini"}
        workers = _children(process.pid)
        assert len(workers) >= 2  # the ingest workers (and multiprocessing's resource tracker)
    finally:
        # SIGTERM, not SIGINT: a process started in the background (as CI runs us) inherits SIGINT ignored.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if _running(pid)], "worker processes outlived llmobs serve"


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False
