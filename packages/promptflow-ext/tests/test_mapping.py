"""The translation alone, on attribute sets shaped like Promptflow's, for what a loopback run cannot show:
tiktoken estimates (they need a network download), streamed tool calls, devkit context attributes."""

from __future__ import annotations

import json

import pytest

from llmobs import promptflow_mapping as mapping
from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.promptflow_mapping import translate


def pf(span_type: str, inputs: dict, output=None, **extra) -> dict:
    """Attributes as Promptflow writes them: JSON with indent=2, payloads as strings."""
    attributes = {"framework": "promptflow", "span_type": span_type, "function": "openai.resources.Completions.create",
                  "inputs": json.dumps(inputs, indent=2), **extra}  # fmt: skip
    if output is not None:
        attributes["output"] = json.dumps(output, indent=2)
    return attributes


def chunk(delta=None, finish=None, **fields) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {"id": "c-1", "model": "m-0601", "choices": [choice], **fields}


def test_promptflows_stream_token_counts_are_flagged_as_estimates():
    attributes = pf("LLM", {"model": "m", "messages": [], "stream": True}, [chunk({"content": "hi"}, "stop")],
                    output_type="iterated", **{"llm.usage.prompt_tokens": 9, "llm.usage.completion_tokens": 1,
                                                 "llm.usage.total_tokens": 10})  # fmt: skip
    t = translate("openai_chat", attributes)
    assert t.usage == (9, 1, None, None, None, 10)
    assert t.attributes[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_ESTIMATE


def test_reported_usage_wins_with_cache_and_reasoning_details():
    usage = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
             "prompt_tokens_details": {"cached_tokens": 8},
             "completion_tokens_details": {"reasoning_tokens": 3}}  # fmt: skip
    attributes = pf("LLM", {"model": "m", "messages": []}, {"id": "r", "choices": [], "usage": usage},
                    **{"llm.usage.prompt_tokens": 20, "llm.usage.completion_tokens": 5})  # fmt: skip
    t = translate("openai_chat", attributes)
    assert t.usage == (20, 5, 8, None, 3, 25) and sc.USAGE_SOURCE not in t.attributes


def test_streamed_tool_calls_are_reassembled():
    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Faro"}'}}]}),
        chunk({}, "tool_calls"),
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    t = translate("openai_chat", pf("LLM", {"model": "m", "messages": [], "tools": tools, "stream": True}, chunks))
    assert t.attributes[sc.RESPONSE_FINISH_REASONS] == ["tool_calls"]
    content = {attribute: value for attribute, value, _ in t.content}
    (message,) = content[sc.OUTPUT_MESSAGES]
    assert message["parts"] == [
        {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Faro"}}
    ]
    assert message["finish_reason"] == "tool_call"
    assert content[sc.TOOL_DEFINITIONS][0]["name"] == "get_weather"


def test_a_completion_stream():
    chunks = [{"id": "c", "choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in ("Once", " more")]
    chunks.append({"id": "c", "choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    t = translate("openai_completion", pf("LLM", {"model": "m", "prompt": ["a", "b"], "stream": True}, chunks))
    content = {attribute: value for attribute, value, _ in t.content}
    assert t.operation == sc.OP_TEXT_COMPLETION and t.name == "text_completion m"
    assert [m["parts"][0]["content"] for m in content[sc.INPUT_MESSAGES]] == ["a", "b"]
    assert content[sc.OUTPUT_MESSAGES][0]["parts"][0]["content"] == "Once more"
    assert content[sc.OUTPUT_MESSAGES][0]["finish_reason"] == "length"


def test_context_attributes_and_prompt_templates():
    attributes = pf("Function", {"q": 1}, "done", session_id="s-1", line_run_id="run-7", node_name="answer",
                    **{"prompt.template": "Hi {{name}}", "prompt.variables": '{"name": "Ana"}',
                       "__computed__.cumulative_token_count.total": 12})  # fmt: skip
    t = translate("answer", attributes)
    assert t.attributes[sc.SESSION_ID] == t.attributes[sc.CONVERSATION_ID] == "s-1"
    assert t.attributes["line_run_id"] == "run-7" and t.attributes["node_name"] == "answer"
    assert not [k for k in t.attributes if k.startswith("__computed__") or k in ("inputs", "output", "span_type")]
    assert {a for a, _, _ in t.content} == {sc.INPUT_VALUE, sc.OUTPUT_VALUE, "prompt.template", "prompt.variables"}


def test_a_langchain_span_is_a_step_and_no_capture_parses_nothing(monkeypatch):
    parsed = []
    monkeypatch.setattr(mapping, "parse", lambda text: parsed.append(text) or text)
    t = translate("RunnableSequence", pf("LangChain", {"x": 1}, {"y": 2}), has_children=True, capture=False)
    assert (t.operation, t.kind, t.content) == (sc.OP_CHAIN, sc.KIND_CHAIN, [])
    assert parsed == []


def test_interrupts_are_cancellations_and_unknown_failures_are_other():
    interrupted = translate("f", pf("Function", {}), failed=True, exception_type="KeyboardInterrupt")
    assert interrupted.cancelled and interrupted.error_type is None
    unknown = translate("f", pf("Function", {}), failed=True)
    assert unknown.error_type == sc.ERROR_TYPE_OTHER
    typed = translate("f", pf("Function", {}), failed=True, exception_type="openai.APITimeoutError")
    assert typed.error_type == "APITimeoutError"


def test_huge_payloads_are_not_parsed(monkeypatch):
    selfstats.reset()
    monkeypatch.setattr(mapping, "MAX_PARSED_CHARS", 100)
    text = json.dumps({"document": "x" * 500})
    t = translate("f", {"span_type": "Function", "inputs": text})
    assert t.content == [(sc.INPUT_VALUE, text, False)]
    assert selfstats.snapshot()["promptflow.payload_not_parsed"] == 1


def test_malformed_payloads_do_not_break_translation():
    t = translate("openai_chat", {"span_type": "LLM", "inputs": "{not json", "output": "[1, 2"})
    assert (t.operation, t.model, t.name) == (sc.OP_CHAT, None, "openai_chat")
    assert t.attributes[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_NONE


@pytest.mark.parametrize("odd", [True, 1.5, "text", {"0": {}}])
def test_any_json_value_where_a_list_belongs_is_skipped(odd):
    """Recorded outputs are whatever the function returned: ``choices`` or a delta's ``tool_calls`` may hold any
    JSON value; the rest of the answer is still read."""
    reply = translate("openai_chat", pf("LLM", {"model": "m", "messages": []}, {"id": "r-1", "choices": odd}))
    assert reply.attributes[sc.RESPONSE_ID] == "r-1" and sc.RESPONSE_FINISH_REASONS not in reply.attributes
    chunks = [chunk({"content": "hi"}), {"id": "c-1", "choices": odd}, chunk({"tool_calls": odd}, "stop")]
    streamed = translate("openai_chat", pf("LLM", {"model": "m", "messages": [], "stream": True}, chunks))
    assert streamed.attributes[sc.RESPONSE_FINISH_REASONS] == ["stop"]
    (message,) = {attribute: value for attribute, value, _ in streamed.content}[sc.OUTPUT_MESSAGES]
    assert message["parts"] == [{"type": "text", "content": "hi"}]


def test_a_streamed_legacy_function_call_is_reassembled():
    chunks = [
        chunk({"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ""}}),
        chunk({"function_call": {"arguments": '{"city": '}}),
        chunk({"function_call": {"arguments": '"Faro"}'}}),
        chunk({}, "function_call"),
    ]
    functions = [{"name": "get_weather", "parameters": {"type": "object"}}]
    t = translate("openai_chat", pf("LLM", {"model": "m", "messages": [], "functions": functions, "stream": True},
                                    chunks))  # fmt: skip
    (message,) = {attribute: value for attribute, value, _ in t.content}[sc.OUTPUT_MESSAGES]
    assert message["parts"] == [{"type": "tool_call", "name": "get_weather", "arguments": {"city": "Faro"}}]


def test_a_prompt_given_as_token_ids_is_one_prompt():
    t = translate("openai_completion", pf("LLM", {"model": "m", "prompt": [9906, 1917, 0]}))
    (message,) = {attribute: value for attribute, value, _ in t.content}[sc.INPUT_MESSAGES]
    assert message["parts"] == [{"type": "text", "content": "[9906, 1917, 0]"}]


def test_embedding_dimensions_come_from_the_request_or_float_vectors_not_base64_text():
    def dimensions(inputs: dict, vectors: str) -> int | None:
        t = translate("openai_embeddings", {**pf("Embedding", inputs), "embedding.embeddings": vectors})
        return t.attributes.get(sc.EMBEDDINGS_DIMENSION_COUNT)

    assert dimensions({"model": "e", "input": ["a"]}, '[{"embedding.vector": "<8 dimensional vector>"}]') == 8
    # Promptflow measures a base64 vector as its text: 44 characters for 8 float32 values
    b64 = '[{"embedding.vector": "<44 dimensional vector>"}]'
    assert dimensions({"model": "e", "input": ["a"], "encoding_format": "base64"}, b64) is None
    assert dimensions({"model": "e", "input": ["a"], "encoding_format": "base64", "dimensions": 8}, b64) == 8
