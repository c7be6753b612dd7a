"""The sampling policy: what ``[sampling]`` in ``llmobs.toml`` (or code, or env) says, validated.

Parsing lives here, next to the policy it builds, and raises :class:`ValueError` with the setting's
name; ``llmobs.config`` adds the file and line.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmobs import semconv as sc

#: Short names usable in rule matches and keys, for the attributes samplers care about.
ALIASES: dict[str, str] = {
    "operation": sc.OPERATION_NAME,
    "provider": sc.PROVIDER_NAME,
    "model": sc.REQUEST_MODEL,
    "agent": sc.AGENT_NAME,
    "workflow": sc.WORKFLOW_NAME,
    "kind": sc.SPAN_KIND,
    "session": sc.SESSION_ID,
    "user": sc.USER_ID,
    "framework": sc.FRAMEWORK,
}
#: Keys that are not span attributes.
SPAN_NAME = "name"
SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Rule:
    """A trace matches when one of its spans matches every condition (values are globs)."""

    match: tuple[tuple[str, str], ...]
    ratio: float

    def matches(self, spans: list[Any], service: str | None) -> bool:
        return any(all(_glob(_value(span, key, service), pattern) for key, pattern in self.match) for span in spans)


@dataclass(frozen=True, slots=True)
class Promote:
    """Outcome rules checked when a trace's local root ends; a matching trace is always kept."""

    error: bool = True
    latency_s: float | None = 30.0
    ttft_s: float | None = 5.0
    tokens: int | None = 32_000
    cost_usd: float | None = 0.25
    finish_reasons: tuple[str, ...] = (sc.FINISH_LENGTH, sc.FINISH_CONTENT_FILTER)
    empty_output: bool = True
    min_eval_score: float | None = None
    interrupted: bool = True  # a span still open when its process shut down (a request cut short)


@dataclass(frozen=True, slots=True)
class Buffer:
    """Bounds of the per-trace buffer that holds spans until their local root ends."""

    max_traces: int = 10_000
    max_spans: int = 200_000
    max_age_s: float = 600.0


@dataclass(frozen=True, slots=True)
class SamplingPolicy:
    """Head ratio with per-key floors and a global cap, rules, and outcome-based promotion.

    Every decision is a probability applied consistently to the trace id, so a kept trace carries its
    adjusted count (1 / probability) and re-weighted totals stay right.
    """

    enabled: bool | None = None  # None: on when exporting off the machine (OTLP), off for the local store alone
    ratio: float | None = None  # None: from OTEL_TRACES_SAMPLER(_ARG), else DEFAULT_RATIO
    floor: int = 10
    floor_window_s: float = 3600.0
    key: tuple[str, ...] = (SERVICE, SPAN_NAME, "model")
    max_traces_per_minute: float | None = None
    key_max_traces_per_minute: float | None = None
    rules: tuple[Rule, ...] = ()
    promote: Promote = field(default_factory=Promote)
    buffer: Buffer = field(default_factory=Buffer)


DEFAULT_RATIO = 0.03
_TOP = {
    "enabled", "ratio", "floor", "floor_window_s", "key", "max_traces_per_minute", "key_max_traces_per_minute",
    "rules", "promote", "buffer",
}  # fmt: skip


def parse(table: Any, where: str = "sampling") -> SamplingPolicy:
    """A validated policy from a mapping (a TOML table or keyword arguments)."""
    if isinstance(table, SamplingPolicy):
        return table
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: expected a table")
    _no_unknown(table, _TOP, where)
    values: dict[str, Any] = {}
    if "enabled" in table:
        values["enabled"] = _bool(table["enabled"], f"{where}.enabled")
    if "ratio" in table:
        values["ratio"] = _ratio(table["ratio"], f"{where}.ratio")
    if "floor" in table:
        values["floor"] = int(_number(table["floor"], f"{where}.floor"))
    if "floor_window_s" in table:
        values["floor_window_s"] = _number(table["floor_window_s"], f"{where}.floor_window_s", minimum=1)
    if "key" in table:
        values["key"] = _names(table["key"], f"{where}.key")
    for name in ("max_traces_per_minute", "key_max_traces_per_minute"):
        if name in table:
            values[name] = _number(table[name], f"{where}.{name}") or None
    if "rules" in table:
        values["rules"] = _rules(table["rules"], f"{where}.rules")
    if "promote" in table:
        values["promote"] = _promote(table["promote"], f"{where}.promote")
    if "buffer" in table:
        values["buffer"] = _buffer(table["buffer"], f"{where}.buffer")
    return SamplingPolicy(**values)


def ratio_from_otel_env(environ: Mapping[str, str]) -> float | None:
    """The head ratio the standard ``OTEL_TRACES_SAMPLER`` / ``_ARG`` variables ask for, if any."""
    sampler = (environ.get("OTEL_TRACES_SAMPLER") or "").strip().lower()
    if sampler in ("always_on", "parentbased_always_on"):
        return 1.0
    if sampler in ("always_off", "parentbased_always_off"):
        return 0.0
    if sampler in ("traceidratio", "parentbased_traceidratio"):
        try:
            return min(max(float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")), 0.0), 1.0)
        except ValueError:
            return 1.0  # the SDK's own fallback for an invalid argument
    return None


def _rules(value: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of rule tables ([[sampling.rules]])")
    rules = []
    for i, entry in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{at}: expected a table with match and ratio")
        _no_unknown(entry, {"match", "ratio"}, at)
        match = entry.get("match")
        if not isinstance(match, Mapping) or not match:
            raise ValueError(f"{at}.match: expected a non-empty table of attribute = glob")
        if "ratio" not in entry:
            raise ValueError(f"{at}: missing ratio")
        conditions = tuple((str(k), str(v)) for k, v in match.items())
        rules.append(Rule(conditions, _ratio(entry["ratio"], f"{at}.ratio")))
    return tuple(rules)


def _promote(value: Any, where: str) -> Promote:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table")
    names = {f.name for f in Promote.__dataclass_fields__.values()}
    _no_unknown(value, names, where)
    values: dict[str, Any] = {}
    for name in ("error", "empty_output", "interrupted"):
        if name in value:
            values[name] = _bool(value[name], f"{where}.{name}")
    for name in ("latency_s", "ttft_s", "cost_usd", "min_eval_score"):
        if name in value:
            values[name] = _optional_number(value[name], f"{where}.{name}")
    if "tokens" in value:
        tokens = _optional_number(value["tokens"], f"{where}.tokens")
        values["tokens"] = None if tokens is None else int(tokens)
    if "finish_reasons" in value:
        values["finish_reasons"] = _names(value["finish_reasons"], f"{where}.finish_reasons")
    return Promote(**values)


def _buffer(value: Any, where: str) -> Buffer:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a table")
    _no_unknown(value, {"max_traces", "max_spans", "max_age_s"}, where)
    values: dict[str, Any] = {}
    for name in ("max_traces", "max_spans"):
        if name in value:
            values[name] = int(_number(value[name], f"{where}.{name}", minimum=1))
    if "max_age_s" in value:
        values["max_age_s"] = _number(value["max_age_s"], f"{where}.max_age_s", minimum=0.001)
    return Buffer(**values)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown setting (known: {', '.join(sorted(known))})")


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{where}: expected true or false, got {value!r}")


def _number(value: Any, where: str, minimum: float = 0) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < minimum:  # NaN and infinities included
        raise ValueError(f"{where}: expected a finite number >= {minimum}, got {value!r}")
    return number


def _optional_number(value: Any, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    return _number(value, where)


def _ratio(value: Any, where: str) -> float:
    ratio = _number(value, where)
    if ratio > 1:
        raise ValueError(f"{where}: expected a ratio between 0 and 1, got {value!r}")
    return ratio


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"{where}: expected a list of names, got {value!r}")
    return tuple(i.strip() for i in items if i.strip())


def _value(span: Any, key: str, service: str | None) -> Any:
    if key == SPAN_NAME:
        return span.name
    if key == SERVICE:
        return service
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)  # see processor._attributes
    return (inner if isinstance(inner, dict) else span.attributes or {}).get(ALIASES.get(key, key))


#: Keys that, when the root span lacks them, are gathered from every span of the trace (the models an
#: agent called are on its LLM spans, not on the agent span).
_GATHERED = frozenset({"model", "provider", sc.REQUEST_MODEL, sc.PROVIDER_NAME})


def key_of(
    root: Any, spans: list[Any], keys: tuple[str, ...], service: str | None, models: tuple[str, ...] = ()
) -> tuple[Any, ...]:
    """The floor/rate key of a trace: values from its local root, or gathered from all its spans
    (``models``: the trace's request models, when the caller already collected them)."""
    out = []
    for key in keys:
        value = _value(root, key, service)
        if value is None and key in _GATHERED:
            if key in ("model", sc.REQUEST_MODEL) and models:
                value = models
            else:
                found = {_value(span, key, service) for span in spans} - {None}
                value = tuple(sorted(map(str, found))) or None
        out.append(value)
    return tuple(out)


def _glob(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    return fnmatch.fnmatchcase(str(value), pattern)
