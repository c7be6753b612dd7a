"""The plugin's settings as Dify hands them over: endpoint settings and tool credentials, per call.

Dify passes an endpoint's settings (and a tool provider's credentials) with every invocation, as plain
strings, booleans and numbers from its form. :func:`relay_settings` and :func:`destination` turn them
into validated, hashable values; a bad value raises :class:`SettingsError` with a message for the user.
Nothing here touches global state: two endpoints with different destinations live side by side.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmobs.content import CaptureMode

#: Names of the settings and credentials in the provider and endpoint-group YAML files.
API_KEY = "api_key"
OTLP_ENDPOINT = "otlp_endpoint"
OTLP_HEADERS = "otlp_headers"
SERVICE_NAME = "service_name"
CAPTURE = "capture_content"
MAX_ATTRIBUTE_BYTES = "max_attribute_bytes"
REDACT_PII = "redact_pii"

DEFAULT_SERVICE_NAME = "dify"
DEFAULT_MAX_ATTRIBUTE_BYTES = 8192
MAX_ATTRIBUTE_BYTES_LIMIT = 1024 * 1024
TRACES_PATH = "/v1/traces"
#: Seconds one forwarding request may take. Dify's daemon gives a whole endpoint call a bounded time.
EXPORT_TIMEOUT = 10.0


class SettingsError(ValueError):
    """A setting or credential that cannot be used, with a message for the person who entered it."""


@dataclass(frozen=True)
class Destination:
    """Where spans are forwarded: the OTLP/HTTP traces URL, its headers and the default service name."""

    url: str
    headers: tuple[tuple[str, str], ...] = ()
    service_name: str = DEFAULT_SERVICE_NAME


@dataclass(frozen=True)
class RelaySettings:
    """One endpoint's settings: the key Dify presents, the destination and the content policy."""

    api_key: str
    destination: Destination
    capture: CaptureMode = CaptureMode.SPAN_ONLY
    max_attribute_bytes: int = DEFAULT_MAX_ATTRIBUTE_BYTES
    redact_pii: bool = False


def traces_url(value: Any) -> str:
    """The OTLP/HTTP traces URL for a configured endpoint: a base URL gets ``/v1/traces`` appended."""
    text = str(value or "").strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"the OTLP endpoint must be an http(s) URL, got {text[:200]!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(TRACES_PATH):
        path += TRACES_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def parse_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """Headers from a JSON object or from ``key=value,key2=value2`` (the OTEL_EXPORTER_OTLP_HEADERS form)."""
    text = str(value or "").strip()
    if not text:
        return ()
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise SettingsError("the OTLP headers are not valid JSON") from None
        if not isinstance(document, dict):
            raise SettingsError("the OTLP headers must be a JSON object")
        pairs = [(str(k).strip(), str(v).strip()) for k, v in document.items()]
    else:
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, val = item.partition("=")
            if not sep:
                raise SettingsError("the OTLP headers must look like key=value,key2=value2 (or a JSON object)")
            pairs.append((urllib.parse.unquote(key.strip()), urllib.parse.unquote(val.strip())))
    for key, val in pairs:
        if not key or any(c in key + val for c in "\r\n"):
            raise SettingsError("the OTLP headers contain an empty name or a line break")
    return tuple(sorted(pairs))


def destination(config: Mapping[str, Any]) -> Destination:
    """The forwarding destination from endpoint settings or tool credentials."""
    service = str(config.get(SERVICE_NAME) or "").strip() or DEFAULT_SERVICE_NAME
    return Destination(traces_url(config.get(OTLP_ENDPOINT)), parse_headers(config.get(OTLP_HEADERS)), service)


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def relay_settings(config: Mapping[str, Any]) -> RelaySettings:
    """An endpoint's settings, validated."""
    key = str(config.get(API_KEY) or "").strip()  # as pasted into Dify's form; offered keys are stripped too
    if not key:
        raise SettingsError("set the API key Dify must present (endpoint setting api_key)")
    raw_size = config.get(MAX_ATTRIBUTE_BYTES)
    try:
        size = int(str(raw_size).strip()) if str(raw_size or "").strip() else DEFAULT_MAX_ATTRIBUTE_BYTES
    except ValueError:
        raise SettingsError(f"max attribute size must be a number of bytes, got {str(raw_size)[:50]!r}") from None
    if not 256 <= size <= MAX_ATTRIBUTE_BYTES_LIMIT:
        raise SettingsError(f"max attribute size must be between 256 and {MAX_ATTRIBUTE_BYTES_LIMIT} bytes")
    capture_text = str(config.get(CAPTURE) or "").strip().upper() or CaptureMode.SPAN_ONLY.value
    capture = CaptureMode.__members__.get(capture_text)
    if capture is None:
        raise SettingsError(f"unknown capture mode {capture_text[:50]!r}: use SPAN_ONLY or NO_CONTENT")
    return RelaySettings(key, destination(config), capture, size, _flag(config.get(REDACT_PII)))
