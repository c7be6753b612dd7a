"""Where traces land with llmobs itself as the destination: Dify's trace through the plugin into
``llmobs serve`` (the core's OTLP receiver and store), read back from the store as the console shows it."""

import uuid

import pytest
from conftest import KEY, endpoint_settings
from dify_traces import Run, send_arms
from opentelemetry.sdk.trace.export import SpanExportResult

from llmobs import semconv as sc
from llmobs.serve import create_server
from llmobs.store.queries import TraceStore


@pytest.mark.parametrize("level", ["executor"], indirect=True)
def test_dify_trace_lands_in_the_llmobs_store(tmp_path, make_gateway):
    store = tmp_path / "llmobs.db"
    server = create_server(store, port=0, token="console-token").start()
    try:
        destination = type("D", (), {"url": server.url})()
        settings = endpoint_settings(destination, otlp_headers="authorization=Bearer console-token")
        gateway = make_gateway(settings)
        run = Run()
        assert send_arms(gateway.base, KEY, run) is SpanExportResult.SUCCESS
    finally:
        server.close()
    with TraceStore(store) as traces:
        spans = {s.name: s for s in traces.get_trace(format(uuid.UUID(run.workflow_run_id).int, "032x"))}
    assert len(spans) == 9
    llm = spans["Answer"]
    assert (llm.operation, llm.span_kind, llm.provider, llm.request_model) == (
        sc.OP_CHAT, sc.KIND_LLM, sc.PROVIDER_DASHSCOPE, "qwen-plus")
    assert (llm.input_tokens, llm.output_tokens, llm.total_tokens, llm.ttft_ns) == (150, 30, 180, 420_000_000)
    assert (llm.session_id, llm.user_id, llm.service) == (run.conversation_id, run.user_id, "support-bot")
    assert spans["workflow"].operation == sc.OP_INVOKE_WORKFLOW
    assert spans["workflow"].attributes[sc.DIFY_APP_ID] == run.app_id
