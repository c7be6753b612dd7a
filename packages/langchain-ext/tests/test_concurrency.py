"""Threads, asyncio and batches: every trace stays whole and separate, an enclosing OTel span parents the
root run, and no OTel context leaks into the caller after sync or async runs."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel
from opentelemetry import context as otel_context
from opentelemetry import trace

from llmobs import semconv as sc
from llmobs_langchain import LLMObsCallbackHandler

TRACER = trace.get_tracer("app")
HANDLER = LLMObsCallbackHandler()  # one handler shared by every run, as an application would


@pytest.fixture
def chain(scripted):
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    slow = RunnableLambda(lambda value: value, name="passthrough")
    parallel = RunnableParallel(answer=slow, echo=RunnableLambda(lambda value: value, name="echo"))
    return prompt | scripted("the answer is here", repeat=True, model="m") | StrOutputParser() | parallel


def session(i: int) -> dict:
    return {"callbacks": [HANDLER], "metadata": {"session_id": f"s{i}"}}


def assert_whole_separate_traces(recorded, count: int) -> None:
    """Each session is one trace of 7 spans, all carrying its session id, each parent inside it."""
    roots = recorded.named("RunnableSequence")
    assert len(roots) == count and len({r.context.trace_id for r in roots}) == count
    for root in roots:
        spans = recorded.trace_of(root)
        assert len(spans) == 7
        session_id = root.attributes[sc.SESSION_ID]
        assert {s.attributes[sc.SESSION_ID] for s in spans} == {session_id}
        question = json.loads(root.attributes[sc.INPUT_VALUE])["question"]
        assert question == session_id
        ids = {s.context.span_id for s in spans}
        assert all(s.parent.span_id in ids for s in spans if s is not root)


def test_threads(chain, recorded):
    def work(i):
        return chain.invoke({"question": f"s{i}"}, config=session(i))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(24)))
    assert_whole_separate_traces(recorded, 24)


def test_asyncio_gather_of_invokes_and_streams(chain, recorded):
    async def main():
        async def streamed(i):
            return [c async for c in chain.astream({"question": f"s{i}"}, config=session(i))]

        calls = [chain.ainvoke({"question": f"s{i}"}, config=session(i)) for i in range(10)]
        calls += [streamed(i) for i in range(10, 20)]
        await asyncio.gather(*calls)

    asyncio.run(main())
    assert_whole_separate_traces(recorded, 20)


def test_batch_and_abatch_with_max_concurrency(chain, recorded):
    chain.batch([{"question": f"s{i}"} for i in range(6)], config=[session(i) for i in range(6)], max_concurrency=2)
    asyncio.run(chain.abatch([{"question": f"s{i}"} for i in range(6, 12)],
                             config=[session(i) for i in range(6, 12)], max_concurrency=3))  # fmt: skip
    assert_whole_separate_traces(recorded, 12)


def test_an_enclosing_span_parents_the_root_run_sync_and_async(chain, recorded):
    with TRACER.start_as_current_span("POST /ask") as request:
        chain.invoke({"question": "s1"}, config=session(1))
        assert trace.get_current_span() is request

    async def handler():
        with TRACER.start_as_current_span("POST /ask-async") as request:
            await chain.ainvoke({"question": "s2"}, config=session(2))
            assert trace.get_current_span() is request

    asyncio.run(handler())
    for name in ("POST /ask", "POST /ask-async"):
        outer = recorded.one(name)
        (root,) = [r for r in recorded.named("RunnableSequence") if r.context.trace_id == outer.context.trace_id]
        assert root.parent.span_id == outer.context.span_id


def test_no_context_leaks_into_the_caller_after_async_runs(chain, recorded):
    async def main():
        before = otel_context.get_current()
        await chain.ainvoke({"question": "s1"}, config=session(1))
        async for _ in chain.astream({"question": "s2"}, config=session(2)):
            assert otel_context.get_current() == before  # not even while streaming
        await chain.abatch([{"question": "s3"}], config=[session(3)])
        assert otel_context.get_current() == before
        assert trace.get_current_span() is trace.INVALID_SPAN
        # a second, unrelated run in the same task starts its own trace
        await chain.ainvoke({"question": "s4"}, config=session(4))

    asyncio.run(main())
    assert_whole_separate_traces(recorded, 4)
    assert all(recorded.parent(r) is None for r in recorded.named("RunnableSequence"))


def test_no_context_leaks_after_sync_runs_in_threads(chain, recorded):
    leaks = []

    def work(i):
        before = otel_context.get_current()
        chain.invoke({"question": f"s{i}"}, config=session(i))
        list(chain.stream({"question": f"s{i + 100}"}, config=session(i + 100)))
        leaks.append(otel_context.get_current() != before)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert leaks == [False] * 4
    assert_whole_separate_traces(recorded, 8)


def test_cancelled_task_ends_its_runs_as_cancelled(scripted, recorded):
    started = asyncio.Event()

    async def wait_forever(value):
        started.set()
        await asyncio.sleep(60)

    chain = RunnableLambda(lambda x: x, name="first") | RunnableLambda(wait_forever, name="waiting")

    async def main():
        task = asyncio.create_task(chain.ainvoke(1, config=session(1)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    for name in ("waiting", "RunnableSequence"):
        span = recorded.one(name)
        assert span.attributes[sc.STATUS_REASON] == "cancelled" and sc.ERROR_TYPE not in span.attributes
