"""llmobs.interop.normalise: every foreign convention the receiver accepts, as a table of cases.

Each case gives a span's name and attributes as that tracer writes them and the llmobs attributes
they must gain. Properties checked on every case: originals kept, idempotence, no exception.
"""

from __future__ import annotations

import json

import pytest

from llmobs import content, interop
from llmobs import semconv as sc
from llmobs.content import CaptureMode, ContentPolicy
from llmobs.pricing import ModelPrice, find_price
from llmobs.recorder import ROOT, Recorder


def price(provider, model):
    return find_price(model)


def messages(attrs, key):
    return json.loads(attrs[key])


OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.provider": "azure",
    "llm.system": "openai",
    "llm.invocation_parameters": '{"temperature": 0.2, "max_completion_tokens": 300, "stop": ["END"], "stream": true}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "You are helpful.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "What is on this picture?",
    "llm.input_messages.1.message.contents.1.message_content.type": "image",
    "llm.input_messages.1.message.contents.1.message_content.image.image.url": "https://example.com/cat.png",
    "llm.input_messages.2.message.role": "tool",
    "llm.input_messages.2.message.tool_call_id": "call_0",
    "llm.input_messages.2.message.content": "42",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"order": "A1"}',
    "llm.tools.0.tool.json_schema": '{"type": "function", "function": {"name": "lookup", "parameters": {}}}',
    "llm.token_count.prompt": 1000,
    "llm.token_count.completion": 200,
    "llm.token_count.total": 1200,
    "llm.token_count.prompt_details.cache_read": 400,
    "llm.token_count.completion_details.reasoning": 50,
    "session.id": "s-1",
    "user.id": "u-1",
    "input.value": "{\"messages\": []}",
}

CASES = [
    pytest.param("ChatOpenAI", OPENINFERENCE_LLM, {
        sc.OPERATION_NAME: "chat", sc.SPAN_KIND: "LLM", sc.PROVIDER_NAME: "azure.ai.openai",
        sc.REQUEST_MODEL: "gpt-4o-2024-08-06", sc.USAGE_INPUT_TOKENS: 1000, sc.USAGE_OUTPUT_TOKENS: 200,
        sc.USAGE_TOTAL_TOKENS: 1200, sc.USAGE_CACHE_READ_INPUT_TOKENS: 400, sc.USAGE_REASONING_OUTPUT_TOKENS: 50,
        sc.REQUEST_TEMPERATURE: 0.2, sc.REQUEST_MAX_TOKENS: 300, sc.REQUEST_STOP_SEQUENCES: ["END"],
        sc.REQUEST_STREAM: True, sc.SESSION_ID: "s-1", sc.CONVERSATION_ID: "s-1", sc.USER_ID: "u-1",
        # gpt-4o: 600 uncached x $2.50 + 400 cached x $1.25 + 200 out x $10, per million
        sc.COST_USD: pytest.approx(0.0015 + 0.0005 + 0.002),
    }, id="openinference-llm"),
    pytest.param("retrieve", {
        "openinference.span.kind": "RETRIEVER", "input.value": "refund policy",
        "retrieval.documents.0.document.id": "d1", "retrieval.documents.0.document.score": 0.91,
        "retrieval.documents.0.document.content": "Refunds within 30 days.",
        "retrieval.documents.0.document.metadata": '{"source": "faq"}',
        "retrieval.documents.1.document.id": "d2", "retrieval.documents.1.document.score": "0.5",
    }, {
        sc.OPERATION_NAME: "retrieval", sc.SPAN_KIND: "RETRIEVER", sc.RETRIEVAL_QUERY_TEXT: "refund policy",
        sc.RETRIEVAL_DOCUMENTS: json.dumps([
            {"id": "d1", "score": 0.91, "content": "Refunds within 30 days.", "metadata": {"source": "faq"}},
            {"id": "d2", "score": 0.5}], separators=(",", ":")),
    }, id="openinference-retriever"),
    pytest.param("lookup", {
        "openinference.span.kind": "TOOL", "tool.name": "lookup", "tool.description": "Look an order up.",
        "input.value": '{"order": "A1"}', "output.value": "shipped",
    }, {
        sc.OPERATION_NAME: "execute_tool", sc.SPAN_KIND: "TOOL", sc.TOOL_NAME: "lookup",
        sc.TOOL_DESCRIPTION: "Look an order up.", sc.TOOL_CALL_ARGUMENTS: '{"order": "A1"}',
        sc.TOOL_CALL_RESULT: "shipped",
    }, id="openinference-tool"),
    pytest.param("embed", {
        "openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small",
        "llm.token_count.prompt": 10, "embedding.embeddings.0.embedding.text": "hello",
    }, {
        sc.OPERATION_NAME: "embeddings", sc.SPAN_KIND: "EMBEDDING", sc.REQUEST_MODEL: "text-embedding-3-small",
        sc.USAGE_TOTAL_TOKENS: 10, sc.COST_USD: pytest.approx(10 * 0.02 / 1e6),
    }, id="openinference-embedding"),
    pytest.param("moderate", {"openinference.span.kind": "GUARDRAIL"},
                 {sc.OPERATION_NAME: "chain", sc.SPAN_KIND: "TASK"}, id="openinference-guardrail"),
    pytest.param("Dify", {"openinference.span.kind": "CHAIN", "input.value": "hi", "output.value": "hello"},
                 {sc.OPERATION_NAME: "chain", sc.SPAN_KIND: "CHAIN"}, id="openinference-chain"),
    pytest.param("openai.chat", {
        "llm.request.type": "chat", "gen_ai.system": "OpenAI", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "Where is my order?",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_9", "gen_ai.completion.0.tool_calls.0.name": "lookup",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"id": 7}',
        "gen_ai.usage.prompt_tokens": 30, "gen_ai.usage.completion_tokens": 12, "llm.usage.total_tokens": 42,
        "llm.is_streaming": False, "traceloop.association.properties.session_id": "conv-3",
        "traceloop.association.properties.user_id": "u-9",
    }, {
        sc.OPERATION_NAME: "chat", sc.SPAN_KIND: "LLM", sc.PROVIDER_NAME: "openai", sc.USAGE_INPUT_TOKENS: 30,
        sc.USAGE_OUTPUT_TOKENS: 12, sc.USAGE_TOTAL_TOKENS: 42, sc.REQUEST_STREAM: False, sc.SESSION_ID: "conv-3",
        sc.USER_ID: "u-9", sc.COST_USD: pytest.approx((30 * 0.15 + 12 * 0.60) / 1e6),
    }, id="openllmetry-legacy-chat"),
    pytest.param("answer.workflow", {
        "traceloop.span.kind": "workflow", "traceloop.workflow.name": "answer",
        "traceloop.entity.name": "answer", "traceloop.entity.input": '{"q": "hi"}',
        "traceloop.entity.output": '{"a": "hello"}',
    }, {
        sc.OPERATION_NAME: "invoke_workflow", sc.SPAN_KIND: "CHAIN", sc.WORKFLOW_NAME: "answer",
        sc.INPUT_VALUE: '{"q": "hi"}', sc.OUTPUT_VALUE: '{"a": "hello"}',
    }, id="openllmetry-workflow"),
    pytest.param("lookup.tool", {"traceloop.span.kind": "tool", "traceloop.entity.name": "lookup",
                                 "traceloop.entity.input": "{}"},
                 {sc.OPERATION_NAME: "execute_tool", sc.SPAN_KIND: "TOOL", sc.TOOL_NAME: "lookup",
                  sc.TOOL_CALL_ARGUMENTS: "{}"}, id="openllmetry-tool"),
    pytest.param("plan.task", {"traceloop.span.kind": "task"}, {sc.OPERATION_NAME: "chain", sc.SPAN_KIND: "TASK"},
                 id="openllmetry-task"),
    pytest.param("execute_task x", {"traceloop.span.kind": "task", "gen_ai.operation.name": "execute_task"},
                 {sc.OPERATION_NAME: "execute_task", sc.SPAN_KIND: "TASK"}, id="openllmetry-new-task"),
    pytest.param("llm_request", {
        "gen_ai.latency.time_to_first_token": 0.0287, "gen_ai.latency.e2e": 0.0627,
        "gen_ai.latency.time_in_queue": 4.4e-05, "gen_ai.latency.time_in_model_prefill": 0.0148,
        "gen_ai.latency.time_in_model_decode": 0.0346, "gen_ai.latency.time_in_model_inference": 0.0494,
        "gen_ai.usage.prompt_tokens": 2, "gen_ai.usage.completion_tokens": 6, "gen_ai.request.id": "cmpl-1-0",
        "gen_ai.request.max_tokens": 6, "gen_ai.request.n": 1,
    }, {
        sc.OPERATION_NAME: "text_completion", sc.SPAN_KIND: "LLM", sc.PROVIDER_NAME: "vllm",
        sc.USAGE_INPUT_TOKENS: 2, sc.USAGE_OUTPUT_TOKENS: 6, sc.USAGE_TOTAL_TOKENS: 8,
        sc.RESPONSE_TIME_TO_FIRST_CHUNK: 0.0287, sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS: 28_700_000,
        sc.VLLM_QUEUE_TIME: 4.4e-05, sc.VLLM_PREFILL_TIME: 0.0148, sc.VLLM_DECODE_TIME: 0.0346,
        sc.VLLM_INFERENCE_TIME: 0.0494, sc.REQUEST_CHOICE_COUNT: 1,
    }, id="vllm-llm_request-seconds"),
    pytest.param("llm_request", {"gen_ai.latency.time_to_first_token": 28_700_000, "gen_ai.usage.prompt_tokens": 2,
                                 "gen_ai.system": "vllm"},
                 {sc.PROVIDER_NAME: "vllm", sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS: 28_700_000,
                  sc.RESPONSE_TIME_TO_FIRST_CHUNK: pytest.approx(0.0287)}, id="vllm-llm_request-nanoseconds"),
    pytest.param("chat gpt-4", {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4",
                                "gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 1},
                 {sc.OPERATION_NAME: "chat", sc.SPAN_KIND: "LLM", sc.PROVIDER_NAME: "openai",
                  sc.USAGE_INPUT_TOKENS: 5, sc.USAGE_TOTAL_TOKENS: 6}, id="older-genai"),
    pytest.param("embeddings ada", {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": 5},
                 {sc.OPERATION_NAME: "embeddings"}, id="older-genai-embeddings-by-name"),
    pytest.param("llm", {"gen_ai.span.kind": "LLM", "gen_ai.operation.name": "chat", "gen_ai.model_name": "qwen-plus",
                         "gen_ai.usage.input_tokens": "100", "gen_ai.usage.output_tokens": "10",
                         "gen_ai.response.time_to_first_token": 250_000_000, "gen_ai.session.id": "c-1"},
                 {sc.REQUEST_MODEL: "qwen-plus", sc.USAGE_TOTAL_TOKENS: 110, sc.RESPONSE_TIME_TO_FIRST_CHUNK: 0.25,
                  sc.CONVERSATION_ID: "c-1", sc.COST_USD: pytest.approx((100 * 0.40 + 10 * 1.20) / 1e6)},
                 id="dify-arms-llm"),
    pytest.param("knowledge", {"gen_ai.span.kind": "RETRIEVER", "gen_ai.operation.name": "retrieval",
                               "retrieval.query": "refunds",
                               "retrieval.document": '[{"content": "30 days", "score": 0.8}]'},
                 {sc.RETRIEVAL_QUERY_TEXT: "refunds",
                  sc.RETRIEVAL_DOCUMENTS: '[{"content":"30 days","score":0.8}]'}, id="dify-arms-retrieval"),
]


@pytest.mark.parametrize(("name", "attributes", "expected"), CASES)
def test_foreign_conventions_gain_llmobs_names(name, attributes, expected):
    out = interop.normalise(attributes, name=name, price=price)
    assert {k: out.get(k) for k in expected} == expected
    for key, value in attributes.items():  # originals kept (content ones made safe, equal here)
        assert key in out, key
        if not isinstance(value, str) or not value.startswith(("{", "[")):
            assert out[key] == value, key
    assert interop.normalise(out, name=name, price=price) == out  # idempotent


PROMPTFLOW_LLM = {
    "framework": "promptflow", "span_type": "LLM",
    "function": "openai.resources.chat.completions.Completions.create",
    "inputs": json.dumps({"model": "gpt-4o-mini", "temperature": 0.2,
                          "messages": [{"role": "user", "content": "Hi there"}]}, indent=2),
    "output": json.dumps({"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "Hello!"},
                                                           "finish_reason": "stop"}]}),
    "llm.response.model": "gpt-4o-mini-2024-07-18", "llm.usage.prompt_tokens": 9,
    "llm.usage.completion_tokens": 3, "llm.usage.total_tokens": 12, "session_id": "pf-1",
}  # fmt: skip


def test_promptflow_spans_are_translated_as_in_the_process():
    """The receiver's translation is llmobs-promptflow's: same name, attributes and content, no payload twice."""
    from llmobs import promptflow_mapping

    name, out = interop.normalise_span(PROMPTFLOW_LLM, name="openai_chat", price=price)
    assert name == "chat gpt-4o-mini"
    expected = {
        sc.OPERATION_NAME: "chat", sc.SPAN_KIND: "LLM", sc.PROVIDER_NAME: "openai", sc.FRAMEWORK: "promptflow",
        sc.REQUEST_MODEL: "gpt-4o-mini", sc.RESPONSE_MODEL: "gpt-4o-mini-2024-07-18", sc.REQUEST_TEMPERATURE: 0.2,
        sc.RESPONSE_ID: "chatcmpl-1", sc.RESPONSE_FINISH_REASONS: ["stop"],
        sc.USAGE_INPUT_TOKENS: 9, sc.USAGE_OUTPUT_TOKENS: 3, sc.USAGE_TOTAL_TOKENS: 12,
        sc.COST_USD: pytest.approx((9 * 0.15 + 3 * 0.60) / 1e6), sc.SESSION_ID: "pf-1",
        sc.INPUT_MESSAGES: '[{"role":"user","parts":[{"type":"text","content":"Hi there"}]}]',
        sc.OUTPUT_MESSAGES: '[{"role":"assistant","parts":[{"type":"text","content":"Hello!"}],'
                            '"finish_reason":"stop"}]',
    }  # fmt: skip
    assert {k: out.get(k) for k in expected} == expected
    assert not {"inputs", "output", "framework", "span_type"} & set(out)  # payloads are content now, once
    assert not [k for k in out if k.startswith("llm.")]
    # the very translation the in-process processor applies (it also records metrics and knows children)
    t = promptflow_mapping.translate("openai_chat", PROMPTFLOW_LLM)
    assert t.name == name and t.usage == (9, 3, None, None, None, 12)
    assert interop.normalise(PROMPTFLOW_LLM, name="openai_chat", price=price) == out
    assert interop.normalise_span(out, name=name, price=price) == (name, out)  # idempotent

    flow = {"framework": "promptflow", "span_type": "Flow", "function": "my_flow",
            "inputs": '{"question": "hi"}', "output": '"hello"'}  # fmt: skip
    name, out = interop.normalise_span(flow, name="my_flow")
    assert name == "invoke_workflow my_flow"
    assert (out[sc.OPERATION_NAME], out[sc.SPAN_KIND], out[sc.WORKFLOW_NAME]) == ("invoke_workflow", "CHAIN", "my_flow")
    assert json.loads(out[sc.INPUT_VALUE]) == {"question": "hi"} and out[sc.OUTPUT_VALUE] == "hello"
    _, bare = interop.normalise_span(flow, name="my_flow", policy=ContentPolicy(mode=CaptureMode.NO_CONTENT))
    assert sc.INPUT_VALUE not in bare and "inputs" not in bare


def test_openinference_messages_become_genai_json():
    out = interop.normalise(OPENINFERENCE_LLM, name="ChatOpenAI")
    assert messages(out, sc.INPUT_MESSAGES) == [
        content.message("system", [content.text_part("You are helpful.")]),
        content.message("user", [content.text_part("What is on this picture?"),
                                 content.uri_part("https://example.com/cat.png", "image")]),
        content.message("tool", [content.tool_call_response_part("42", "call_0")]),
    ]
    assert messages(out, sc.OUTPUT_MESSAGES) == [
        content.output_message([content.tool_call_part("lookup", {"order": "A1"}, "call_1")], "tool_call"),
    ]
    assert messages(out, sc.TOOL_DEFINITIONS) == [content.tool_definition("lookup", parameters={})]


def test_openllmetry_legacy_messages_become_genai_json():
    attrs = {name: value for name, value in CASES[6].values[1].items()}
    out = interop.normalise(attrs, name="openai.chat")
    assert messages(out, sc.INPUT_MESSAGES) == [content.message("user", [content.text_part("Where is my order?")])]
    assert messages(out, sc.OUTPUT_MESSAGES) == [
        content.output_message([content.tool_call_part("lookup", {"id": 7}, "call_9")], "tool_call")
    ]
    multipart = interop.normalise({"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": json.dumps(
        [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])})
    assert messages(multipart, sc.INPUT_MESSAGES)[0]["parts"] == [
        content.text_part("see"), content.blob_part("image", "image/png", size=3)]


def _own_spans(spans):
    recorder = Recorder()
    agent = recorder.start("invoke_agent", "helper", parent=ROOT, session_id="s", user_id="u")
    llm = recorder.start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_request(temperature=0.1, max_tokens=50)
    llm.set_input([content.message("user", [content.text_part("price=3, is that right? " * 30)])],
                  system=[content.text_part("be brief")])
    llm.chunk()
    llm.set_usage(40, 10, cache_read=5)
    llm.set_output([content.output_message([content.text_part("yes")], "stop")], finish_reasons=["stop"])
    llm.end()
    tool = recorder.start("execute_tool", "lookup", parent=agent)
    tool.set_input(value={"id": 1})
    tool.set_output(value="ok")
    tool.end()
    retrieval = recorder.start("retrieval", "kb", parent=agent)
    retrieval.set_input(value="q")
    retrieval.set_output(value=[{"id": 1, "score": 0.5, "content": "doc"}])
    retrieval.end()
    agent.set_output(value="done")
    agent.end()
    return spans.get_finished_spans()


def test_own_spans_come_back_unchanged(spans, settings):
    settings()
    finished = _own_spans(spans)
    assert len(finished) == 4
    for span in finished:
        attrs = dict(span.attributes)
        assert interop.normalise(attrs, name=span.name, price=price) == attrs, span.name


def test_content_goes_through_the_policy():
    secret = "my key is sk-proj-abcdefghijklmnopqrstuv1234 ok"
    attrs = {"openinference.span.kind": "LLM", "llm.input_messages.0.message.role": "user",
             "llm.input_messages.0.message.content": secret, "input.value": secret,
             "llm.output_messages.0.message.content": "x" * 5000}
    out = interop.normalise(attrs, policy=ContentPolicy(max_bytes=1000))
    assert "sk-proj" not in out[sc.INPUT_MESSAGES] and "[REDACTED]" in out[sc.INPUT_MESSAGES]
    assert "sk-proj" not in out["llm.input_messages.0.message.content"]  # the original too
    assert "sk-proj" not in out["input.value"]
    assert len(out[sc.OUTPUT_MESSAGES].encode()) <= 1000
    json.loads(out[sc.OUTPUT_MESSAGES])  # capped, still JSON
    assert len(out["llm.output_messages.0.message.content"].encode()) <= 1000

    shouting = ContentPolicy(redactors=(str.upper,))  # e.g. a plugin's redactor
    assert "MY KEY" in interop.normalise(attrs, policy=shouting)[sc.INPUT_MESSAGES]


def test_no_content_drops_content_and_keeps_the_rest():
    out = interop.normalise(OPENINFERENCE_LLM, policy=ContentPolicy(mode=CaptureMode.NO_CONTENT), price=price)
    assert not [k for k in out if k.startswith(("llm.input_messages", "llm.output_messages"))]
    assert sc.INPUT_MESSAGES not in out and sc.OUTPUT_MESSAGES not in out and "input.value" not in out
    assert out[sc.USAGE_INPUT_TOKENS] == 1000 and out[sc.COST_USD] > 0


def test_json_content_stays_json_when_capped():
    big = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "y" * 20000}]}])
    out = interop.normalise({sc.INPUT_MESSAGES: big}, policy=ContentPolicy(max_bytes=2048))
    assert len(out[sc.INPUT_MESSAGES].encode()) <= 2048
    assert json.loads(out[sc.INPUT_MESSAGES])[0]["role"] == "user"


def test_cost_uses_the_price_lookup_and_never_overrides_a_given_cost():
    asked = []

    def lookup(provider, model):
        asked.append((provider, model))
        return ModelPrice(1.0, 2.0) if model == "mine" else None

    attrs = {"gen_ai.system": "acme", "gen_ai.response.model": "mine-v2", "gen_ai.request.model": "mine",
             "gen_ai.usage.prompt_tokens": 1_000_000, "gen_ai.usage.completion_tokens": 1_000_000}
    out = interop.normalise(attrs, price=lookup)
    assert asked == [("acme", "mine-v2"), ("acme", "mine")]
    assert (out[sc.COST_INPUT_USD], out[sc.COST_OUTPUT_USD], out[sc.COST_USD]) == (1.0, 2.0, 3.0)
    assert interop.normalise({**attrs, "llm.cost.total": 9.0}, price=lookup)[sc.COST_USD] == 9.0
    assert sc.COST_USD not in interop.normalise(attrs)  # no lookup, no cost


@pytest.mark.parametrize("attrs", [
    {"llm.input_messages.99999999999999999999.message.role": "user"},
    {"llm.input_messages.0": "flat", "llm.input_messages.0.message.role": "user"},
    {"llm.input_messages.x.y": 1, "llm.output_messages..": None, "retrieval.documents.0.document.score": "high"},
    {"llm.input_messages.².message.content": "superscript", "llm.token_count.prompt": "many"},
    {"openinference.span.kind": 7, "llm.invocation_parameters": "{not json", "llm.token_count.prompt": float("nan")},
    {"gen_ai.prompt.0.content": ["a", "b"], "gen_ai.completion.0.tool_calls.0.name": 5, "span_type": None},
    {"framework": "promptflow", "span_type": "LLM", "inputs": "[1, 2", "output": '{"choices": "no"}'},
    # nested deeper than Python's JSON parser recurses: not JSON to us, never a RecursionError
    {"framework": "promptflow", "span_type": "LLM", "inputs": "[" * 100_000 + "]" * 100_000, "output": "[" * 50_000},
    {"openinference.span.kind": "LLM", "llm.invocation_parameters": "[" * 100_000 + "]" * 100_000},
    {"llm.input_messages" + ".0" * 3000 + ".message.content": "a key deeper than any message"},
    {"framework": "promptflow", "span_type": [], "inputs": "{}"},
    {"gen_ai.latency.time_to_first_token": "soon", "gen_ai.response.time_to_first_chunk": -1},
])
def test_odd_values_never_raise(attrs):
    out = interop.normalise(attrs, name="odd", price=price)
    assert interop.normalise(out, name="odd", price=price) == out


def test_resource_and_events():
    assert interop.normalise_resource({"openinference.project.name": "dify-app"})[sc.SERVICE_NAME] == "dify-app"
    assert interop.normalise_resource({sc.SERVICE_NAME: "svc", "openinference.project.name": "p"})[
        sc.SERVICE_NAME] == "svc"
    assert interop.normalise_resource({sc.SERVICE_NAME: "unknown_service:python", "openinference.project.name": "p"})[
        sc.SERVICE_NAME] == "p"  # the SDK's default name is no name
    event = {"payload": "token sk-proj-abcdefghijklmnopqrstuv1234", "n": 3}
    assert interop.normalise_event("llm.custom", event) == {"payload": "token [REDACTED]", "n": 3}
    none = ContentPolicy(mode=CaptureMode.NO_CONTENT)
    assert interop.normalise_event("promptflow.function.inputs", event) is None  # its span carries it as content
    assert interop.normalise_event(sc.EVENT_INFERENCE_DETAILS, event, none) is None
    assert interop.normalise_event("exception", {"exception.type": "E"}, none) == {"exception.type": "E"}


def test_real_promptflow_spans(spans, monkeypatch):
    monkeypatch.setenv("PF_DISABLE_TRACING", "false")
    from promptflow.tracing import trace

    @trace
    def answer(question: str) -> str:
        return f"echo {question}"

    answer("hi")
    (span,) = spans.get_finished_spans()
    out = interop.normalise(span.attributes, name=span.name)
    assert (out[sc.OPERATION_NAME], out[sc.SPAN_KIND]) == ("chain", "TASK")  # a leaf function
    assert json.loads(out[sc.INPUT_VALUE]) == {"question": "hi"} and out[sc.OUTPUT_VALUE] == "echo hi"
