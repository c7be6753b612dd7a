"""Fail open, bounded state, no leaks, threads, and turning the integration on and off."""

from __future__ import annotations

import contextvars
import itertools
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
from fake_llms import ANSWER, UsageLLM
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import ChatMessage
from opentelemetry import trace

import llmobs
import llmobs_llamaindex
from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_llamaindex import components, translate
from llmobs_llamaindex.handlers import EventHandler, SpanHandler
from llmobs_llamaindex.streams import Streams


def tracker():
    return llmobs_llamaindex._installed[0].tracker


def ours(handlers) -> list:
    return [h for h in handlers if isinstance(h, SpanHandler | EventHandler)]


@pytest.mark.usefixtures("instrumented")
def test_a_bug_in_the_integration_is_counted_never_raised(index, spans, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(components, "describe", broken)
    assert str(index.as_query_engine(llm=UsageLLM()).query("topic 1")) == ANSWER
    assert selfstats.snapshot()["llamaindex.handler_failed"] >= 5
    assert spans.all() == []
    assert tracker()._ids == {}


@pytest.mark.usefixtures("instrumented")
def test_a_bug_while_a_stream_ends_still_ends_its_spans(index, spans, monkeypatch):
    monkeypatch.setattr(translate, "usage_of", lambda response: 1 / 0)
    response = index.as_query_engine(llm=UsageLLM(), streaming=True).query("topic 1")
    assert "".join(response.response_gen) == ANSWER
    assert selfstats.snapshot()["llamaindex.handler_failed"] == 1
    tracker().sweep()  # the stream is exhausted: the sweeper ends what the failed end event did not
    assert {s.name for s in spans.all()} >= {"RetrieverQueryEngine.query", "text_completion fake-gpt"}
    assert tracker()._ids == {} and tracker()._deferred == {}


def test_instrument_is_idempotent_and_uninstrument_removes_everything(index, spans):
    dispatcher = get_dispatcher()
    try:
        assert llmobs_llamaindex.instrument() and llmobs_llamaindex.instrument()
        assert llmobs_llamaindex.is_instrumented()
        assert len(ours(dispatcher.span_handlers)) == len(ours(dispatcher.event_handlers)) == 1
        index.as_query_engine(llm=UsageLLM()).query("topic 1")
        assert len(spans.all()) == 5
    finally:
        llmobs_llamaindex.uninstrument()
        llmobs_llamaindex.uninstrument()
    assert not llmobs_llamaindex.is_instrumented()
    assert ours(dispatcher.span_handlers) == ours(dispatcher.event_handlers) == []
    spans.clear()
    index.as_query_engine(llm=UsageLLM()).query("topic 1")
    assert spans.all() == []


def test_uninstrument_ends_open_streams_as_cancelled(spans):
    llmobs_llamaindex.instrument()
    stream = UsageLLM().stream_complete("hi")
    next(stream)
    llmobs_llamaindex.uninstrument()
    (llm,) = spans.all()
    assert llm.attributes[sc.STATUS_REASON] == "uninstrumented"
    list(stream)  # the application keeps reading; nothing breaks


def test_disabled_in_settings(index, spans, settings):
    settings(disabled_integrations=("llamaindex",))
    assert llmobs_llamaindex.instrument() is False
    assert not llmobs_llamaindex.is_instrumented()


def test_disabling_at_run_time_stops_new_traces(index, spans, settings):
    llmobs_llamaindex.instrument()
    try:
        settings(disabled_integrations=("llamaindex",))
        index.as_query_engine(llm=UsageLLM()).query("topic 1")
        assert spans.all() == []
    finally:
        llmobs_llamaindex.uninstrument()


def test_state_is_bounded(index, spans):
    llmobs_llamaindex.instrument(max_spans=3)
    try:
        for _ in range(3):
            assert str(index.as_query_engine(llm=UsageLLM()).query("topic 1")) == ANSWER
        assert selfstats.snapshot()["llamaindex.evicted_spans"] > 0
        assert len(tracker()._ids) <= 3
        assert all(s.end_time for s in spans.all())
    finally:
        llmobs_llamaindex.uninstrument()


def test_state_is_bounded_while_streams_are_open(spans):
    """Ids of nested calls on a run's own component (aliases) count towards the bound too."""
    llmobs_llamaindex.instrument(max_spans=3)
    try:
        streams = []
        for _ in range(4):
            stream = UsageLLM().stream_chat([ChatMessage(role="user", content="hi")])
            next(stream)
            streams.append(stream)
            assert len(tracker()._ids) <= 3
        assert selfstats.snapshot()["llamaindex.evicted_spans"] >= 3
        evicted = [s for s in spans.all() if s.attributes.get(sc.STATUS_REASON) == "evicted"]
        assert len(evicted) == 3 and all(s.end_time for s in evicted)
        assert ["".join(r.delta for r in rest) for rest in streams]  # the application reads on unharmed
    finally:
        llmobs_llamaindex.uninstrument()


def test_a_stale_stream_frame_id_does_not_block_a_new_stream():
    """A finished stream's frame id can be reused by a new generator while its run awaits the sweeper."""

    def gen():
        yield 1

    streams, old_run, new_run = Streams(), object(), object()
    finished_stream = gen()
    list(finished_stream)
    live = gen()
    key = id(live.gi_frame)
    streams._frames[key] = (weakref.ref(finished_stream), old_run)  # what the old run left under this address
    assert streams.register(live, new_run) == key
    streams.forget(key, old_run)  # the old run ending must not drop the new run's entry
    assert streams._frames[key][1] is new_run
    assert streams.register(live, old_run) is None  # a live registration stands: the innermost producer wins
    streams.forget(key, new_run)
    assert not streams


@pytest.mark.usefixtures("instrumented")
def test_nothing_is_left_behind(index, spans):
    engine = index.as_query_engine(llm=UsageLLM())
    streaming = index.as_query_engine(llm=UsageLLM(), streaming=True)
    for i in range(20):
        engine.query(f"topic {i}")
        "".join(streaming.query(f"topic {i}").response_gen)
    state = tracker()
    assert state._ids == {} and state._deferred == {} and not state._streams
    assert len(spans.all()) == 20 * 10
    assert not trace.get_current_span().get_span_context().is_valid


@pytest.mark.usefixtures("instrumented")
def test_threads_each_get_their_own_trace(index, spans):
    engine = index.as_query_engine(llm=UsageLLM())
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: str(engine.query(f"topic {i}")), range(8)))
    assert answers == [ANSWER] * 8
    traces = spans.traces()
    assert len(traces) == 8 and all(len(members) == 5 for members in traces.values())
    for members in traces.values():
        (root,) = [s for s in members if s.parent is None]
        assert root.name == "RetrieverQueryEngine.query"


@pytest.mark.usefixtures("instrumented")
def test_work_handed_to_a_thread_with_its_context_stays_in_the_trace(index, spans):
    engine = index.as_query_engine(llm=UsageLLM())
    with llmobs.span("request") as outer, ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, engine.query, f"topic {i}") for i in range(2)]
        [f.result() for f in futures]
    assert {s.context.trace_id for s in spans.all()} == {outer.span.get_span_context().trace_id}
    assert [s.name for s in spans.children(spans.one("request"))] == ["RetrieverQueryEngine.query"] * 2


def test_endless_iterators_where_lists_belong_are_not_read():
    """A message built without validation whose blocks, tool calls or cited content are endless generators (a
    broken or hostile model's): read, they would never finish nor stop growing."""
    from llama_index.core.base.llms.types import CitableBlock, TextBlock

    def endless(make):
        return (make() for _ in itertools.count())

    message = ChatMessage.model_construct(role="assistant", content="hi", blocks=endless(lambda: TextBlock(text="x")),
                                          additional_kwargs={"tool_calls": endless(dict)})
    assert translate.has_tool_calls(message) is False
    assert translate.output_message(message, "stop")["parts"] == []
    cited = ChatMessage.model_construct(role="assistant", additional_kwargs={}, blocks=[
        CitableBlock.model_construct(content=endless(lambda: TextBlock(text="x")), title="t", source="s")])
    assert translate.output_message(cited, "stop")["parts"] == [{"type": "text", "content": ""}]
    assert translate.documents(endless(dict)) == []
