"""The span processor that turns Promptflow's spans into llmobs GenAI spans as they end.

Why translate in place rather than re-emit through the recorder: Promptflow's spans are the *current*
spans while its functions run, so everything traced inside them (OpenAI calls, LangChain runs, httpx,
llmobs' own spans) already has them as parents. A re-emitted copy would get new span ids and orphan all
of those, and the original would still reach every exporter. Instead, at ``on_end`` the translator
rewrites the notification the SDK hands to processors — a per-end snapshot, not the live span — so
processors after it (it sits first, see ``pipeline``) see one span, same ids, GenAI attributes, and
Promptflow's payload events dropped (they repeat the payload attributes). The metrics go through the
recorder's instruments (``Recorder.record_call``), for every Promptflow call, before any sampling.

At ``on_start`` it does what only the start can: a Promptflow span inherits the session and user of its
parent (an enclosing ``llmobs.span(session_id=...)`` or Promptflow's own ``session_id``), and a
Promptflow parent is marked as having children — a function with traced work inside is a chain, a
leaf is a task.

Promptflow's streamed spans carry no first-chunk time. When the model call under a Promptflow LLM span
was also traced by llmobs (the ``openai`` client given llmobs-openai's transport), that span ends first,
with the TTFT measured where the application read the stream: the Promptflow span takes its TTFT, and
records no metrics of its own, since that span already counted the call.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmobs import config, selfstats
from llmobs import semconv as sc
from llmobs.content import ContentPolicy
from llmobs.promptflow_mapping import span_attributes, translate
from llmobs.recorder import Recorder

INTEGRATION = "promptflow"
_NO_CALL = object()  # no llmobs span traced the model call under a Promptflow span
_INHERITED = ((sc.SESSION_ID, sc.PF_SESSION_ID), (sc.USER_ID, None))


class Translator(SpanProcessor):
    """Translates spans of the ``promptflow`` scope; restores ``service_name`` on spans Promptflow renamed.

    ``max_open``: Promptflow spans in flight remembered as parents; beyond it the oldest is forgotten
    (counted) — only an abandoned generator leaves its span open for good.
    """

    def __init__(self, recorder: Recorder, service_name: str | None = None, max_open: int = 100_000) -> None:
        self._recorder = recorder
        self._service_name = service_name
        self._max_open = max_open
        self._parents: dict[int, bool] = {}  # Promptflow spans in flight with a child, oldest first
        self._calls: dict[int, float | None] = {}  # ... of those, with an llmobs model call: its TTFT (s)
        self._lock = threading.Lock()
        self._resources: tuple[Resource, Resource] | None = None  # (Promptflow's, with our service name)
        self._closed = False

    # --- SpanProcessor --------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._closed:
            return
        try:
            parent = trace.get_current_span(parent_context)
            scope = getattr(parent, "instrumentation_scope", None)
            under_promptflow = scope is not None and scope.name == sc.PF_SCOPE
            if under_promptflow and getattr(parent, "end_time", None) is None:  # not a late child of an ended span
                parent_id = parent.get_span_context().span_id
                self._mark_parent(parent_id)
                if _is_model_call(span):
                    self._note_call_started(parent_id)
            own = span.instrumentation_scope
            if under_promptflow or (own is not None and own.name == sc.PF_SCOPE):
                _inherit(span, getattr(parent, "attributes", None))
        except Exception as exc:
            selfstats.failure("promptflow.on_start_failed", exc)

    def on_end(self, span: ReadableSpan) -> None:
        if self._closed:
            return
        try:
            self._on_end(span)
        except Exception as exc:
            selfstats.failure("promptflow.translate_failed", exc)

    def shutdown(self) -> None:
        """Stop translating (also when the provider could not let go of this processor)."""
        self._closed = True
        with self._lock:
            self._parents.clear()
            self._calls.clear()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    # --- translation ----------------------------------------------------------------------------
    def _on_end(self, span: ReadableSpan) -> None:
        state = vars(span) if type(span) is ReadableSpan else None  # the SDK's per-end snapshot
        if state is None or "_attributes" not in state or "_resource" not in state:
            selfstats.count("promptflow.untranslatable_span")
            return
        scope = span.instrumentation_scope
        promptflow = scope is not None and scope.name == sc.PF_SCOPE and span.context is not None
        traced_call: Any = _NO_CALL
        if promptflow:
            with self._lock:
                has_children = self._parents.pop(span.context.span_id, False)
                traced_call = self._calls.pop(span.context.span_id, _NO_CALL)
        elif scope is not None and scope.name == sc.SCOPE_NAME and span.parent is not None:
            self._note_model_call(span)
        if not config.current().integration_enabled(INTEGRATION):
            return
        state["_resource"] = self._resource(span.resource)
        if not promptflow:
            return
        policy = self._recorder.derived.policy
        capture = policy.mode.on_span or policy.mode.on_event
        failed = span.status.status_code is StatusCode.ERROR
        t = translate(
            span.name,
            span.attributes or {},
            failed=failed,
            exception_type=_exception_type(span) if failed else None,
            has_children=has_children,
            capture=capture,
        )
        call = {"provider": t.provider, "model": t.model, "response_model": t.response_model, "usage": t.usage}
        if traced_call is _NO_CALL or not t.inference:
            duration_s = max((span.end_time or 0) - (span.start_time or 0), 0) / 1e9
            usage_attributes = self._recorder.record_call(
                t.operation, duration_s=duration_s, error_type=t.error_type, span_context=span.context, **call
            )
        else:  # the llmobs span under it recorded this call's metrics already
            usage_attributes = self._recorder.usage_attributes(t.operation, **call)
        attributes, content = span_attributes(t, policy, usage_attributes)
        if t.inference and isinstance(traced_call, float):
            attributes[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = traced_call
            attributes[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] = round(traced_call * 1e9)
        status = Status(StatusCode.UNSET) if t.cancelled and not t.error_type else _scrubbed_status(span.status, policy)
        events = [
            _scrubbed_exception(e, policy) if e.name == sc.EVENT_EXCEPTION else e
            for e in span.events
            if not e.name.startswith(sc.PF_EVENT_PREFIX)
        ]
        if content and policy.mode.on_span:
            attributes.update(content)
        if content and policy.mode.on_event:
            events.append(Event(sc.EVENT_INFERENCE_DETAILS, content, timestamp=span.end_time))
        state.update(
            _name=t.name,
            _attributes=attributes,
            _events=tuple(events),
            _kind=SpanKind.CLIENT if t.inference else span.kind,
            _status=status,
        )

    def _note_model_call(self, span: ReadableSpan) -> None:
        """An llmobs model-call span ended under a Promptflow span in flight: remember its TTFT there."""
        attributes = span.attributes or {}
        if attributes.get(sc.OPERATION_NAME) not in sc.INFERENCE_OPERATIONS:
            return
        ttft = attributes.get(sc.RESPONSE_TIME_TO_FIRST_CHUNK)
        with self._lock:
            parent_id = span.parent.span_id
            if parent_id in self._parents:  # bounded with it: only spans in flight are remembered
                self._calls[parent_id] = float(ttft) if isinstance(ttft, int | float) else None

    def _note_call_started(self, parent_id: int) -> None:
        """An llmobs model-call span started under a Promptflow span in flight: that span records the call's
        metrics, even if it ends after the Promptflow span (a body read after Promptflow's call returned)."""
        with self._lock:
            if parent_id in self._parents:
                self._calls.setdefault(parent_id, None)

    def _mark_parent(self, span_id: int) -> None:
        with self._lock:
            if span_id in self._parents:
                return
            if len(self._parents) >= self._max_open:
                oldest = next(iter(self._parents))
                del self._parents[oldest]
                self._calls.pop(oldest, None)
                selfstats.count("promptflow.open_spans_evicted")
            self._parents[span_id] = True

    def _resource(self, resource: Resource) -> Resource:
        """The resource with the application's service name, when ``start_trace()`` replaced it."""
        if self._service_name is None or resource.attributes.get(sc.SERVICE_NAME) != sc.PF_SERVICE_NAME:
            return resource
        pair = self._resources
        if pair is None or pair[0] is not resource:
            pair = self._resources = (resource, resource.merge(Resource({sc.SERVICE_NAME: self._service_name})))
        return pair[1]


def _is_model_call(span: Span) -> bool:
    scope = span.instrumentation_scope
    if scope is None or scope.name != sc.SCOPE_NAME:
        return False
    return (span.attributes or {}).get(sc.OPERATION_NAME) in sc.INFERENCE_OPERATIONS


def _inherit(span: Span, parent_attributes: Any) -> None:
    """Session and user of the parent span, unless the span has its own."""
    if not parent_attributes:
        return
    own = span.attributes or {}
    for attribute, promptflow_name in _INHERITED:
        value = parent_attributes.get(attribute) or (promptflow_name and parent_attributes.get(promptflow_name))
        if value and attribute not in own:
            span.set_attribute(attribute, value)
            if attribute == sc.SESSION_ID:
                span.set_attribute(sc.CONVERSATION_ID, value)


def _scrubbed_status(status: Status, policy: ContentPolicy) -> Status:
    """An error's description, which holds the exception's message, through the content policy as the
    recorder's own error messages go (keys and tokens in it scrubbed, PII redacted when that is on)."""
    if status.status_code is not StatusCode.ERROR or not status.description:
        return status
    return Status(StatusCode.ERROR, policy.render_text(status.description))


def _scrubbed_exception(event: Event, policy: ContentPolicy) -> Event:
    """The exception event with its message and stack trace through the content policy."""
    attributes = dict(event.attributes or {})
    for key in (sc.EXCEPTION_MESSAGE, sc.EXCEPTION_STACKTRACE):
        if isinstance(attributes.get(key), str):
            attributes[key] = policy.render_text(attributes[key])
    return Event(event.name, attributes, timestamp=event.timestamp)


def _exception_type(span: ReadableSpan) -> str | None:
    for event in span.events:
        if event.name == sc.EVENT_EXCEPTION:
            value = (event.attributes or {}).get(sc.EXCEPTION_TYPE)
            return str(value) if value else None
    return None
