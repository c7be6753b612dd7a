"""Property-based fuzzing of the Promptflow translation with hostile span attributes.

Promptflow's spans carry JSON text of a function's bound arguments and return value, usage counters and
generated messages; the translator (a span processor on the application's provider) rewrites each span
in place at its end. Whatever those attributes hold — malformed or huge JSON, lone surrogates, NaN, wrong
types, deep nesting — ``translate`` never raises, and the translated span holds only attribute values
OpenTelemetry can export.
"""

from __future__ import annotations

import json

import hostile_inputs as hostile
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from llmobs import config, get_recorder, selfstats
from llmobs import semconv as sc
from llmobs.promptflow_mapping import translate
from llmobs_promptflow.processor import Translator

_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                       st.sampled_from(["user", "assistant", "gpt-4o", "\ud800", "<1536 dimensional vector>"]))
_JSON_KEYS = st.sampled_from(["messages", "role", "content", "model", "prompt", "input", "choices", "message",
                              "usage", "prompt_tokens", "completion_tokens", "text", "self", "kwargs", "x"])
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(_JSON_KEYS, inner, max_size=4)),
                     max_leaves=15)
_TEXT = st.one_of(
    _JSON.map(lambda v: json.dumps(v, allow_nan=True)),
    st.text(max_size=40),
    st.sampled_from(["{not json", "[1, 2", "", "null", "[" * 5_000 + "]" * 5_000, '"\\ud800"', "NaN",
                     json.dumps({"messages": [{"role": "user", "content": "x" * 3_000_000}]})]),
)
# What an SDK span's attributes can hold: scalars and homogeneous sequences of them.
_VALUE = st.one_of(_TEXT, st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(),
                   st.lists(st.text(max_size=10), max_size=3), st.lists(st.floats(), max_size=3))
_ATTRIBUTES = st.fixed_dictionaries(
    # span_type as Promptflow writes it, and as receivers admit a span as Promptflow's: text
    {sc.PF_SPAN_TYPE: st.one_of(st.sampled_from(["LLM", "Embedding", "Retrieval", "Flow", "Function", "Tool", ""]),
                                st.text(max_size=10))},
    optional={key: _VALUE for key in (
        sc.PF_FUNCTION, sc.PF_INPUTS, sc.PF_OUTPUT, sc.PF_USAGE_PROMPT_TOKENS, sc.PF_USAGE_COMPLETION_TOKENS,
        sc.PF_RESPONSE_MODEL, sc.PF_GENERATED_MESSAGE, sc.PF_SESSION_ID, sc.PF_OUTPUT_TYPE, sc.PF_EMBEDDINGS,
        sc.PF_PROMPT_TEMPLATE, sc.PF_PROMPT_VARIABLES, sc.PF_FRAMEWORK, "__computed__.cumulative_token_count.total",
        "llm.usage.total_tokens", "function", "line_run_id",
    )},
)
_NAMES = st.one_of(st.sampled_from(["openai_chat", "openai.resources.chat.completions.Completions.create",
                                    "my_flow", ""]), st.text(max_size=20))


@pytest.fixture(autouse=True)
def _settings():
    previous = config.swap(config.Settings())
    yield
    config.swap(previous)


def _exportable(value) -> bool:
    if isinstance(value, str | bool | int | float):
        return True
    return isinstance(value, tuple | list) and all(isinstance(v, str | bool | int | float) for v in value)


@hostile.fuzz(200)
@given(_NAMES, _ATTRIBUTES, st.booleans(), st.booleans(), st.booleans())
def test_translate_never_raises(name, attributes, failed, has_children, capture):
    t = translate(name, attributes, failed=failed, exception_type="openai.APITimeoutError" if failed else None,
                  has_children=has_children, capture=capture)
    assert isinstance(t.name, str) and t.operation
    assert all(_exportable(v) for v in t.attributes.values()), t.attributes


@hostile.fuzz(150)
@given(_NAMES, _ATTRIBUTES, st.booleans(), st.integers(0, 2**63), st.integers(-(2**40), 2**40))
def test_the_processor_rewrites_hostile_spans_into_exportable_ones(name, attributes, failed, start, length):
    translator = Translator(get_recorder(), service_name="fuzz")
    span = ReadableSpan(
        name,
        context=SpanContext(0x1234, 0x99, False, TraceFlags(1)),
        parent=None,
        resource=Resource({"service.name": "promptflow"}),
        attributes=attributes,
        events=(),
        status=Status(StatusCode.ERROR, "boom") if failed else Status(StatusCode.UNSET),
        start_time=start,
        end_time=start + length,
        instrumentation_scope=InstrumentationScope(sc.PF_SCOPE),
    )
    selfstats.reset()
    translator.on_end(span)
    assert selfstats.snapshot() == {} or "promptflow.translate_failed" not in selfstats.snapshot()
    assert span.attributes[sc.FRAMEWORK] == sc.PF_SCOPE, "translated"
    assert all(_exportable(v) for v in (span.attributes or {}).values()), dict(span.attributes)
    assert isinstance(span.name, str)
