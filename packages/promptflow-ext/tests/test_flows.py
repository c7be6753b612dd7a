"""Flex-style flows of real ``@trace`` functions — nested, async, generators, failures — as GenAI spans."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from promptflow.tracing import trace
from promptflow.tracing._trace import _traced
from promptflow.tracing.contracts.trace import TraceType

import llmobs
from llmobs import selfstats
from llmobs import semconv as sc
from llmobs.content import CaptureMode
from llmobs.testing import global_metric_reader
from llmobs_promptflow import processor


@trace
def lookup(city: str) -> dict:
    return {"city": city, "forecast": "sunny"}


@trace
def shout(text: str) -> str:
    return text.upper()


@trace
def plan_trip(city: str) -> str:
    weather = lookup(city)
    return shout(f"pack for {weather['forecast']} {city}")


@trace
async def fetch(item: int) -> int:
    await asyncio.sleep(0)
    return item * 10


@trace
async def gather_all(n: int) -> list[int]:
    return list(await asyncio.gather(*(fetch(i) for i in range(n))))


@trace
def count_up(n: int):
    yield from range(n)


@trace
def explode(reason: str) -> None:
    raise ValueError(reason)


@trace
def guarded(reason: str) -> str:
    try:
        explode(reason)
    except ValueError:
        return "recovered"
    return "unreachable"


def test_nested_functions_become_a_chain_of_tasks(instrumented, spans):
    assert plan_trip("Lisbon") == "PACK FOR SUNNY LISBON"
    (root,) = spans.roots()
    leaves = (("lookup", sc.KIND_TASK, ()), ("shout", sc.KIND_TASK, ()))
    assert spans.tree(root, kinds=True) == ("plan_trip", sc.KIND_CHAIN, leaves)
    for span in spans.all():
        a = span.attributes
        assert span.kind is SpanKind.INTERNAL
        assert a[sc.OPERATION_NAME] == sc.OP_CHAIN
        assert a[sc.FRAMEWORK] == "promptflow"
        assert a[sc.COMPONENT_NAME] == span.name
        assert sc.PF_SPAN_TYPE not in a and sc.PF_INPUTS not in a and sc.PF_OUTPUT not in a
        assert not [e for e in span.events if e.name.startswith("promptflow.")]  # payloads exported once
    assert json.loads(root.attributes[sc.INPUT_VALUE]) == {"city": "Lisbon"}
    assert root.attributes[sc.OUTPUT_VALUE] == "PACK FOR SUNNY LISBON"
    assert json.loads(spans.one("lookup").attributes[sc.OUTPUT_VALUE]) == {"city": "Lisbon", "forecast": "sunny"}


def test_async_functions_keep_their_parents(instrumented, spans):
    assert asyncio.run(gather_all(3)) == [0, 10, 20]
    (root,) = spans.roots()
    leaves = tuple(("fetch", sc.KIND_TASK, ()) for _ in range(3))
    assert spans.tree(root, kinds=True) == ("gather_all", sc.KIND_CHAIN, leaves)
    assert sorted(json.loads(s.attributes[sc.INPUT_VALUE])["item"] for s in spans.children(root)) == [0, 1, 2]


def test_a_generator_ends_when_exhausted_with_every_item_as_output(instrumented, spans):
    iterator = count_up(3)
    assert spans.all() == []  # still open while the caller iterates
    assert list(iterator) == [0, 1, 2]
    span = spans.one("count_up")
    assert span.attributes[sc.OUTPUT_VALUE] == "[0,1,2]"
    assert span.attributes[sc.SPAN_KIND] == sc.KIND_TASK


def test_a_failure_is_an_error_with_its_type_and_the_caller_recovers(instrumented, spans):
    assert guarded("no fuel") == "recovered"
    failed, caller = spans.one("explode"), spans.one("guarded")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[sc.ERROR_TYPE] == "ValueError"
    assert [e.name for e in failed.events] == [sc.EVENT_EXCEPTION]
    assert sc.OUTPUT_VALUE not in failed.attributes
    assert caller.status.status_code is not StatusCode.ERROR and sc.ERROR_TYPE not in caller.attributes
    assert caller.attributes[sc.SPAN_KIND] == sc.KIND_CHAIN


@trace
async def wait_forever() -> None:
    await asyncio.sleep(60)


def test_cancellation_is_not_an_error(instrumented, spans):
    async def main() -> None:
        task = asyncio.create_task(wait_forever())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    span = spans.one("wait_forever")
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.STATUS_REASON] == "cancelled"
    assert sc.ERROR_TYPE not in span.attributes


def test_flow_and_retrieval_span_types(instrumented, spans, metric_points):
    """Promptflow's executor traces a flex flow's entry as a Flow and retrievers as Retrieval."""
    retrieve = _traced(lambda query: [{"id": "doc-1", "content": f"about {query}", "score": 0.9}],
                       trace_type=TraceType.RETRIEVAL, name="search")  # fmt: skip
    flow = _traced(lambda question: retrieve(question)[0]["content"], trace_type=TraceType.FLOW, name="answer")
    assert flow("tides") == "about tides"
    (root,) = spans.roots()
    leaves = (("retrieval search", sc.KIND_RETRIEVER, ()),)
    assert spans.tree(root, kinds=True) == ("invoke_workflow answer", sc.KIND_CHAIN, leaves)
    assert root.attributes[sc.OPERATION_NAME] == sc.OP_INVOKE_WORKFLOW
    assert root.attributes[sc.WORKFLOW_NAME] == "answer"
    retrieval = spans.one("retrieval search")
    assert retrieval.attributes[sc.RETRIEVAL_QUERY_TEXT] == "tides"
    assert json.loads(retrieval.attributes[sc.RETRIEVAL_DOCUMENTS])[0]["id"] == "doc-1"
    durations = {p.attributes[sc.OPERATION_NAME]: p.count for p in metric_points(sc.METRIC_CLIENT_OPERATION_DURATION)}
    assert durations == {sc.OP_INVOKE_WORKFLOW: 1, sc.OP_RETRIEVAL: 1}  # chains and tasks have no GenAI metric


def test_the_metrics_exemplars_name_promptflows_span_of_the_call(instrumented, spans):
    """On the application's SDK meter provider, the duration's exemplar is the retrieval span itself (the
    processor records it as that span ends, whatever span is current then)."""
    retrieve = _traced(lambda query: [], trace_type=TraceType.RETRIEVAL, name="exemplar-search")
    retrieve("x")
    ids = spans.one("retrieval exemplar-search").context
    data = global_metric_reader().get_metrics_data()
    exemplars = [
        (e.trace_id, e.span_id)
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == sc.METRIC_CLIENT_OPERATION_DURATION
        for p in m.data.data_points if p.attributes.get(sc.OPERATION_NAME) == sc.OP_RETRIEVAL
        for e in p.exemplars
    ]
    assert (ids.trace_id, ids.span_id) in exemplars, exemplars


def test_session_and_user_flow_from_an_enclosing_llmobs_span(instrumented, spans):
    with llmobs.span("request", session_id="sess-42", user_id="ana", parent=llmobs.ROOT):
        plan_trip("Porto")
    for span in spans.all():
        assert span.attributes[sc.SESSION_ID] == "sess-42", span.name
        assert span.attributes[sc.USER_ID] == "ana", span.name
    (root,) = spans.roots()
    assert spans.tree(root, kinds=True)[0] == "request" and spans.tree(root, kinds=True)[2][0][0] == "plan_trip"


def test_no_content_keeps_the_tree_and_drops_every_payload(instrumented, spans, settings):
    settings(capture=CaptureMode.NO_CONTENT)
    plan_trip("Oslo")
    for span in spans.all():
        assert not {sc.INPUT_VALUE, sc.OUTPUT_VALUE, sc.PF_INPUTS, sc.PF_OUTPUT} & set(span.attributes)
        assert span.events == ()
        assert span.attributes[sc.OPERATION_NAME] == sc.OP_CHAIN


def test_event_only_content_goes_to_one_details_event(instrumented, spans, settings):
    settings(capture=CaptureMode.EVENT_ONLY)
    shout("quiet")
    span = spans.one("shout")
    assert sc.INPUT_VALUE not in span.attributes
    (event,) = span.events
    assert event.name == sc.EVENT_INFERENCE_DETAILS
    assert event.attributes[sc.OUTPUT_VALUE] == "QUIET"


def test_content_is_truncated_and_scrubbed(instrumented, spans, settings):
    settings(max_attribute_bytes=256)
    shout("x" * 5000 + " key sk-abcdefghijklmnopqrstuvwxyz0123456789")
    a = spans.one("shout").attributes
    assert len(a[sc.OUTPUT_VALUE].encode()) <= 256 and "chars]" in a[sc.OUTPUT_VALUE]
    assert "sk-abcdefghijklmnopqrstuvwxyz" not in a[sc.INPUT_VALUE] + a[sc.OUTPUT_VALUE]


def test_disabled_integration_leaves_promptflow_spans_as_they_are(instrumented, spans, settings):
    settings(disabled_integrations=frozenset({"promptflow"}))
    shout("raw")
    span = spans.one("shout")
    assert span.attributes[sc.PF_SPAN_TYPE] == "Function" and sc.OPERATION_NAME not in span.attributes


def test_uninstrument_stops_translating(spans):
    import llmobs_promptflow

    assert llmobs_promptflow.instrument() and llmobs_promptflow.instrument()  # idempotent
    llmobs_promptflow.uninstrument()
    llmobs_promptflow.uninstrument()
    assert not llmobs_promptflow.is_instrumented()
    shout("after")
    assert sc.OPERATION_NAME not in spans.one("shout").attributes


def test_a_translation_failure_leaves_the_span_as_promptflow_made_it(instrumented, spans, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("translation bug")

    monkeypatch.setattr(processor, "translate", broken)
    assert shout("still works") == "STILL WORKS"
    assert spans.one("shout").attributes[sc.PF_SPAN_TYPE] == "Function"
    assert selfstats.snapshot()["promptflow.translate_failed"] == 1


SECRET = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


@trace
def leak() -> None:
    raise ValueError(f"upstream refused: Authorization: Bearer {SECRET} api_key={SECRET}")


def test_an_errors_message_and_stack_are_scrubbed_like_every_llmobs_span(instrumented, spans):
    with pytest.raises(ValueError):
        leak()
    span = spans.one("leak")
    (event,) = span.events
    texts = [span.status.description, *(str(v) for v in event.attributes.values())]
    assert all(SECRET not in text for text in texts)
    assert "[REDACTED]" in span.status.description and "[REDACTED]" in event.attributes[sc.EXCEPTION_MESSAGE]
    assert span.attributes[sc.ERROR_TYPE] == "ValueError"


def test_promptflows_own_session_reaches_llmobs_spans_inside_its_functions(instrumented, spans):
    from promptflow.tracing._operation_context import OperationContext

    @trace
    def turn() -> None:
        with llmobs.span("rerank"), llmobs.span("inner"):
            pass

    context = OperationContext.get_instance()
    context._add_otel_attributes("session_id", "pf-session-1")  # what start_trace(session=...) does
    try:
        turn()
    finally:
        context._remove_otel_attributes(["session_id"])
    sessions = {s.name.rsplit(".", 1)[-1]: s.attributes.get(sc.SESSION_ID) for s in spans.all()}
    assert sessions == {"turn": "pf-session-1", "rerank": "pf-session-1", "inner": "pf-session-1"}


def test_a_child_that_starts_after_its_parent_ended_leaves_nothing_behind(instrumented, spans):
    @trace
    async def audit(i: int) -> int:
        return i

    @trace
    async def handle(i: int) -> int:
        asyncio.get_running_loop().create_task(audit(i))  # runs after handle() has returned
        return i

    async def main() -> None:
        for i in range(5):
            await handle(i)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert len(spans.all()) == 10
    translator = next(p for p in processor_chain() if isinstance(p, processor.Translator))
    assert translator._parents == {} and translator._calls == {}


def processor_chain():
    from opentelemetry import trace as otel

    return otel.get_tracer_provider()._active_span_processor._span_processors
