"""Chat completions through the real openai client: the span, its content, usage, metrics and trace context."""

from __future__ import annotations

import json
import time

import httpx
import openai
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from llmobs import semconv as sc

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip


def test_a_chat_call_is_one_client_span_with_request_response_and_usage(client, server, spans):
    answer = client.chat.completions.create(
        model="qwen-plus", messages=USER, temperature=0.3, top_p=0.9, max_tokens=64, seed=7, stop=["\n\n"]
    )
    assert answer.choices[0].message.content == "Hello from the loopback server."
    (span,) = spans()
    assert span.name == "chat qwen-plus"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    a = span.attributes
    assert a[sc.OPERATION_NAME] == sc.OP_CHAT and a[sc.SPAN_KIND] == sc.KIND_LLM
    assert a[sc.PROVIDER_NAME] == "vllm" and a[sc.FRAMEWORK] == "openai"
    assert a[sc.SERVER_ADDRESS] == "127.0.0.1" and a[sc.SERVER_PORT] == server.port
    assert a[sc.REQUEST_MODEL] == "qwen-plus" and a[sc.RESPONSE_MODEL] == "qwen-plus-served"
    assert (a[sc.REQUEST_TEMPERATURE], a[sc.REQUEST_TOP_P], a[sc.REQUEST_MAX_TOKENS]) == (0.3, 0.9, 64)
    assert a[sc.REQUEST_SEED] == 7 and tuple(a[sc.REQUEST_STOP_SEQUENCES]) == ("\n\n",)
    assert a[sc.REQUEST_STREAM] is False
    assert a[sc.RESPONSE_ID] == "chatcmpl-1" and tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("stop",)
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_OUTPUT_TOKENS], a[sc.USAGE_TOTAL_TOKENS]) == (12, 5, 17)
    assert a[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4 and a[sc.USAGE_REASONING_OUTPUT_TOKENS] == 2
    assert sc.RESPONSE_TIME_TO_FIRST_CHUNK not in a, "TTFT is for streamed calls only"


def test_messages_and_output_are_captured_as_genai_json(client, spans):
    client.chat.completions.create(model="m", messages=USER)
    a = spans()[0].attributes
    assert json.loads(a[sc.INPUT_MESSAGES]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hello?"}]},
    ]
    assert json.loads(a[sc.OUTPUT_MESSAGES]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello from the loopback server."}],
         "finish_reason": "stop"}
    ]  # fmt: skip


def test_tool_definitions_and_tool_calls_are_recorded(client, spans):
    answer = client.chat.completions.create(model="tools", messages=USER, tools=TOOLS)
    assert answer.choices[0].message.tool_calls[0].function.name == "get_weather"
    a = spans()[0].attributes
    assert json.loads(a[sc.TOOL_DEFINITIONS])[0]["name"] == "get_weather"
    assert tuple(a[sc.RESPONSE_FINISH_REASONS]) == ("tool_calls",)
    (output,) = json.loads(a[sc.OUTPUT_MESSAGES])
    assert output["finish_reason"] == "tool_call"
    assert output["parts"] == [{"type": "tool_call", "id": "call_1", "name": "get_weather",
                                "arguments": {"city": "Paris"}}]  # fmt: skip


def test_the_ambient_span_is_the_parent_and_the_server_gets_our_traceparent(client, server, spans):
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("handle-request") as outer:
        client.chat.completions.create(model="m", messages=USER)
    chat = next(s for s in spans() if s.name == "chat m")
    assert chat.parent.span_id == outer.get_span_context().span_id
    assert chat.context.trace_id == outer.get_span_context().trace_id
    sent = server.requests[-1]["headers"]
    version, trace_id, span_id, _flags = sent["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", f"{chat.context.trace_id:032x}", f"{chat.context.span_id:016x}")


def test_a_traceparent_the_application_sends_becomes_the_parent(client, server, spans):
    theirs = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "vendor=abc"}
    client.chat.completions.create(model="m", messages=USER, extra_headers=theirs)
    (span,) = spans()
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent.span_id == 0x00F067AA0BA902B7
    sent = server.requests[-1]["headers"]
    assert sent["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    assert sent["tracestate"] == "vendor=abc", "the trace state travels on with our span"


def test_duration_and_token_metrics_are_recorded_for_every_call(client, points):
    for _ in range(2):
        client.chat.completions.create(model="metrics-chat", messages=USER)
    attrs = {sc.OPERATION_NAME: sc.OP_CHAT, sc.REQUEST_MODEL: "metrics-chat", sc.PROVIDER_NAME: "vllm"}
    (duration,) = points(sc.METRIC_CLIENT_OPERATION_DURATION, **attrs)
    assert duration.count == 2
    (inp,) = points(sc.METRIC_CLIENT_TOKEN_USAGE, **attrs, **{sc.TOKEN_TYPE: sc.TOKEN_TYPE_INPUT})
    (out,) = points(sc.METRIC_CLIENT_TOKEN_USAGE, **attrs, **{sc.TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT})
    assert (inp.sum, out.sum) == (24, 10)
    assert not points(sc.METRIC_CLIENT_TIME_TO_FIRST_CHUNK, **attrs)


def test_the_api_key_is_never_recorded(client, server, spans):
    client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "my key is sk-live-abcdefghijklmnop1234"}]
    )
    assert server.requests[-1]["headers"]["authorization"].startswith("Bearer sk-test")
    (span,) = spans()
    dumped = json.dumps(dict(span.attributes))
    assert "sk-test-key" not in dumped and "Bearer" not in dumped
    assert "sk-live-abcdefghijklmnop1234" not in dumped, "secrets in content are scrubbed by the core"


def test_async_client_records_the_same_span(async_client, spans):
    import asyncio

    async def call():
        async with async_client:
            return await async_client.chat.completions.create(model="async-m", messages=USER)

    answer = asyncio.run(call())
    assert answer.choices[0].message.content.startswith("Hello")
    (span,) = spans()
    assert span.name == "chat async-m"
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 5
    assert json.loads(span.attributes[sc.OUTPUT_MESSAGES])[0]["parts"][0]["content"].startswith("Hello")


def test_azures_api_key_header_is_never_recorded(spans, mock_client):
    secret = "azure-key-0123456789abcdef0123456789"
    seen = {}

    def answer(request):
        seen.update(request.headers)
        return httpx.Response(200, json={"id": "a", "model": "gpt-4o", "choices": [],
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}})  # fmt: skip

    azure = mock_client(answer, base_url=None, client_class=openai.AzureOpenAI, api_key=secret,
                        api_version="2024-10-21", azure_endpoint="https://my-resource.openai.azure.com")  # fmt: skip
    azure.chat.completions.create(model="my-deployment", messages=USER)
    assert seen["api-key"] == secret
    (span,) = spans()
    assert span.attributes[sc.PROVIDER_NAME] == sc.PROVIDER_AZURE_OPENAI
    assert span.attributes[sc.REQUEST_MODEL] == "my-deployment"
    assert secret not in json.dumps(dict(span.attributes))


def test_deepseeks_cache_hit_tokens_are_cache_reads(spans, mock_client):
    usage = {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105, "prompt_cache_hit_tokens": 64,
             "prompt_cache_miss_tokens": 36}
    body = {"id": "d", "model": "deepseek-chat", "choices": [], "usage": usage}
    deepseek = mock_client(lambda request: httpx.Response(200, json=body), base_url="https://api.deepseek.com/v1")
    deepseek.chat.completions.create(model="deepseek-chat", messages=USER)
    a = spans()[0].attributes
    assert a[sc.PROVIDER_NAME] == sc.PROVIDER_DEEPSEEK
    assert (a[sc.USAGE_INPUT_TOKENS], a[sc.USAGE_CACHE_READ_INPUT_TOKENS]) == (100, 64)


def test_reasoning_under_either_name_servers_use_is_recorded_in_answers():
    from llmobs_openai import messages

    for key in ("reasoning_content", "reasoning"):  # DeepSeek and Qwen; newer vLLM servers
        choice = {"message": {"role": "assistant", "content": "4", key: "2 + 2"}, "finish_reason": "stop"}
        (answer,) = messages.chat_output([choice])
        assert answer["parts"] == [{"type": "reasoning", "content": "2 + 2"}, {"type": "text", "content": "4"}]


def test_the_span_is_finished_after_the_call_returned_and_ends_when_the_call_did(client, spans, exported, monkeypatch):
    from llmobs import finisher

    monkeypatch.setattr(finisher._default, "delay_s", 60.0)  # a batch short of full waits for the flush
    monkeypatch.setattr(finisher._default, "batch", 1000)
    before = time.time_ns()
    client.chat.completions.create(model="m", messages=USER)
    returned = time.time_ns()
    assert exported() == (), "the span was finished before the call returned"
    time.sleep(0.05)
    (span,) = spans()  # flushes
    assert before <= span.start_time <= span.end_time <= returned, "the span ends when the call did, not later"
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 5


def test_a_span_end_plugin_sees_the_calls_own_context(client, exported, monkeypatch):
    """An ``llmobs_span_end`` plugin may read the application's context (a tenant in a context variable): with one
    registered, a call is finished as it ends, in its own context, not later with other calls'."""
    import contextvars

    import llmobs
    from llmobs import finisher, plugins

    tenant = contextvars.ContextVar("tenant", default="none")

    class TenantPlugin:
        @llmobs.hookimpl
        def llmobs_span_end(self, handle):
            handle.set_attribute("app.tenant", tenant.get())

    monkeypatch.setattr(finisher._default, "delay_s", 60.0)
    monkeypatch.setattr(finisher._default, "batch", 1000)
    plugin = TenantPlugin()
    plugins.register(plugin)
    try:
        token = tenant.set("acme")
        client.chat.completions.create(model="m", messages=USER)
        tenant.reset(token)
        (span,) = exported()  # finished before the call returned: nothing was queued
        assert span.attributes["app.tenant"] == "acme"
    finally:
        plugins.unregister(plugin)


def test_with_background_finishing_off_the_span_is_finished_when_the_call_returns(client, settings, exported):
    settings(finish_in_background=False)
    client.chat.completions.create(model="m", messages=USER)
    (span,) = exported()
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == 5
