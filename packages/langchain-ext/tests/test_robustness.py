"""Fail-open and bounded: a handler bug never reaches the application (and is counted), the runs table is
capped and emptied, and runs whose end never comes are swept and ended as timed out."""

from __future__ import annotations

import inspect
import itertools
import time
import uuid
from types import SimpleNamespace

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from opentelemetry.trace import StatusCode

from llmobs import selfstats
from llmobs import semconv as sc
from llmobs_langchain import LLMObsCallbackHandler, handler, models, translate
from llmobs_langchain.runs import RUNS, RunRegistry


@pytest.fixture
def chain(scripted, reply):
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | scripted(reply("fine", usage=(2, 1)), repeat=True, model="m") | StrOutputParser()


class _BrokenId:
    """A run id whose every use fails: each callback reaches it first thing."""

    @property
    def int(self) -> int:
        raise RuntimeError("handler bug")


CALLBACKS = sorted(name for name in vars(LLMObsCallbackHandler) if name.startswith("on_"))


def test_every_callback_keeps_langchain_signature():
    assert len(CALLBACKS) >= 17
    for name in CALLBACKS:
        base = getattr(BaseCallbackHandler, name)  # LangChain calls them by its own signature
        method = getattr(LLMObsCallbackHandler, name)
        assert list(inspect.signature(base).parameters)[:2] == list(inspect.signature(method).parameters)[:2]


@pytest.mark.parametrize("name", CALLBACKS)
def test_every_callback_swallows_and_counts_its_own_failure(name):
    params = list(inspect.signature(getattr(BaseCallbackHandler, name)).parameters.values())[1:]
    args = [None for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    broken = _BrokenId()
    getattr(LLMObsCallbackHandler(), name)(*args, run_id=broken, parent_run_id=broken)
    assert selfstats.snapshot() == {f"langchain.{name}_failed": 1}


@pytest.mark.parametrize(
    ("module", "function"),
    [(translate, "compact"), (models, "usage"), (models, "provider"), (translate, "input_messages")],
)
def test_a_bug_in_the_handler_never_reaches_the_application(monkeypatch, chain, module, function):
    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    monkeypatch.setattr(module, function, broken)
    assert chain.invoke({"question": "q"}, config={"callbacks": [LLMObsCallbackHandler()]}) == "fine"
    assert "".join(chain.stream({"question": "q"}, config={"callbacks": [LLMObsCallbackHandler()]})) == "fine"
    failures = {k: v for k, v in selfstats.snapshot().items() if k.startswith("langchain.")}
    assert failures and all(k.endswith("_failed") for k in failures)


def test_a_broken_recorder_never_reaches_the_application(monkeypatch, chain, recorded):
    def broken():
        raise MemoryError("no recorder")

    monkeypatch.setattr(handler, "get_recorder", broken)
    assert chain.invoke({"question": "q"}, config={"callbacks": [LLMObsCallbackHandler()]}) == "fine"
    assert selfstats.snapshot()["langchain.on_chain_start_failed"] == 3  # sequence, prompt, parser
    assert recorded.all() == []


def test_runs_table_is_empty_after_successes_errors_and_cancellations(chain):
    config = {"callbacks": [LLMObsCallbackHandler()]}
    failing = RunnableLambda(lambda _: 1 / 0, name="divide")
    for _ in range(50):
        chain.invoke({"question": "q"}, config=config)
        with pytest.raises(ZeroDivisionError):
            (chain | failing).invoke({"question": "q"}, config=config)
        stream = chain.stream({"question": "q"}, config=config)
        next(stream)
        stream.close()
    assert len(RUNS) == 0


def test_abandoned_runs_are_swept_as_timed_out(chain, recorded):
    runs = RunRegistry(stale_after_s=0.05)
    stream = chain.stream({"question": "q"}, config={"callbacks": [LLMObsCallbackHandler(registry=runs)]})
    next(stream)  # the application stops reading and keeps the generator: nothing ends the runs
    assert len(runs) == 3  # the sequence, the model and the parser, mid-stream
    assert runs.sweep() == 0  # fresh runs are not stale
    time.sleep(0.1)
    assert runs.sweep() == 3
    assert len(runs) == 0
    swept = [s for s in recorded.all() if s.name != "ChatPromptTemplate"]
    assert sorted(s.name for s in swept) == ["RunnableSequence", "StrOutputParser", "chat m"]
    for span in swept:
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes[sc.STATUS_REASON] == "timeout"
    assert selfstats.snapshot()["langchain.runs_timed_out"] == 3
    stream.close()  # the late end callbacks find nothing and do nothing
    assert selfstats.snapshot().keys() == {"langchain.runs_timed_out"}


def test_a_parent_waiting_on_a_live_child_is_not_stale(recorded):
    runs = RunRegistry(stale_after_s=0.05)
    config = {"callbacks": [LLMObsCallbackHandler(registry=runs)]}

    def slow_child(x):
        time.sleep(0.12)
        return x

    def parent(x):
        swept.append(runs.sweep())  # the parent is old by now, but its child is running
        return RunnableLambda(slow_child, name="child").invoke(x)

    swept: list[int] = []
    RunnableLambda(parent, name="parent").invoke(1, config=config)
    time.sleep(0.01)
    assert swept == [0]
    assert {s.name: s.attributes.get(sc.STATUS_REASON) for s in recorded.all()} == {"parent": None, "child": None}


def test_a_run_that_only_dispatches_events_is_alive(recorded):
    from langchain_core.callbacks import dispatch_custom_event

    runs = RunRegistry(stale_after_s=0.05)
    config = {"callbacks": [LLMObsCallbackHandler(registry=runs)]}
    swept: list[int] = []

    def busy(x):  # no child runs: only its events say that it is still working
        for step in range(4):
            time.sleep(0.03)
            dispatch_custom_event("progress", {"step": step})
            swept.append(runs.sweep())
        return x

    RunnableLambda(busy, name="busy").invoke(1, config=config)
    assert swept == [0, 0, 0, 0]
    span = recorded.one("busy")
    assert sc.STATUS_REASON not in span.attributes
    assert [e.name for e in span.events] == ["progress"] * 4


def test_sweeps_happen_on_their_own_as_runs_start(recorded):
    runs = RunRegistry(stale_after_s=0.02)
    config = {"callbacks": [LLMObsCallbackHandler(registry=runs)]}
    abandoned = RunnableLambda(lambda x: iter([x, x]), name="gen").stream(1, config=config)
    next(abandoned)
    time.sleep(0.06)
    RunnableLambda(lambda x: x, name="later").invoke(1, config=config)
    assert recorded.one("gen").attributes[sc.STATUS_REASON] == "timeout"
    abandoned.close()


def test_the_table_is_capped_by_ending_the_oldest_run(recorded):
    runs = RunRegistry(max_runs=2)
    config = {"callbacks": [LLMObsCallbackHandler(registry=runs)]}
    streams = [RunnableLambda(lambda x: iter([x, x]), name=f"gen{i}").stream(i, config=config) for i in range(4)]
    for stream in streams:
        next(stream)
    assert len(runs) == 2
    assert [s.name for s in recorded.all()] == ["gen0", "gen1"]
    assert all(s.attributes[sc.STATUS_REASON] == "evicted" for s in recorded.all())
    assert selfstats.snapshot()["langchain.runs_evicted"] == 2
    for stream in streams:
        stream.close()
    assert len(runs) == 0


@pytest.mark.parametrize("endless", [lambda: itertools.count(), lambda: (i for i in itertools.count())])
def test_endless_iterators_where_lists_belong_are_not_read(endless, recorded):
    """LangChain passes lists; an endless iterator in their place (prompts, message batches, generations,
    documents, tags, a streamed chunk's content) is skipped, not read until memory runs out or forever, and
    every run still ends."""
    h = LLMObsCallbackHandler()
    llm, chat, retriever, streamed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    h.on_llm_start({"name": "llm"}, endless(), run_id=llm, tags=endless())
    h.on_llm_end(SimpleNamespace(generations=endless(), llm_output=None), run_id=llm)
    h.on_chat_model_start({"name": "chat"}, [endless()], run_id=chat)
    h.on_llm_end(SimpleNamespace(generations=[endless()], llm_output=None), run_id=chat)
    h.on_retriever_start({"name": "retriever"}, "query", run_id=retriever)
    h.on_retriever_end(endless(), run_id=retriever)
    h.on_chat_model_start({"name": "chat"}, [[]], run_id=streamed)
    chunk = SimpleNamespace(message=SimpleNamespace(content=endless(), tool_call_chunks=None, additional_kwargs={}))
    h.on_llm_new_token("", chunk=chunk, run_id=streamed)
    h.on_llm_end(SimpleNamespace(generations=[], llm_output=None), run_id=streamed)
    assert len(recorded.all()) == 4 and len(RUNS) == 0


def test_endless_tool_calls_on_a_model_reply_are_not_read(recorded):
    """A reply built without validation whose tool calls are an endless generator of well-formed calls: read,
    it would grow the span's content until memory ran out."""
    h, run_id = LLMObsCallbackHandler(), uuid.uuid4()
    calls = ({"name": "lookup", "args": {}, "id": str(i)} for i in itertools.count())
    message = AIMessage.model_construct(content="answer", tool_calls=calls, invalid_tool_calls=[],
                                        additional_kwargs={}, response_metadata={}, usage_metadata=None, id=None)
    h.on_chat_model_start({"name": "chat"}, [[]], run_id=run_id)
    h.on_llm_end(LLMResult(generations=[[ChatGeneration.model_construct(message=message, text="answer")]]),
                 run_id=run_id)
    (span,) = recorded.all()
    assert "answer" in span.attributes[sc.OUTPUT_MESSAGES] and "lookup" not in span.attributes[sc.OUTPUT_MESSAGES]


def test_hostile_values_in_events_reach_the_span_as_bounded_text(recorded):
    """A retry's attempt number or an agent's tool name that is a huge sequence is not handed to the SDK,
    whose attribute cleaning would walk every element (10**12 of them here)."""
    h = LLMObsCallbackHandler()
    run = uuid.uuid4()
    h.on_chain_start({"name": "agent"}, {}, run_id=run)
    h.on_retry(SimpleNamespace(attempt_number=range(10**12), outcome=None), run_id=run)
    h.on_agent_action(SimpleNamespace(tool=[["x" * 1_000_000] * 1000], tool_input=None), run_id=run)
    h.on_chain_end({}, run_id=run)
    (span,) = recorded.all()
    retry, action = span.events
    assert retry.attributes[sc.RETRY_ATTEMPT] == "range(0, 1000000000000)"
    assert len(action.attributes[sc.TOOL_NAME][0]) < 50_000


def test_a_keyboard_interrupt_cancels_the_run_it_stops(recorded):
    def stop(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RunnableLambda(stop, name="stop").invoke(1, config={"callbacks": [LLMObsCallbackHandler()]})
    span = recorded.one("stop")
    assert span.status.status_code is StatusCode.UNSET and sc.ERROR_TYPE not in span.attributes
    assert span.attributes[sc.STATUS_REASON] == "cancelled"


def test_a_failed_retry_is_an_event_with_its_attempt_and_error_type(recorded):
    h = LLMObsCallbackHandler()
    run = uuid.uuid4()
    h.on_chain_start({"name": "flaky"}, {}, run_id=run, name="flaky")
    failed = SimpleNamespace(failed=True, exception=lambda: TimeoutError("slow upstream"))
    h.on_retry(SimpleNamespace(attempt_number=2, outcome=failed), run_id=run)
    h.on_chain_end({}, run_id=run)
    (event,) = recorded.one("flaky").events
    assert event.name == sc.EVENT_RETRY
    assert dict(event.attributes) == {sc.RETRY_ATTEMPT: 2, sc.ERROR_TYPE: "TimeoutError"}


def test_a_step_that_deep_copies_its_config_works_as_without_llmobs(recorded):
    """LangChain's own tracers copy as themselves; the handler holds a lock, which cannot be copied."""
    import copy

    def step(value: int, config) -> int:
        copy.deepcopy(config)
        copy.copy(config)
        return value + 1

    handler = LLMObsCallbackHandler()
    assert copy.deepcopy(handler) is handler and copy.copy(handler) is handler
    assert RunnableLambda(step).invoke(1, config={"callbacks": [handler]}) == 2
    assert recorded.one("step").status.status_code is StatusCode.UNSET
