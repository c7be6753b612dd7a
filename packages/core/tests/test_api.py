"""Custom spans: ``with llmobs.span(...)`` and ``@llmobs.trace`` on the application's global providers."""

from __future__ import annotations

import asyncio
import functools
import gc
import json

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import llmobs
from llmobs import semconv as sc
from llmobs.recorder import INTERRUPTS


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
    assert span.attributes[sc.STATUS_REASON] == "cancelled"


def test_trace_decorator_generator_spans_its_iteration_and_records_its_error(spans, settings):
    settings()

    @llmobs.trace()
    def numbers(n):
        for i in range(n):
            with llmobs.span(f"step-{i}"):
                pass
            yield i
        raise ValueError("after the last item")

    gen = numbers(2)
    assert spans.get_finished_spans() == ()  # nothing ran yet
    assert next(gen) == 0
    with llmobs.span("consumer"):  # the consumer's work between items is not the generator's child
        pass
    assert next(gen) == 1
    with pytest.raises(ValueError):
        next(gen)
    got = by_name(spans)
    traced = got["test_trace_decorator_generator_spans_its_iteration_and_records_its_error.<locals>.numbers"]
    assert got["step-0"].parent.span_id == got["step-1"].parent.span_id == traced.context.span_id
    assert got["consumer"].parent is None
    assert traced.end_time >= got["step-1"].end_time
    assert traced.status.status_code is StatusCode.ERROR and traced.attributes[sc.ERROR_TYPE] == "ValueError"
    assert json.loads(traced.attributes[sc.INPUT_VALUE]) == {"n": 2}
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_trace_decorator_generator_return_value_values_sent_and_thrown(spans, settings):
    settings()

    @llmobs.trace("echo")
    def echo():
        received = []
        try:
            while True:
                received.append((yield len(received)))
        except KeyError:
            return received

    gen = echo()
    assert next(gen) == 0 and gen.send("a") == 1
    with pytest.raises(StopIteration) as stop:
        gen.throw(KeyError("done"))
    assert stop.value.value == ["a"]
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET and json.loads(span.attributes[sc.OUTPUT_VALUE]) == ["a"]


def test_a_generator_closed_or_collected_early_ends_its_span_once_as_cancelled(spans, settings):
    settings()
    cleaned = []

    @llmobs.trace("endless")
    def endless():
        try:
            while True:
                yield 1
        finally:
            cleaned.append(True)

    closed = endless()
    next(closed)
    closed.close()
    closed.close()
    collected = endless()
    next(collected)
    del collected
    gc.collect()
    finished = spans.get_finished_spans()
    assert len(finished) == 2 and cleaned == [True, True]
    for span in finished:
        assert span.status.status_code is StatusCode.UNSET and sc.ERROR_TYPE not in span.attributes
        assert span.attributes[sc.STATUS_REASON] == "cancelled"


def test_trace_decorator_async_generator_spans_its_iteration(spans, settings):
    settings()

    @llmobs.trace("stream")
    async def stream(n):
        for i in range(n):
            await asyncio.sleep(0)
            with llmobs.span(f"chunk-{i}"):
                pass
            yield i
        raise ValueError("cut")

    async def consume():
        items = []
        with pytest.raises(ValueError):
            async for item in stream(2):
                items.append(item)
        async for _ in stream(5):  # left early: closed by the event loop
            break
        return items

    assert asyncio.run(consume()) == [0, 1]
    finished = [s for s in spans.get_finished_spans() if s.name == "stream"]
    failed, left = sorted(finished, key=lambda s: s.status.status_code is StatusCode.UNSET)
    chunks = [s for s in spans.get_finished_spans() if s.name.startswith("chunk-")]
    assert {c.parent.span_id for c in chunks[:2]} == {failed.context.span_id}
    assert failed.attributes[sc.ERROR_TYPE] == "ValueError" and failed.end_time >= chunks[1].end_time
    assert left.attributes[sc.STATUS_REASON] == "cancelled" and sc.ERROR_TYPE not in left.attributes


def test_span_as_decorator_covers_the_await_of_a_coroutine(spans, settings):
    settings()

    @llmobs.span("handler", session_id="s-1")
    async def handler():
        await asyncio.sleep(0)
        with llmobs.span("inner"):
            pass
        raise KeyError("missing")

    with pytest.raises(KeyError):
        asyncio.run(handler())
    got = by_name(spans)
    assert got["inner"].parent.span_id == got["handler"].context.span_id
    assert got["handler"].end_time >= got["inner"].end_time
    assert got["handler"].attributes[sc.ERROR_TYPE] == "KeyError"
    assert got["inner"].attributes[sc.SESSION_ID] == "s-1"


def test_trace_decorates_partials_callable_objects_and_builtins_without_raising(spans, settings):
    settings()

    def add(a, b):
        return a + b

    class Tool:
        def __call__(self, query):
            return query.upper()

    class AsyncTool:
        async def __call__(self, query):
            await asyncio.sleep(0)
            return query

    assert llmobs.trace()(functools.partial(add, 1))(2) == 3
    assert llmobs.trace()(Tool())(query="q") == "Q"
    assert llmobs.trace("largest")(max)([3, 5]) == 5
    assert asyncio.run(llmobs.trace("async-tool")(AsyncTool())("q")) == "q"
    got = {name.rpartition(".")[2]: span for name, span in by_name(spans).items()}
    assert json.loads(got["add"].attributes[sc.INPUT_VALUE]) == {"b": 2}  # named after the wrapped function
    assert json.loads(got["Tool"].attributes[sc.INPUT_VALUE]) == {"query": "q"}  # and after an object's class
    assert json.loads(got["largest"].attributes[sc.INPUT_VALUE]) == {"args": [[3, 5]], "kwargs": {}}
    assert got["async-tool"].attributes[sc.OUTPUT_VALUE] == "q"


def test_bare_trace_decorator_traces_like_the_called_form(spans, settings):
    settings()

    @llmobs.trace
    def add(a, b=2):
        return a + b

    @llmobs.trace
    async def fetch(url):
        await asyncio.sleep(0)
        return url

    @llmobs.trace
    def count(n):
        yield from range(n)

    assert add(1) == 3
    assert asyncio.run(fetch("u")) == "u"
    assert list(count(2)) == [0, 1]
    got = {name.rpartition(".")[2]: span for name, span in by_name(spans).items()}
    assert json.loads(got["add"].attributes[sc.INPUT_VALUE]) == {"a": 1}
    assert got["add"].attributes[sc.OUTPUT_VALUE] == "3"
    assert got["fetch"].attributes[sc.OUTPUT_VALUE] == "u"
    assert set(got) == {"add", "fetch", "count"}


def test_interrupts_is_the_one_public_tuple_of_exceptions_that_end_a_span_as_cancelled():
    assert (GeneratorExit, KeyboardInterrupt, asyncio.CancelledError) == INTERRUPTS


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_every_interrupt_ends_a_custom_span_as_cancelled(spans, settings, interrupt):
    settings()
    with pytest.raises(interrupt), llmobs.span("interrupted"):
        raise interrupt
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET and sc.ERROR_TYPE not in span.attributes
    assert span.attributes[sc.STATUS_REASON] == "cancelled"
