"""The ``llmobs demo`` entry: a small RAG app, plain and streaming queries, per-session traces."""

from __future__ import annotations

import llmobs_llamaindex
from llmobs import semconv as sc
from llmobs_llamaindex import demo


def test_demo_makes_two_traces_per_session(spans):
    try:
        trace_ids = demo.run(2)
    finally:
        llmobs_llamaindex.uninstrument()
    assert len(trace_ids) == len(set(trace_ids)) == 4
    traces = {format(tid, "032x"): members for tid, members in spans.traces().items()}
    assert set(trace_ids) <= set(traces)
    sessions = [{s.attributes.get(sc.SESSION_ID) for s in traces[t]} for t in trace_ids]
    assert sessions == [{"li-sess-0001"}, {"li-sess-0001"}, {"li-sess-0002"}, {"li-sess-0002"}]
    for i, trace_id in enumerate(trace_ids):
        (llm,) = [s for s in traces[trace_id] if s.attributes.get(sc.SPAN_KIND) == sc.KIND_LLM]
        assert llm.name == f"text_completion {demo.MODEL}"
        assert llm.attributes[sc.USAGE_INPUT_TOKENS] > 0 and llm.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
        streamed = i % 2 == 1
        assert (sc.RESPONSE_TIME_TO_FIRST_CHUNK in llm.attributes) is streamed
        root = next(s for s in traces[trace_id] if s.parent is None)
        assert root.name == "handbook-rag" and root.attributes[sc.OUTPUT_VALUE].startswith("From the handbook:")
