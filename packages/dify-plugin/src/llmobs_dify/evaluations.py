"""Scores, feedback and business events from Dify, recorded as llmobs spans and forwarded at once.

Each record is one short span made by the core's recorder — an evaluation carries a
``gen_ai.evaluation.result`` span event (name, score value and label, explanation), a logged event
carries a span event with its attributes — plus Dify's ids (``dify.app_id``, ``dify.workflow_run_id``,
``dify.message_id``, conversation and user) so the backend joins it to the trace Dify's own tracing
sent through the relay. The spans are exported before the call returns (Dify may run the plugin
serverless, where nothing survives the invocation), through a tracer provider of the call's own: no
global provider is set from credentials. Nothing here raises: a failed export is reported in the
:class:`Outcome`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from llmobs import recorder
from llmobs import semconv as sc
from llmobs.content import ContentPolicy, is_secret_key
from llmobs.content.scrub import REDACTED
from llmobs_dify.relay import EXPORTERS, Exporters
from llmobs_dify.settings import Destination

_log = logging.getLogger(__name__)
_POLICY = ContentPolicy()  # secret scrubbing and the default size cap for free text from workflows
_NO_METER = NoOpMeterProvider()
MAX_EVENT_ATTRIBUTES = 64
MAX_NAME = 256

SPAN_SCORE = "dify.score"
SPAN_FEEDBACK = "dify.feedback"
SPAN_EVENT = "dify.event"


@dataclass(frozen=True)
class DifyIds:
    """Dify's ids for correlation; any may be missing."""

    app_id: str | None = None
    workflow_run_id: str | None = None
    message_id: str | None = None
    conversation_id: str | None = None
    user_id: str | None = None

    def attributes(self) -> dict[str, str]:
        pairs = ((sc.DIFY_APP_ID, self.app_id), (sc.DIFY_WORKFLOW_RUN_ID, self.workflow_run_id),
                 (sc.DIFY_MESSAGE_ID, self.message_id), (sc.CONVERSATION_ID, self.conversation_id))
        return {key: value for key, value in pairs if value}

    @property
    def joinable(self) -> bool:
        return bool(self.workflow_run_id or self.message_id)


@dataclass
class Outcome:
    """What became of one record: whether it reached the destination, and the trace id it was given."""

    recorded: bool
    trace_id: str = ""
    error: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _text(value: Any, limit: int = MAX_NAME) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] if text else None


def ids(**values: Any) -> DifyIds:
    """DifyIds from loose values (blank strings are missing)."""
    return DifyIds(**{key: _text(value) for key, value in values.items()})


def _record(dest: Destination, span_name: str, dify: DifyIds, event: str, event_attributes: Mapping[str, Any],
            exporters: Exporters | None) -> Outcome:
    collect = _Collect()
    # A provider of this call's own, closed before it returns (no exit hook: calls must not accumulate).
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: dest.service_name}),
                              shutdown_on_exit=False)
    try:
        provider.add_span_processor(collect)
        rec = recorder.Recorder(tracer_provider=provider, meter_provider=_NO_METER)
        handle = rec.start(sc.OP_CHAIN, span_name, parent=recorder.ROOT, framework=sc.DIFY_FRAMEWORK,
                           attributes=dify.attributes(), session_id=dify.conversation_id, user_id=dify.user_id)
        handle.add_event(event, event_attributes)
        handle.end()
    finally:
        provider.shutdown()
    trace_id = handle.trace_id
    attributes = dict(collect.spans[0].attributes or {}) if collect.spans else {}
    if not collect.spans:
        return Outcome(False, trace_id, "the span was not recorded", attributes)
    try:
        with (exporters or EXPORTERS).use(dest) as exporter:
            result = exporter.export(collect.spans)
    except Exception as exc:
        _log.warning("llmobs Dify plugin: export failed", exc_info=True)
        return Outcome(False, trace_id, f"export failed: {type(exc).__name__}", attributes)
    if result is not SpanExportResult.SUCCESS:
        return Outcome(False, trace_id, "the destination did not accept the span", attributes)
    return Outcome(True, trace_id, "", attributes)


def record_evaluation(dest: Destination, dify: DifyIds, *, name: str, score: float | None = None,
                      label: str | None = None, explanation: str | None = None, span_name: str = SPAN_SCORE,
                      exporters: Exporters | None = None) -> Outcome:
    """One ``gen_ai.evaluation.result`` (a score, a label, or both) joined to a Dify run. Never raises."""
    try:
        attributes: dict[str, Any] = {sc.EVALUATION_NAME: _text(name) or "score"}
        if score is not None:
            attributes[sc.EVALUATION_SCORE_VALUE] = float(score)
        if label:
            attributes[sc.EVALUATION_SCORE_LABEL] = _text(label)
        if explanation:
            attributes[sc.EVALUATION_EXPLANATION] = _POLICY.render_text(str(explanation))
        return _record(dest, span_name, dify, sc.EVENT_EVALUATION_RESULT, attributes, exporters)
    except Exception as exc:
        _log.warning("llmobs Dify plugin: evaluation not recorded", exc_info=True)
        return Outcome(False, "", f"not recorded: {type(exc).__name__}")


def record_event(dest: Destination, dify: DifyIds, *, name: str, attributes: Mapping[str, Any] | None = None,
                 exporters: Exporters | None = None) -> Outcome:
    """A named business event with free-form attributes (scrubbed, capped, at most 64). Never raises."""
    try:
        event_attributes: dict[str, Any] = {}
        for key, value in list((attributes or {}).items())[:MAX_EVENT_ATTRIBUTES]:
            name_ = str(key)[:MAX_NAME]
            event_attributes[name_] = REDACTED if is_secret_key(name_) else _event_value(value)
        event_name = _text(name) or "event"
        return _record(dest, f"{SPAN_EVENT} {event_name}", dify, event_name, event_attributes, exporters)
    except Exception as exc:
        _log.warning("llmobs Dify plugin: event not recorded", exc_info=True)
        return Outcome(False, "", f"not recorded: {type(exc).__name__}")


def _event_value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _POLICY.render_text(value)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return [_POLICY.render_text(v) for v in value]
    return _POLICY.render(value)


def parse_attributes(text: Any) -> dict[str, Any]:
    """A JSON object from a workflow's text input; anything else is kept as the event's data."""
    if isinstance(text, Mapping):
        return dict(text)
    raw = str(text or "").strip()
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {sc.EVENT_DATA: raw}
    return parsed if isinstance(parsed, dict) else {sc.EVENT_DATA: parsed}
