"""What message content is captured, where it goes, and how it is made safe to record.

:class:`CaptureMode` follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``;
:class:`ContentPolicy` turns any value into a bounded attribute string with secrets scrubbed
(always) and user redactors (e.g. PII) applied. Rendering never raises into the application.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmobs import selfstats
from llmobs.content.scrub import REDACTED, is_secret_key, might_hold_secrets, scrub_text
from llmobs.content.serialize import cap_text, dumps_capped, parsed_messages_json, plain_json, to_jsonable

# Strings are pre-cut this far past the cap: a secret straddling the pre-cut point might escape the
# scrubber, but the final cap always removes everything within this distance of it.
_PRECUT_SLACK = 1024
_SHORT = 64  # strings up to this length (keys, roles, part types) repeat on every span: scrub once
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
#: Dict keys :func:`is_secret_key` accepted while rendering (see :func:`plain_json`).
_PLAIN_KEYS: set[str] = set()


class CaptureMode(enum.Enum):
    """Where captured content is recorded (the values of the OTel GenAI capture variable)."""

    NO_CONTENT = "NO_CONTENT"
    SPAN_ONLY = "SPAN_ONLY"
    EVENT_ONLY = "EVENT_ONLY"
    SPAN_AND_EVENT = "SPAN_AND_EVENT"

    #: Content goes on span attributes / on an event (plain attributes, set below: read for every span).
    on_span: bool
    on_event: bool

    @classmethod
    def parse(cls, value: str | None, default: CaptureMode) -> CaptureMode:
        """Parse a setting case-insensitively; booleans are accepted too (true means SPAN_ONLY).
        Unset or blank gives ``default``; so does an invalid value, with a warning logged once."""
        text = (value or "").strip()
        if not text:
            return default
        mode = cls.__members__.get(text.upper())
        if mode is not None:
            return mode
        if text.lower() in _TRUE:
            return cls.SPAN_ONLY
        if text.lower() in _FALSE:
            return cls.NO_CONTENT
        selfstats.failure("content.invalid_capture_mode", ValueError(f"unknown capture mode {value!r}"))
        return default


for _mode in CaptureMode:
    _mode.on_span = _mode in (CaptureMode.SPAN_ONLY, CaptureMode.SPAN_AND_EVENT)
    _mode.on_event = _mode in (CaptureMode.EVENT_ONLY, CaptureMode.SPAN_AND_EVENT)
del _mode


_SCRUB_ONLY = (scrub_text,)


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """How content is captured: ``mode`` says where, ``max_bytes`` caps each attribute (UTF-8
    bytes), ``redactors`` run in order on every string. Secret scrubbing is the first redactor
    (llmobs registers it through the ``llmobs_redactors`` hook); values under secret-looking keys
    are always replaced, whatever the redactors."""

    mode: CaptureMode = CaptureMode.SPAN_ONLY
    max_bytes: int = 8192
    redactors: tuple[Callable[[str], str], ...] = _SCRUB_ONLY
    _short: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def render(self, value: Any) -> str:
        """``value`` as scrubbed, redacted JSON of at most ``max_bytes`` bytes. Never raises."""
        fast = self._render_plain(value)
        if fast is not None:
            return fast
        try:
            data = to_jsonable(value, max_str=self.max_bytes + _PRECUT_SLACK)
            return dumps_capped(self._clean(data), self.max_bytes)
        except Exception as exc:
            selfstats.failure("content.serialise_failed", exc)
            return _unserialisable(self.max_bytes)

    def _render_plain(self, value: Any) -> str | None:
        """The common case at the cost of one encoding: plain JSON data (e.g. GenAI messages) that fits
        the cap, has no secret key and no text the scrubber would change needs no cleaning walk. None
        means: take the full path."""
        if self.redactors != _SCRUB_ONLY or type(value) not in (list, dict):
            return None
        text = plain_json(value, self.max_bytes, is_secret_key, _PLAIN_KEYS)
        if text is None or might_hold_secrets(text):
            return None
        return text

    def render_parsed_messages(self, messages: Any) -> str:
        """:meth:`render` for GenAI messages that ``llmobs.content``'s builders made from data a JSON parser
        returned: without tool calls, such messages need no walk (:func:`parsed_messages_json`), and their text
        only the scrubber's look. Anything else takes :meth:`render`'s path."""
        if self.redactors == _SCRUB_ONLY:
            text = parsed_messages_json(messages, self.max_bytes)
            if text is not None and not might_hold_secrets(text):
                return text
        return self.render(messages)

    def render_text(self, value: Any) -> str:
        """A plain-string attribute: strings scrubbed, redacted and capped as text, anything else
        rendered as JSON. Never raises."""
        if not isinstance(value, str):
            return self.render(value)
        if self.redactors == _SCRUB_ONLY and len(value) * 4 <= self.max_bytes and not might_hold_secrets(value):
            try:
                value.encode()
                return value
            except UnicodeEncodeError:
                pass
        try:
            text = to_jsonable(value, max_str=self.max_bytes + _PRECUT_SLACK)
            return cap_text(self._text(text), self.max_bytes)
        except Exception as exc:
            selfstats.failure("content.serialise_failed", exc)
            return cap_text("[unserialisable]", self.max_bytes)

    def _clean(self, value: Any) -> Any:
        t = type(value)
        if t is str:
            return self._text(value)
        if t is list:
            return [self._clean(v) for v in value]
        if t is dict:
            return {
                self._text(k): REDACTED if v is not None and is_secret_key(k) else self._clean(v)
                for k, v in value.items()
            }
        return value

    def _text(self, text: str) -> str:
        if len(text) > _SHORT:
            return self._redact(text)
        cached = self._short.get(text)
        if cached is None:
            if len(self._short) >= 4096:
                self._short.clear()
            cached = self._short[text] = self._redact(text)
        return cached

    def _redact(self, text: str) -> str:
        for redact in self.redactors:
            try:
                out = redact(text)
            except Exception as exc:
                selfstats.failure("content.redactor_failed", exc)
                continue
            if isinstance(out, str):
                text = out
            else:
                selfstats.failure("content.redactor_failed", TypeError(f"redactor returned {type(out)}"))
        return text


def _unserialisable(max_bytes: int) -> str:
    text = '"[unserialisable]"'
    return text if len(text) <= max_bytes else '""'
