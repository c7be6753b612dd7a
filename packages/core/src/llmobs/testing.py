"""Test wiring shared by every llmobs package's tests: the application's global OTel SDK providers, and
helpers to read what was recorded.

Framework packages record through whatever global providers exist, so their tests install SDK providers
as an application would — or reuse the ones already installed in the process — and read spans and
metrics through in-memory exporters. The OpenTelemetry SDK must be installed (it is a core dependency).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmobs import finisher
from llmobs import semconv as sc


def global_tracer_provider() -> TracerProvider:
    """The global SDK tracer provider, installed first if the process has none."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    return provider


def global_metric_reader() -> InMemoryMetricReader:
    """An in-memory reader on the global SDK meter provider, installing both if the process has none."""
    provider = metrics.get_meter_provider()
    if isinstance(provider, MeterProvider):
        # The SDK has no public list of a provider's readers; reuse the in-memory one installed before.
        return next(r for r in provider._metric_readers if isinstance(r, InMemoryMetricReader))
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


class FinishedSpans:
    """The spans an in-memory exporter holds, in start order, with helpers to walk their trees."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        finisher.flush()  # calls queued to be finished in the background: finished before they are looked at
        return sorted(self._exporter.get_finished_spans(), key=lambda s: s.start_time or 0)

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        (span,) = self.named(name)
        return span

    def kind(self, kind: str) -> list[ReadableSpan]:
        """Spans of one ``gen_ai.span.kind`` (LLM, TOOL, ...)."""
        return [s for s in self.all() if (s.attributes or {}).get(sc.SPAN_KIND) == kind]

    def roots(self) -> list[ReadableSpan]:
        """Spans whose parent is not among the finished spans (trace roots, or children of remote spans)."""
        ids = {s.context.span_id for s in self.all()}
        return [s for s in self.all() if s.parent is None or s.parent.span_id not in ids]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        return next((s for s in self.all() if s.context.span_id == span.parent.span_id), None)

    def children(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.all() if s.parent is not None and s.parent.span_id == span.context.span_id]

    def child_names(self, span: ReadableSpan) -> list[str]:
        return [s.name for s in self.children(span)]

    def tree(self, span: ReadableSpan, *, kinds: bool = False) -> tuple:
        """``(name, (child trees...))`` — or ``(name, kind, (...))`` with ``kinds`` — in start order: a
        shape to compare in one assert."""
        children = tuple(self.tree(child, kinds=kinds) for child in self.children(span))
        return (span.name, (span.attributes or {}).get(sc.SPAN_KIND), children) if kinds else (span.name, children)

    def traces(self) -> dict[int, list[ReadableSpan]]:
        by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
        for span in self.all():
            by_trace[span.context.trace_id].append(span)
        return dict(by_trace)

    def trace_of(self, root: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.all() if s.context.trace_id == root.context.trace_id]

    def clear(self) -> None:
        self._exporter.clear()


class Point(NamedTuple):
    """What one metric series gained: histogram sum and count, or a counter's increase (count 1)."""

    attributes: dict[str, Any]
    sum: float
    count: int


def metric_changes(reader: InMemoryMetricReader) -> Callable[[str], list[Point]]:
    """A function giving, per series of a metric, what was recorded since this call (the reader is
    cumulative, and shared by every test of the process)."""

    def totals() -> dict[tuple[str, frozenset[tuple[str, Any]]], tuple[float, int]]:
        finisher.flush()
        data = reader.get_metrics_data()
        found = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        histogram = hasattr(point, "count")
                        total = point.sum if histogram else point.value
                        found[(metric.name, frozenset(point.attributes.items()))] = (
                            total,
                            point.count if histogram else 1,
                        )
        return found

    before = totals()

    def points(name: str) -> list[Point]:
        out = []
        for (metric, attributes), (total, count) in totals().items():
            old_total, old_count = before.get((metric, attributes), (0, 0))
            if metric == name and (count > old_count or total != old_total):
                out.append(Point(dict(attributes), total - old_total, count - old_count))
        return out

    return points


#: Headless Chromium on a machine without a display, run as root, without background network traffic
#: (a closed network refuses it, slowly).
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def launch_chromium(playwright: Any) -> Any:
    """A headless browser from the system's Chromium (Debian's ``chromium``), driven by Playwright — the
    browser tests never download one. Raises a clear error when it is not installed."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("headless Chromium not found: install Debian's chromium (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
