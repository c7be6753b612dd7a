"""Test wiring: the application's global OTel SDK providers, with an in-memory exporter and metric reader.

The handler records through ``llmobs.get_recorder()``, i.e. whatever global providers exist. Alone, this
file installs them; in the whole suite another package's conftest may have done so first, and then the
exporter is added to that provider and its in-memory reader is used — as with any application that set
up OpenTelemetry itself.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

import pytest
from langchain_core.callbacks import BaseCallbackManager
from langchain_core.messages import AIMessage
from langgraph.pregel import Pregel
from langgraph.types import Command
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmobs_langchain
from llmobs import config, selfstats
from llmobs.testing import FinishedSpans, global_metric_reader, global_tracer_provider
from llmobs_langchain.runs import RUNS
from llmobs_langchain.scripted import ScriptedChatModel

SPANS = InMemorySpanExporter()
global_tracer_provider().add_span_processor(SimpleSpanProcessor(SPANS))
METRICS = global_metric_reader()

# Where LangChain instrumentations patch, as imported here (before any test runs). A test elsewhere in the
# suite may instrument OpenLLMetry, whose uninstrument() leaves its patches in place (its spans keep coming
# and its context attach leaks into later tests); these tests measure llmobs alone, on LangChain as shipped.
_PATCHED_BY_ANCHORS = {owner: dict(vars(owner)) for owner in (BaseCallbackManager, Pregel, Command)}


def _unpatch_langchain() -> None:
    for owner, original in _PATCHED_BY_ANCHORS.items():
        for name, value in list(vars(owner).items()):
            if name in original and original[name] is not value:
                setattr(owner, name, original[name])


@pytest.fixture(autouse=True)
def _isolated():
    """Default settings, fresh counters and spans, no global instrumentation left behind, no run leaked."""
    _unpatch_langchain()
    previous = config.swap(config.Settings())
    selfstats.reset()
    SPANS.clear()
    yield
    llmobs_langchain.uninstrument()
    config.swap(previous)
    assert len(RUNS) == 0, "a run was left in flight"


@pytest.fixture
def recorded() -> FinishedSpans:
    return FinishedSpans(SPANS)


@pytest.fixture
def settings():
    """Make settings with the given changes current for the rest of the test."""

    def apply(**changes):
        return config.swap(dataclasses.replace(config.Settings(), **changes))

    return apply


def _metric_points(name: str, **attributes) -> list:
    """Data points of metric ``name`` whose attributes include ``attributes`` (cumulative over the run)."""
    data = METRICS.get_metrics_data()
    points = []
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    points += [p for p in m.data.data_points if attributes.items() <= dict(p.attributes).items()]
    return points


def _reply(
    text: str = "",
    *,
    calls: Iterable[tuple[str, dict, str]] = (),
    usage: tuple[int, int] | None = None,
    finish: str | None = None,
    **fields,
) -> AIMessage:
    """A scripted model answer: text, tool calls ``(name, args, id)``, usage ``(input, output)``."""
    extra = {}
    if usage is not None:
        extra["usage_metadata"] = {"input_tokens": usage[0], "output_tokens": usage[1], "total_tokens": sum(usage)}
    if finish is not None:
        extra["response_metadata"] = {"finish_reason": finish}
    tool_calls = [{"name": n, "args": a, "id": i} for n, a, i in calls]
    return AIMessage(content=text, tool_calls=tool_calls, **extra, **fields)


def _scripted(*answers: AIMessage | str, repeat: bool = False, **fields) -> ScriptedChatModel:
    """A scripted chat model replaying ``answers`` (forever with ``repeat``)."""
    messages = itertools.cycle(answers) if repeat else iter(answers)
    return ScriptedChatModel(messages=messages, **fields)


# Helpers as fixtures: with --import-mode=importlib test modules cannot import from conftest.
@pytest.fixture
def points():
    return _metric_points


@pytest.fixture
def reply():
    return _reply


@pytest.fixture
def scripted():
    return _scripted
