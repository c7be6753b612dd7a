"""GenAI metrics aggregated by llmobs itself, for the meter providers llmobs installs.

The OTel SDK spends 15-20 µs on every histogram measurement (attribute cleaning and hashing, view
matching, exemplar offers) and a model call makes four or five of them: about 40% of what recording
a call costs. When llmobs installs the ``MeterProvider`` itself (OTLP, Prometheus or console metrics
from ``llmobs.configure()``), its readers are the ones in this module: a measurement is one dict
lookup, a bisect and a few additions under a lock — a call's measurements under one lock, their attribute
keys made once per attribute set (:class:`AttributeSet`) — and each collection merges the aggregated points
into what the SDK collected, with the temporality the reader asks for. An application's own provider
built with these readers and no Views aggregates here too (:func:`adopt`); on any other provider the
instruments record through the SDK exactly as before.

What differs from the SDK's aggregation: no exemplars, and an application's Views do not apply
(llmobs' own providers have none). The cardinality limit is the SDK's default (2000 attribute sets
per instrument; later sets fold into one ``otel.metric.overflow`` point).
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Histogram as _SDKHistogram
from opentelemetry.sdk.metrics import _internal as _sdk_metrics_internal
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    NumberDataPoint,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Span, set_span_in_context

from llmobs import selfstats

#: Attribute sets per instrument before new ones fold into the overflow point (the SDK's default).
CARDINALITY_LIMIT = 2000
_OVERFLOW = frozenset({("otel.metric.overflow", True)})


class AttributeSet(dict):
    """Metric attributes that are recorded again and again (every call of one model): their aggregation key is
    made once, not per measurement — building and hashing a new key costs about a third of a measurement.
    Treat as read-only: the key does not follow changes."""

    __slots__ = ("key",)

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self.key = frozenset(self.items())


def _key(attributes: Mapping[str, Any]) -> frozenset[tuple[str, Any]]:
    return attributes.key if type(attributes) is AttributeSet else frozenset(attributes.items())


class _Spec:
    """What an instrument is: name, unit, description, and bucket bounds (``None``: a monotonic sum)."""

    __slots__ = ("bounds", "bucket_of", "description", "name", "scope", "unit")

    def __init__(self, scope: InstrumentationScope, name: str, unit: str, description: str,
                 bounds: Sequence[float] | None) -> None:
        self.scope = scope
        self.name = name
        self.unit = unit
        self.description = description
        self.bounds = tuple(bounds) if bounds is not None else None
        #: A value's bucket index (a histogram's): the SDK's rule, a value on a bound counted below it.
        self.bucket_of = partial(bisect_left, self.bounds) if bounds is not None else None


class _Aggregation:
    """One reader's points: ``{spec: {attribute set: point}}``; a point is a list for in-place updates.

    Histogram point: ``[count, sum, min, max, bucket counts...]``; sum point: ``[value]``.
    """

    def __init__(self, temporality: AggregationTemporality) -> None:
        self.delta = temporality == AggregationTemporality.DELTA
        self.lock = threading.Lock()
        self.points: dict[_Spec, dict[frozenset[tuple[str, Any]], list[Any]]] = {}
        self.start_ns = time.time_ns()

    def add(self, items: Sequence[tuple[_Spec, float, frozenset[tuple[str, Any]]]]) -> None:
        """Add measurements ``(instrument spec, value, attribute key)`` under one lock."""
        with self.lock:
            points = self.points
            for spec, value, key in items:
                by_key = points.get(spec)
                point = by_key.get(key) if by_key is not None else None
                if point is None:
                    point = self._new_point(spec, key, value)
                bounds = spec.bounds
                if bounds is None:
                    point[0] += value
                    continue
                point[0] += 1
                point[1] += value
                if value < point[2]:
                    point[2] = value
                if value > point[3]:
                    point[3] = value
                point[4 + bisect_left(bounds, value)] += 1

    def add_values(self, spec: _Spec, values: Sequence[float], key: frozenset[tuple[str, Any]]) -> None:
        """Add valid measurements of one instrument under one attribute key (a stream's chunk intervals) under
        one lock: the point looked up once, count, sum, extremes and buckets counted by C code, not per value."""
        if not values:
            return
        with self.lock:
            by_key = self.points.get(spec)
            point = by_key.get(key) if by_key is not None else None
            if point is None:
                point = self._new_point(spec, key, values[0])
            if spec.bounds is None:
                point[0] = sum(values, point[0])  # added in order, from the point's value: as one by one
                return
            point[0] += len(values)
            point[1] = sum(values, point[1])
            low, high = min(values), max(values)
            if low < point[2]:
                point[2] = low
            if high > point[3]:
                point[3] = high
            for index, count in Counter(map(spec.bucket_of, values)).items():
                point[4 + index] += count

    def _new_point(self, spec: _Spec, key: frozenset[tuple[str, Any]], first: float) -> list[Any]:
        """The point of an attribute key not seen yet (under the lock): a new one, else past the cardinality limit
        the overflow point. ``first``: the first value, a histogram's starting min and max."""
        by_key = self.points.get(spec)
        if by_key is None:
            by_key = self.points[spec] = {}
        if len(by_key) >= CARDINALITY_LIMIT:
            key = _OVERFLOW
            point = by_key.get(key)
            if point is not None:
                return point
        bounds = spec.bounds
        point = by_key[key] = [0] if bounds is None else [0, 0, first, first] + [0] * (len(bounds) + 1)
        return point

    def take(self) -> tuple[dict[_Spec, dict[frozenset[tuple[str, Any]], list[Any]]], int, int]:
        """The points to report now, their start and collection time; a delta reader starts afresh."""
        now = time.time_ns()
        with self.lock:
            start = self.start_ns
            if self.delta:
                points, self.points, self.start_ns = self.points, {}, now
            else:
                points = {spec: {key: list(point) for key, point in by_key.items()}
                          for spec, by_key in self.points.items()}
        return points, start, now

    def forget(self) -> None:
        """Drop every point (a forked child must not report its parent's measurements again)."""
        with self.lock:
            self.points = {}
            self.start_ns = time.time_ns()

    def metrics_by_scope(self) -> dict[InstrumentationScope, list[Metric]]:
        points, start, now = self.take()
        temporality = AggregationTemporality.DELTA if self.delta else AggregationTemporality.CUMULATIVE
        out: dict[InstrumentationScope, list[Metric]] = {}
        for spec, by_key in points.items():
            if not by_key:
                continue
            if spec.bounds is None:
                data: Any = Sum(
                    data_points=[NumberDataPoint(dict(key), start, now, point[0]) for key, point in by_key.items()],
                    aggregation_temporality=temporality,
                    is_monotonic=True,
                )
            else:
                data = HistogramData(
                    data_points=[
                        HistogramDataPoint(dict(key), start, now, point[0], point[1], point[4:], spec.bounds,
                                           point[2], point[3])
                        for key, point in by_key.items()
                    ],
                    aggregation_temporality=temporality,
                )
            out.setdefault(spec.scope, []).append(Metric(spec.name, spec.description, spec.unit, data))
        return out


class AggregatingReader:
    """Mixin for a ``MetricReader``: every collection also reports llmobs' aggregated GenAI metrics."""

    _llmobs_aggregation: _Aggregation

    def _llmobs_init(self) -> None:
        # The reader keeps its temporality per SDK instrument class (internal subclasses of the public ones).
        temporalities = getattr(self, "_instrument_class_temporality", {})
        temporality = next(
            (t for cls, t in temporalities.items() if isinstance(cls, type) and issubclass(cls, _SDKHistogram)),
            AggregationTemporality.CUMULATIVE,
        )
        self._llmobs_aggregation = _Aggregation(temporality)
        ref = weakref.ref(self._llmobs_aggregation)
        os.register_at_fork(after_in_child=lambda: (a := ref()) is not None and a.forget())

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        if metrics_data.resource_metrics:  # else keep ours for the next collection
            try:
                metrics_data = _merged(metrics_data, self._llmobs_aggregation.metrics_by_scope())
            except Exception as exc:  # report what the SDK collected even if ours cannot be added
                selfstats.failure("metrics.merge_failed", exc)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)  # type: ignore[misc]


class AggregatingPeriodicReader(AggregatingReader, PeriodicExportingMetricReader):
    """``PeriodicExportingMetricReader`` (OTLP, console) that also exports llmobs' aggregated metrics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._llmobs_init()


class AggregatingInMemoryReader(AggregatingReader, InMemoryMetricReader):
    """``InMemoryMetricReader`` that also reports llmobs' aggregated metrics (tests, benchmarks)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._llmobs_init()


def prometheus_reader() -> Any:
    """A ``PrometheusMetricReader`` that also serves llmobs' aggregated metrics (needs the extra)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    class AggregatingPrometheusReader(AggregatingReader, PrometheusMetricReader):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._llmobs_init()

    return AggregatingPrometheusReader()


def _merged(data: MetricsData, ours: dict[InstrumentationScope, list[Metric]]) -> MetricsData:
    if not ours:
        return data
    first, *rest = data.resource_metrics
    scopes = list(first.scope_metrics)
    for scope, metric_list in ours.items():
        for i, existing in enumerate(scopes):
            if existing.scope == scope:
                scopes[i] = ScopeMetrics(scope, [*existing.metrics, *metric_list], existing.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(scope, metric_list, scope.schema_url or ""))
    return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])


# --- which providers aggregate here ----------------------------------------------------------------------

_providers: weakref.WeakKeyDictionary[Any, tuple[_Aggregation, ...]] = weakref.WeakKeyDictionary()
_global: tuple[_Aggregation, ...] | None = None


def register(provider: Any, readers: Sequence[Any], *, is_global: bool = False) -> bool:
    """Aggregate for ``provider`` if every one of its ``readers`` merges llmobs' points; say whether it does.

    ``is_global``: the provider is installed as the global one (instruments made without an explicit
    provider use it). A provider with any other reader keeps the SDK path, so that reader sees everything.
    The aggregated points ride on the SDK's collections, and the SDK reports nothing when none of its own
    instruments has data: the provider needs one SDK metric that always reports (llmobs' own providers
    have ``llmobs.dropped``, whose loss counters start at zero); until then nothing is lost, only held.
    """
    global _global
    if not readers or not all(isinstance(r, AggregatingReader) for r in readers):
        return False
    aggregations = tuple(r._llmobs_aggregation for r in readers)
    _providers[provider] = aggregations
    if is_global:
        _global = aggregations
    return True


def adopt(provider: Any, *, is_global: bool = False) -> bool:
    """Aggregate for an application's SDK ``MeterProvider`` built with llmobs' readers; say whether it does.

    Only when nothing there would see the measurements differently: every reader an :class:`AggregatingReader`,
    no Views, meters configured as by default, the SDK not disabled. The provider's readers and settings are
    the SDK's private attributes: an SDK that keeps them elsewhere keeps the SDK path. The provider needs an
    SDK metric that always reports, as :func:`register` says (``llmobs.configure()`` adds ``llmobs.dropped``).
    """
    try:
        readers = getattr(provider, "_metric_readers", None)
        config = provider._sdk_config
        if readers is None:  # older SDKs kept them in the configuration
            readers = config.metric_readers
        configurator = getattr(provider, "_meter_configurator", None)
        if config.views or getattr(provider, "_disabled", False) or (
            configurator is not None and configurator is not _sdk_metrics_internal._default_meter_configurator
        ):
            return False
        return register(provider, tuple(readers), is_global=is_global)
    except Exception:  # not the SDK's provider, or one this module does not know
        return False


def unregister_global() -> None:
    """The global provider is shut down: measurements made from now on go to the SDK path (no-op)."""
    global _global
    _global = None


class _Instrument:
    """A histogram or counter that aggregates here on a registered provider, else records through the SDK.

    A counter on the SDK path keeps its totals here too (``totals``), which an observable counter reports:
    an ``add`` costs a dict update on every provider.
    """

    __slots__ = ("_fixed", "_global", "_sdk", "_spec", "totals")

    def __init__(self, sdk: Any, spec: _Spec, provider: Any) -> None:
        self._sdk = sdk
        self._spec = spec
        self._global = provider is None
        self._fixed = None if provider is None else _providers.get(provider)
        self.totals = _Aggregation(AggregationTemporality.CUMULATIVE) if spec.bounds is None else None

    def _aggregations(self) -> tuple[_Aggregation, ...] | None:
        return _global if self._global else self._fixed

    def _measure(self, value: float, attributes: Mapping[str, Any], context: Context | None = None) -> None:
        """As the OTel instrument's ``record``/``add``; ``context`` (the current one by default) names the span
        that the SDK path's exemplars point to."""
        aggregations = _global if self._global else self._fixed
        if aggregations is None or value != value or (value < 0 and self._spec.bounds is None):
            self._record_many((value,), attributes, context)  # the SDK path, or a value to count as invalid
            return
        # One measurement on a provider that aggregates here (the usual case): record_many's steps, inline.
        items = ((self._spec, value, _key(attributes)),)
        for aggregation in aggregations:
            aggregation.add(items)

    def record_many(self, values: Sequence[float], attributes: Mapping[str, Any], span: Span | None = None) -> None:
        """Record measurements that share attributes (one, or a stream's chunk intervals): one attribute key
        and one lock per aggregation here, one SDK record each on the SDK path — whose exemplars point to
        ``span`` when given (the measured operation's), else to the current span."""
        self._record_many(values, attributes, None if span is None else set_span_in_context(span))

    def _record_many(self, values: Sequence[float], attributes: Mapping[str, Any], context: Context | None) -> None:
        aggregations = _global if self._global else self._fixed
        if aggregations is None:
            if self.totals is None:
                for value in values:
                    self._sdk.record(value, attributes, context)
                return
            aggregations = (self.totals,)
        spec = self._spec
        counter = spec.bounds is None
        # No NaN; a counter never goes down.
        valid = values if _all_valid(values, counter) else [v for v in values if v == v and not (counter and v < 0)]
        if len(valid) < len(values):
            selfstats.count("metrics.invalid_value", len(values) - len(valid))
        if valid:
            key = _key(attributes)
            for aggregation in aggregations:
                aggregation.add_values(spec, valid, key)

    def observe_totals(self, options: metrics.CallbackOptions) -> list[metrics.Observation]:
        """A counter's totals kept on the SDK path, for its observable counter."""
        if self.totals is None or self._aggregations() is not None:
            return []  # the provider aggregates here: the merged points report this counter
        points, _, _ = self.totals.take()
        return [metrics.Observation(point[0], dict(key)) for key, point in points.get(self._spec, {}).items()]

    record = _measure
    add = _measure


def _all_valid(values: Sequence[float], counter: bool) -> bool:
    """No NaN among ``values`` (numbers), nor, for a counter, a negative one; checked by C code. False when
    unsure (a value that is not a real number): the caller then checks value by value."""
    try:
        return not any(map(math.isnan, values)) and not (counter and values and min(values) < 0)
    except (TypeError, OverflowError):
        return False


def measure_together(
    measurements: Sequence[tuple[_Instrument, float, Mapping[str, Any]]], span: Span | None = None
) -> None:
    """Measurements of one event on instruments of one meter (a call's duration, tokens and cost), each as its
    ``record``/``add`` would take it; where they aggregate here, under one lock per aggregation for them all.
    ``span``: the event's own, for the SDK path's exemplars (a call may be measured later, in another context)."""
    items = []
    aggregations = None
    context: Context | None = None
    for instrument, value, attributes in measurements:
        found = _global if instrument._global else instrument._fixed
        if found is None or (aggregations is not None and found is not aggregations) or value != value or (
            value < 0 and instrument._spec.bounds is None
        ):
            if context is None and span is not None:
                context = set_span_in_context(span)
            instrument._measure(value, attributes, context)  # the SDK path, another provider, or an invalid value
            continue
        aggregations = found
        items.append((instrument._spec, value, _key(attributes)))
    if aggregations is not None:
        for aggregation in aggregations:
            aggregation.add(items)


class Meter:
    """Makes instruments for ``provider`` (``None``: the global provider, whichever it is when measuring)."""

    def __init__(self, name: str, version: str | None = None, provider: Any = None) -> None:
        self._provider = provider
        self._meter = (provider or metrics).get_meter(name, version)
        self._scope = InstrumentationScope(name, version)

    @property
    def sdk(self) -> metrics.Meter:
        """The OTel meter itself, for asynchronous (observable) instruments, which cost nothing per call."""
        return self._meter

    def histogram(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> _Instrument:
        sdk = self._meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=bounds
        )
        return _Instrument(sdk, _Spec(self._scope, name, unit, description, bounds), self._provider)

    def counter(self, name: str, unit: str, description: str) -> _Instrument:
        """A monotonic counter. On the SDK path it is an observable counter over totals kept here, so an
        ``add`` costs a dict update there too; the SDK reads the totals at collection."""
        instrument = _Instrument(None, _Spec(self._scope, name, unit, description, None), self._provider)
        self._meter.create_observable_counter(
            name, callbacks=[instrument.observe_totals], unit=unit, description=description
        )
        return instrument
