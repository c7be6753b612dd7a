"""The trace relay: Dify's OTLP/HTTP export in, llmobs semantics out, forwarded over OTLP/HTTP.

Dify's Phoenix provider (and the generic OpenTelemetry provider on newer versions) posts OTLP/HTTP
protobuf with ``api_key: <key>`` and ``authorization: Bearer <key>``; its ARMS (Aliyun) provider posts to
``<endpoint>/adapt_<key>/api/otlp/traces`` with the key in the path and no header. The relay answers
like an OTLP receiver:

* 401 when the request does not present the endpoint's key (compared in constant time),
* 415 for a content type other than protobuf or JSON, 413 for a body over :data:`MAX_BODY`,
  400 for a body that is not an export request,
* 200 with an ``ExportTraceServiceResponse`` once the spans are forwarded — its ``partial_success``
  counts spans rejected for invalid ids,
* 503 with ``Retry-After`` when the destination did not take the spans, so Dify's exporter sees a
  failure instead of a silent loss.

Decoding is the core's (:mod:`llmobs.serve.otlp`), the mapping is the core's (:func:`llmobs.interop.normalise`,
one mapping for every foreign source), and content is made safe by a :class:`~llmobs.content.ContentPolicy`
built from the endpoint's settings (capture mode, size cap, secret scrubbing, optional PII redaction).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from llmobs import config, interop, plugins
from llmobs import semconv as sc
from llmobs.content import ContentPolicy
from llmobs.serve import otlp
from llmobs_dify.settings import EXPORT_TIMEOUT, Destination, RelaySettings, SettingsError, relay_settings

_log = logging.getLogger(__name__)

#: Largest request body accepted, before and after decompression. Dify's plugin daemon reads at most
#: 10 MiB of an endpoint request's body (it cuts the rest off), so nothing larger can arrive whole.
MAX_BODY = 10 * 1024 * 1024
#: Exporters kept for reuse (connection pooling), one per destination; the oldest is closed beyond this.
MAX_EXPORTERS = 16
RETRY_AFTER_SECONDS = "5"

ExporterFactory = Callable[[Destination], SpanExporter]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, body, content type and extra headers."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def _otlp_exporter(dest: Destination) -> SpanExporter:
    return OTLPSpanExporter(endpoint=dest.url, headers=dict(dest.headers), timeout=EXPORT_TIMEOUT)


class Exporters:
    """A bounded cache of exporters by destination. An evicted exporter is shut down once no request is using it:
    one that another request is still exporting through closes when that request ends."""

    def __init__(self, factory: ExporterFactory = _otlp_exporter, limit: int = MAX_EXPORTERS) -> None:
        self._factory = factory
        self._limit = limit
        self._items: OrderedDict[Destination, SpanExporter] = OrderedDict()
        self._users: dict[SpanExporter, int] = {}  # requests exporting through each exporter now
        self._retired: set[SpanExporter] = set()  # evicted while in use: shut down by their last user
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, dest: Destination) -> Iterator[SpanExporter]:
        """The exporter for ``dest``, kept open for the duration of the ``with`` block."""
        with self._lock:
            exporter = self._items.pop(dest, None) or self._factory(dest)
            self._items[dest] = exporter
            self._users[exporter] = self._users.get(exporter, 0) + 1
            evicted = []
            while len(self._items) > self._limit:
                old = self._items.popitem(last=False)[1]
                if self._users.get(old):
                    self._retired.add(old)
                else:
                    evicted.append(old)
        for old in evicted:
            _shutdown_quietly(old)
        try:
            yield exporter
        finally:
            with self._lock:
                left = self._users.pop(exporter) - 1
                if left:
                    self._users[exporter] = left
                close = not left and exporter in self._retired
                if close:
                    self._retired.discard(exporter)
            if close:
                _shutdown_quietly(exporter)

    def clear(self) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for exporter in items:
            _shutdown_quietly(exporter)


def _shutdown_quietly(exporter: SpanExporter) -> None:
    try:
        exporter.shutdown()
    except Exception:  # an exporter that fails to close must not fail a request
        _log.debug("exporter shutdown failed", exc_info=True)


#: The process's exporters. Endpoint calls share them; tests may swap the factory.
EXPORTERS = Exporters()


def offered_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request presents: the ``api_key`` header and an ``Authorization: Bearer`` token."""
    offered = [(headers.get("api_key") or headers.get("Api-Key") or "").strip()]
    authorization = headers.get("Authorization") or headers.get("authorization") or ""
    if authorization[:7].lower() == "bearer ":
        offered.append(authorization[7:].strip())
    return [key for key in offered if key]


def authorised(headers: Mapping[str, str], key: str) -> bool:
    """Whether the request presents ``key``; every offered value is compared in constant time."""
    expected = key.encode()
    results = [hmac.compare_digest(offer.encode(), expected) for offer in offered_keys(headers)]
    return any(results)


_POLICIES: OrderedDict[tuple[Any, ...], tuple[config.Settings, ContentPolicy]] = OrderedDict()
_POLICIES_LOCK = threading.Lock()


def policy_for(settings: RelaySettings) -> ContentPolicy:
    """The content policy of an endpoint: its capture mode and size cap, secret scrubbing, PII on request.

    Built once per distinct settings (and per llmobs settings and plugin generation), not per request.
    """
    current = config.current()
    key = (id(current), plugins.generation(), settings.capture, settings.max_attribute_bytes, settings.redact_pii)
    with _POLICIES_LOCK:
        cached = _POLICIES.get(key)
    if cached is not None and cached[0] is current:
        return cached[1]
    base = dataclasses.replace(current, pii_redaction=settings.redact_pii)
    policy = ContentPolicy(mode=settings.capture, max_bytes=settings.max_attribute_bytes,
                           redactors=plugins.redactors(base))
    with _POLICIES_LOCK:
        _POLICIES[key] = (current, policy)
        while len(_POLICIES) > MAX_EXPORTERS:
            _POLICIES.popitem(last=False)
    return policy


def _error(encoding: str, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, otlp.error(encoding, otlp.GRPC_CODE.get(status, 13), message), encoding, headers)


def not_configured(exc: SettingsError) -> str:
    """The answer to a call on a misconfigured endpoint. Any caller gets it, before any key is checked (none may be
    set), so what is wrong — which can quote the configured URL — goes to the plugin's log only."""
    _log.warning("llmobs Dify endpoint is not configured: %s", exc)
    return "the endpoint is not configured; the plugin's log says why"


def handle_traces(settings_map: Mapping[str, Any], headers: Mapping[str, str], body: bytes | None,
                  exporters: Exporters | None = None, path_key: str | None = None) -> Reply:
    """Answer one trace export (``body`` None: declared over :data:`MAX_BODY`, not read).

    ``path_key``: the key as Dify's ARMS provider presents it, in the URL path
    (``<endpoint>/adapt_<key>/api/otlp/traces``) rather than in a header.
    Never raises: an unexpected failure is a 500 with a short reason.
    """
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    encoding = otlp.CONTENT_TYPES.get(content_type, otlp.JSON)
    try:
        settings = relay_settings(settings_map)
    except SettingsError as exc:
        return _error(encoding, 500, not_configured(exc))
    try:
        return _traces(settings, headers, content_type, encoding, body, exporters or EXPORTERS, path_key)
    except Exception as exc:  # fail open towards Dify: an answer, never a traceback
        _log.exception("llmobs Dify relay: request failed")
        return _error(encoding, 500, f"internal error: {type(exc).__name__}")


def _traces(settings: RelaySettings, headers: Mapping[str, str], content_type: str, encoding: str,
            body: bytes | None, exporters: Exporters, path_key: str | None) -> Reply:
    if path_key is not None:
        admitted = hmac.compare_digest(path_key.encode(), settings.api_key.encode())
    else:
        admitted = authorised(headers, settings.api_key)
    if not admitted:
        return _error(encoding, 401, "missing or wrong key (Authorization: Bearer <key> or api_key: <key>)",
                      (("WWW-Authenticate", 'Bearer realm="llmobs"'),))
    if content_type not in otlp.CONTENT_TYPES:
        return _error(encoding, 415, f"unsupported content type {content_type[:80]!r}: use {otlp.PROTOBUF} or "
                                     f"{otlp.JSON}")
    if body is None or len(body) > MAX_BODY:
        return _error(encoding, 413, f"body over the {MAX_BODY} byte limit")
    try:
        body = otlp.inflate(body, headers.get("Content-Encoding"), MAX_BODY)
        request = otlp.parse(body, encoding)
    except otlp.BodyError as exc:
        return _error(encoding, exc.status, str(exc))
    except otlp.PayloadError as exc:
        return _error(encoding, 400, str(exc))

    policy = policy_for(settings)
    service = settings.destination.service_name

    def span_attributes(attributes: dict[str, Any], name: str, scope: str) -> tuple[str, dict[str, Any]]:
        return interop.normalise_span(attributes, name=name, policy=policy)

    def event_attributes(name: str, attributes: dict[str, Any]) -> dict[str, Any] | None:
        return interop.normalise_event(name, attributes, policy)

    def resource_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
        attrs = interop.normalise_resource(attributes)
        current = attrs.get(sc.SERVICE_NAME)
        if not isinstance(current, str) or not current or current.startswith("unknown_service"):
            attrs[sc.SERVICE_NAME] = service
        return attrs

    decoded = otlp.decode(request, span_attributes, event_attributes, resource_attributes)
    if decoded.spans:
        with exporters.use(settings.destination) as exporter:
            try:
                result = exporter.export(decoded.spans)
            except Exception:  # an exporter that raises is a failed forward, like one that says so
                _log.warning("llmobs Dify relay: forwarding raised", exc_info=True)
                result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            return _error(encoding, 503, "the destination did not accept the spans; retry later",
                          (("Retry-After", RETRY_AFTER_SECONDS),))
    return Reply(200, otlp.response(encoding, decoded.rejected, decoded.reason), encoding)
