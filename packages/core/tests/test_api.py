"""Custom spans: ``with llmobs.span(...)`` and ``@llmobs.trace`` on the application's global providers."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import llmobs
from llmobs import semconv as sc


def by_name(spans):
    return {s.name: s for s in spans.get_finished_spans()}


def test_span_block_parents_nested_and_framework_spans(spans, settings):
    settings()
    with llmobs.span("handle-request", session_id="s-42", input={"q": "hi"}) as outer:
        with llmobs.span("lookup", sc.OP_RETRIEVAL):
            pass
        llm = llmobs.get_recorder().start(sc.OP_CHAT, model="gpt-4o", provider="openai")  # ambient parent
        llm.end()
        outer.set_output(value="done")
    assert trace.get_current_span() is trace.INVALID_SPAN
    got = by_name(spans)
    root = got["handle-request"]
    assert got["retrieval lookup"].parent.span_id == root.context.span_id
    assert got["chat gpt-4o"].parent.span_id == root.context.span_id
    assert got["chat gpt-4o"].attributes[sc.SESSION_ID] == "s-42"  # inherited through the ambient span
    assert json.loads(root.attributes[sc.INPUT_VALUE]) == {"q": "hi"}
    assert root.attributes[sc.OUTPUT_VALUE] == "done"


def test_span_block_error_propagates_and_is_recorded(spans, settings):
    settings()
    with pytest.raises(KeyError), llmobs.span("fails"):
        raise KeyError("missing")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == "KeyError"


def test_trace_decorator_sync_and_async(spans, settings):
    settings()

    @llmobs.trace()
    def add(a, b=2):
        return a + b

    @llmobs.trace("fetch", operation=sc.OP_EXECUTE_TOOL)
    async def fetch(url):
        await asyncio.sleep(0)
        return {"url": url, "ok": True}

    assert add(1) == 3
    assert asyncio.run(fetch("https://example.com")) == {"url": "https://example.com", "ok": True}
    got = by_name(spans)
    traced_add = got["test_trace_decorator_sync_and_async.<locals>.add"]
    assert json.loads(traced_add.attributes[sc.INPUT_VALUE]) == {"a": 1}
    assert traced_add.attributes[sc.OUTPUT_VALUE] == "3"
    tool = got["execute_tool fetch"]
    assert json.loads(tool.attributes[sc.TOOL_CALL_RESULT]) == {"url": "https://example.com", "ok": True}
    assert tool.attributes[sc.SPAN_KIND] == "TOOL"


def test_a_keyboard_interrupt_ends_the_span_as_interrupted_not_as_an_error(spans, settings):
    settings()
    with pytest.raises(KeyboardInterrupt), llmobs.span("interactive"):
        raise KeyboardInterrupt
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET and sc.ERROR_TYPE not in span.attributes
    assert span.attributes[sc.STATUS_REASON] == "interrupted"


def test_cancellation_is_not_an_error(spans, settings):
    settings()

    async def slow():
        with llmobs.span("slow"):
            await asyncio.sleep(10)

    async def main():
        task = asyncio.create_task(slow())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.STATUS_REASON] == "interrupted"
