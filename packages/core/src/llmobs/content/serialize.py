"""Turn arbitrary application objects into bounded, strict JSON without ever raising.

Instrumentation sees whatever the application passes around (framework objects, generators, cyclic
graphs, 10 MB strings), yet every recorded attribute must be valid JSON under a byte cap and cost
little. :func:`to_jsonable` makes any value JSON-able with bounded work; :func:`dumps_capped`
serialises it under a byte cap, shrinking strings, lists and dicts in place (with markers saying what
was cut) rather than chopping the JSON text, so the result still parses and keeps its shape.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import numbers
import re
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import islice
from pathlib import PurePath
from typing import Any

import orjson

from llmobs import selfstats

_INF = 1 << 62
_MAX_NODES = 100_000  # total values one to_jsonable call expands, whatever the shape
_INT_BITS = 12_000  # str() of wider ints hits CPython's digit limit: they become a short description
_ITEMS_KEY = "…"
_CHARS_RE = re.compile(r"…\[\+(\d+) chars\]\Z")
_ITEMS_RE = re.compile(r"…\[\+(\d+) items\]\Z")
_KEYS_RE = re.compile(r"\+(\d+) keys\Z")
_OPAQUE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


# --- markers --------------------------------------------------------------------------------------
# A value that is cut again (pre-cut by to_jsonable, then capped by dumps_capped) keeps one marker
# whose count is the total dropped, so "+N" is always relative to the original value.


def _chars_marker(n: int) -> str:
    return f"…[+{n} chars]"


def _items_marker(n: int) -> str:
    return f"…[+{n} items]"


def _split_str(s: str) -> tuple[int, int]:
    """``(length of s without a trailing chars marker, chars that marker already accounts for)``."""
    if s.endswith(" chars]"):
        m = _CHARS_RE.search(s, max(0, len(s) - 40))
        if m:
            return m.start(), int(m.group(1))
    return len(s), 0


def _split_list(items: list[Any]) -> tuple[list[Any], int]:
    if items and isinstance(items[-1], str) and items[-1].startswith("…"):
        m = _ITEMS_RE.match(items[-1])
        if m:
            return items[:-1], int(m.group(1))
    return items, 0


def _split_dict(d: Mapping[Any, Any]) -> tuple[list[tuple[Any, Any]], int]:
    pairs = list(d.items())
    marker = d.get(_ITEMS_KEY)
    if isinstance(marker, str):
        m = _KEYS_RE.match(marker)
        if m:
            return [p for p in pairs if p[0] != _ITEMS_KEY], int(m.group(1))
    return pairs, 0


def _cut_str(s: str, keep: int) -> str:
    end, hidden = _split_str(s)
    if keep >= end:
        return s
    return s[:keep] + _chars_marker(hidden + end - keep)


def valid_text(s: str) -> str:
    """Replace lone surrogates (which cannot be encoded as UTF-8) with U+FFFD."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return s


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


# --- to_jsonable ----------------------------------------------------------------------------------


def to_jsonable(value: Any, *, max_depth: int = 32, max_items: int = 1000, max_str: int = 1 << 20) -> Any:
    """Convert ``value`` to plain dict/list/str/int/float/bool/None data that ``json.dumps`` accepts
    under ``allow_nan=False``. Never raises; bounded work (strings pre-cut to ``max_str`` chars,
    containers to ``max_items`` entries, nesting to ``max_depth``, and at most 100k values in all).
    Hitting a limit is counted as ``content.limited``."""
    conv = _Converter(max_depth, max_items, max_str)
    try:
        out = conv.convert(value, 0)
    except Exception as exc:  # e.g. RecursionError from a pathological __eq__/__hash__
        selfstats.failure("content.serialise_failed", exc)
        return "[unserialisable]"
    if conv.limited:
        selfstats.count("content.limited")
    return out


class _Converter:
    __slots__ = ("active", "budget", "limited", "max_depth", "max_items", "max_str")

    def __init__(self, max_depth: int, max_items: int, max_str: int) -> None:
        self.max_depth = max_depth
        self.max_items = max(0, max_items)
        self.max_str = max(0, max_str)
        self.budget = _MAX_NODES
        self.active: set[int] = set()  # ids of the containers on the current path (cycle check)
        self.limited = False

    def text(self, s: str) -> str:
        if len(s) > self.max_str:
            self.limited = True
            s = _cut_str(s, self.max_str)
        return valid_text(s)

    def convert(self, v: Any, depth: int) -> Any:
        t = type(v)
        if t is str:
            return v if len(v) <= self.max_str and v.isascii() else self.text(v)
        if t is int:
            return v if v.bit_length() <= _INT_BITS else _wide_int(v)
        if t is float:
            return v if math.isfinite(v) else _float_name(v)
        if v is None or t is bool:
            return v
        if t is dict or t is list:  # the common case, inlined: these cannot raise while expanding
            if depth >= self.max_depth:
                self.limited = True
                return "[too deep]"
            key = id(v)
            if key in self.active:
                return "[cycle]"
            self.active.add(key)
            try:
                return self.mapping(v, depth) if t is dict else self.sequence(v, depth)
            finally:
                self.active.discard(key)
        return self.other(v, depth)

    def other(self, v: Any, depth: int) -> Any:
        if isinstance(v, enum.Enum):
            return self.convert(v.value, depth)
        if isinstance(v, str):
            return self.text(str.__str__(v))
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, int):
            return self.convert(int(v), depth)
        if isinstance(v, float):
            return self.convert(float(v), depth)
        if isinstance(v, numbers.Integral):  # numpy and other registered numeric scalars
            return self.convert(int(v), depth)
        if isinstance(v, numbers.Real):
            return self.convert(float(v), depth)
        if isinstance(v, bytes | bytearray):
            return f"<bytes len={len(v)}>"
        if isinstance(v, memoryview):
            return f"<bytes len={v.nbytes}>"
        if isinstance(v, datetime.date | datetime.time):
            return v.isoformat()
        if isinstance(v, datetime.timedelta):
            return v.total_seconds()
        if isinstance(v, uuid.UUID | decimal.Decimal | PurePath | complex):
            return str(v)
        if isinstance(v, Mapping | Sequence | AbstractSet):
            return self.nested(v, depth, lambda: self.container(v, depth))
        if isinstance(v, Iterator):  # reading it would steal items from the application
            return "<generator>" if isinstance(v, types.GeneratorType) else f"<{type(v).__name__}>"
        if isinstance(v, _OPAQUE):
            return self.text(_describe(v, repr))
        return self.nested(v, depth, lambda: self.structured(v, depth))

    def nested(self, v: Any, depth: int, build: Callable[[], Any]) -> Any:
        """Expand a container or object with depth and cycle limits; on error fall back to repr()."""
        if depth >= self.max_depth:
            self.limited = True
            return "[too deep]"
        key = id(v)
        if key in self.active:
            return "[cycle]"
        self.active.add(key)
        try:
            return build()
        except Exception as exc:
            selfstats.failure("content.object_dump_failed", exc)
            return self.text(_describe(v, repr))
        finally:
            self.active.discard(key)

    def structured(self, v: Any, depth: int) -> Any:
        """Framework objects: pydantic v2 / v1 models, dataclasses, plain objects, else repr()."""
        cls = type(v)
        if callable(getattr(cls, "model_dump", None)):
            return self.convert(v.model_dump(), depth)
        if callable(getattr(cls, "dict", None)) and hasattr(cls, "__fields__"):
            return self.convert(v.dict(), depth)
        if dataclasses.is_dataclass(cls):
            return self.mapping({f.name: getattr(v, f.name) for f in dataclasses.fields(cls)}, depth)
        attrs = getattr(v, "__dict__", None)
        if isinstance(attrs, dict):
            public = {k: a for k, a in attrs.items() if isinstance(k, str) and not k.startswith("_")}
            if public:
                return self.mapping(public, depth)
        return self.text(_describe(v, repr))

    def container(self, v: Any, depth: int) -> Any:
        if isinstance(v, Mapping):
            return self.mapping(v, depth)
        if isinstance(v, tuple) and hasattr(type(v), "_fields"):  # namedtuple: keep the names
            return self.mapping(v._asdict(), depth)
        return self.sequence(v, depth)

    def take(self, n: int) -> int:
        """How many of ``n`` entries to expand, given the per-container and total limits."""
        k = min(n, self.max_items, max(0, self.budget))
        self.budget -= k
        if k < n:
            self.limited = True
        return k

    def mapping(self, v: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        n = len(v)
        k = self.take(n)
        depth += 1
        convert, key, max_str = self.convert, self.key, self.max_str
        out = {}
        for name, val in v.items() if k == n else islice(v.items(), k):
            plain = type(name) is str and len(name) <= max_str and name.isascii()
            out[name if plain else key(name)] = convert(val, depth)
        if k < n:
            out[_ITEMS_KEY] = f"+{n - k} keys"
        return out

    def sequence(self, v: Any, depth: int) -> list[Any]:
        if isinstance(v, AbstractSet):
            v = _ordered(v)
        n = len(v)
        k = self.take(n)
        depth += 1
        convert = self.convert
        out = [convert(x, depth) for x in (v if k == n else islice(v, k))]
        if k < n:
            out.append(_items_marker(n - k))
        return out

    def key(self, k: Any) -> str:
        if isinstance(k, enum.Enum):
            k = k.value
        if isinstance(k, str):
            return self.text(str.__str__(k))
        if k is None or isinstance(k, bool | int | float):
            c = self.convert(k, 0)
            return c if isinstance(c, str) else json.dumps(c)  # how json.dumps spells such keys
        return self.text(_describe(k, str))


def _ordered(s: set[Any] | frozenset[Any]) -> list[Any]:
    """Sets in a stable order when their items compare, so output is deterministic."""
    try:
        return sorted(s)
    except Exception:
        return list(s)


def _wide_int(v: int) -> str:
    return f"<int bits={v.bit_length()}>"


def _float_name(v: float) -> str:
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _describe(v: Any, fn: Callable[[Any], str]) -> str:
    """``repr(v)``/``str(v)``, or ``<TypeName>`` when that raises or returns a non-string."""
    try:
        r = fn(v)
        if isinstance(r, str):
            return r
    except Exception as exc:
        selfstats.failure("content.repr_failed", exc)
    return f"<{type(v).__name__}>"


# --- dumps_capped / cap_text ----------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps_capped(obj: Any, max_bytes: int) -> str:
    """Compact JSON of ``obj`` in at most ``max_bytes`` UTF-8 bytes, always valid.

    When the plain dump is too big, strings are cut (``…[+N chars]``), lists keep their head plus a
    ``…[+N items]`` entry and dicts their first keys plus ``"…": "+N keys"``; the limits are found
    by binary search so as much as possible is kept. The result is deterministic. Guaranteed to fit
    for ``max_bytes >= 16``; below that it returns the shortest JSON that fits, ``""``.
    """
    if surely_longer(obj, max_bytes):
        # Never dumped whole: a list repeating one 10 MB string a thousand times would be 10 GB of JSON.
        # Shrinking cuts every string and list to what the budget can hold before anything is encoded.
        selfstats.count("content.truncated")
        try:
            return _shrink_to_fit(obj, max_bytes) or _fallback(max_bytes + 1, max_bytes)
        except (TypeError, ValueError, RecursionError):  # not JSON-able (objects, NaN, cycles)
            obj = to_jsonable(obj, max_str=max(max_bytes, 0))
            return _shrink_to_fit(obj, max_bytes) or _fallback(max_bytes + 1, max_bytes)
    try:
        text = _dumps(obj)
        size = _utf8_len(text)
    except (TypeError, ValueError, RecursionError):  # not JSON-able after all (NaN, objects, surrogates)
        obj = to_jsonable(obj)
        text = _dumps(obj)
        size = _utf8_len(text)
    if size <= max_bytes:
        return text
    selfstats.count("content.truncated")
    return _shrink_to_fit(obj, max_bytes) or _fallback(len(text), max_bytes)


def plain_json(
    obj: Any, max_bytes: int, refuse_key: Callable[[str], bool], accepted: set[str] | None = None
) -> str | None:
    """Compact JSON of ``obj`` if it is plain data that fits ``max_bytes`` UTF-8 bytes and has no dict key
    that ``refuse_key`` refuses, by orjson (~10x the standard encoder). None when it needs
    :func:`dumps_capped`'s care: too long, objects, integers past 64 bits, non-string or refused keys, lone
    surrogates, NaN or infinities, nesting deeper than orjson's 254 levels. Data with floats is encoded by
    the standard encoder, whose float notation (``1e-05``) the full path keeps.

    ``accepted``: keys ``refuse_key`` is known to accept, kept by the caller across calls (the same few keys
    come in every message: a set lookup instead of a call each); keys it accepts here are added, up to
    :data:`ACCEPTED_KEYS_MAX`."""
    walked = _walk(obj, max_bytes, refuse_key, accepted)
    if walked < 0:
        return None
    if walked == _FLOATS:
        try:
            text = _dumps(obj)
            size = _utf8_len(text)
        except (TypeError, ValueError, RecursionError):  # NaN, infinities, lone surrogates (UnicodeEncodeError)
            return None
        return text if size <= max_bytes else None
    try:
        raw = orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError: integers past 64 bits, lone surrogates, deep nesting
        return None
    return raw.decode() if len(raw) <= max_bytes else None


#: orjson writes dataclasses, datetimes and str/int/dict/list subclasses itself; with these options it refuses them.
_ORJSON_PLAIN_ONLY = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def parsed_messages_json(messages: Any, max_bytes: int) -> str | None:
    """Compact JSON of GenAI messages that ``llmobs.content``'s builders made from data a JSON parser returned
    (a request's or a response's messages), if it fits ``max_bytes`` UTF-8 bytes and none of them holds a tool
    call or a tool's answer: one orjson encoding and no walk. What the walk looks for cannot be there: such data
    is a tree (no shared references, no cycles, no objects) about as long as the text it came from, and the
    builders' own keys are never secret — application keys come only in tool calls' arguments and tools'
    answers, whose part types the text is searched for. None for anything else: the full path decides then."""
    try:
        raw = orjson.dumps(messages, option=_ORJSON_PLAIN_ONLY)
    except TypeError:  # orjson.JSONEncodeError: objects, integers past 64 bits, lone surrogates, deep nesting
        return None
    if len(raw) > max_bytes or b'"tool_call' in raw:  # "tool_call" and "tool_call_response" parts
        return None
    return raw.decode()


def surely_longer(obj: Any, limit: int) -> bool:
    """Whether the JSON of ``obj`` is certainly longer than ``limit`` bytes (see :func:`_walk`)."""
    return _walk(obj, limit, None) == _LONGER


_LONGER, _NOT_PLAIN, _FLOATS = -1, -2, 1
#: Bound of a caller's ``accepted`` key set (keys come from applications' data: tool arguments...).
ACCEPTED_KEYS_MAX = 4096


def _walk(obj: Any, limit: int, refuse_key: Callable[[str], bool] | None, accepted: set[str] | None = None) -> int:
    """Count a lower bound of the length of ``obj``'s JSON (a string's characters, one per value or entry),
    stopping with :data:`_LONGER` as soon as it passes ``limit`` — so the work is bounded by ``limit``,
    whatever ``obj`` holds (shared references, cycles). Else :data:`_FLOATS` if it holds a float, 0 if not.

    With ``refuse_key`` the walk is strict: :data:`_NOT_PLAIN` at a key that is not a string or that
    ``refuse_key`` refuses, or at a value not exactly of a JSON type (objects, and subclasses: a str
    subclass could be shared, and huge). Without, subclasses count as their bases and objects as 1.
    ``accepted`` as for :func:`plain_json` (strict walks only)."""
    total = 0
    found = 0
    strict = refuse_key is not None
    if strict and accepted is None:
        accepted = set()
    stack = [obj]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            total += len(item) + 2
        elif kind is dict:
            total += 2 + len(item)
            for key, value in item.items():
                if type(key) is str:
                    if strict and key not in accepted:
                        if refuse_key(key):
                            return _NOT_PLAIN
                        if len(accepted) < ACCEPTED_KEYS_MAX:
                            accepted.add(key)
                    total += len(key) + 3
                elif strict:
                    return _NOT_PLAIN
                else:
                    total += 3
                if type(value) is str:  # most values: counted here rather than pushed and popped
                    total += len(value) + 2
                else:
                    push(value)
        elif kind is list or kind is tuple:
            total += 1 + len(item)
            extend(item)
        elif kind is float:
            found = _FLOATS
            total += 1
        elif kind is int or kind is bool or item is None:
            total += 1
        elif strict:
            return _NOT_PLAIN
        elif isinstance(item, str | dict | list | tuple):  # subclasses: the same, the slow way
            total += len(item) + 2
            if isinstance(item, dict):
                extend(item.values())
            elif not isinstance(item, str):
                extend(item)
        else:
            total += 1
        if total > limit:
            return _LONGER
    return found


def _shrink_to_fit(obj: Any, max_bytes: int) -> str | None:
    def attempt(s_lim: int, i_lim: int, budget: int = max_bytes) -> str | None:
        t = _dumps(_shrink(obj, s_lim, i_lim))
        return t if _utf8_len(t) <= budget else None

    def largest(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
        """Largest x in [lo, hi] with fits(x), given fits(lo) (sizes grow with x, nearly monotonic)."""
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    str_cap, item_cap = max_bytes, max_bytes // 2  # nothing longer or more numerous can fit
    items = _INF
    if attempt(0, _INF) is None:
        # Too many entries: give the skeleton half the budget (or all of it, if that is what it takes).
        if attempt(0, 0, max_bytes // 2) is not None:
            items = largest(0, item_cap, lambda i: attempt(0, i, max_bytes // 2) is not None)
        elif attempt(0, 0) is not None:
            items = 0
        else:
            return None
    chars = largest(0, str_cap, lambda s: attempt(s, items) is not None)
    if items != _INF and chars == str_cap:  # strings were never the problem: spend the rest on entries
        items = largest(items, item_cap, lambda i: attempt(chars, i) is not None)
    return attempt(chars, items)


def _shrink(v: Any, s_lim: int, i_lim: int) -> Any:
    if isinstance(v, str):
        return _shrink_str(v, s_lim)
    if isinstance(v, list | tuple):
        body, hidden = _split_list(list(v))
        if len(body) > i_lim:
            head = [_shrink(x, s_lim, i_lim) for x in body[:i_lim]]
            return [*head, _items_marker(hidden + len(body) - i_lim)]
        return [_shrink(x, s_lim, i_lim) for x in v]
    if isinstance(v, dict):
        pairs, hidden = _split_dict(v)
        if len(pairs) > i_lim:
            out = {_shrink_key(k, s_lim): _shrink(x, s_lim, i_lim) for k, x in pairs[:i_lim]}
            out[_ITEMS_KEY] = f"+{hidden + len(pairs) - i_lim} keys"
            return out
        return {_shrink_key(k, s_lim): _shrink(x, s_lim, i_lim) for k, x in v.items()}
    return v


def _shrink_str(s: str, s_lim: int) -> str:
    if len(s) <= s_lim:
        return s
    cut = _cut_str(s, s_lim)
    return cut if len(cut) < len(s) else s


def _shrink_key(k: Any, s_lim: int) -> Any:
    return _shrink_str(k, s_lim) if isinstance(k, str) else k


def _fallback(text_len: int, max_bytes: int) -> str:
    """When not even the skeleton fits: a JSON string saying how much was dropped."""
    for candidate in (_dumps(_chars_marker(text_len)), '"…"'):
        if _utf8_len(candidate) <= max_bytes:
            return candidate
    return '""'


def cap_text(text: str, max_bytes: int) -> str:
    """``text`` cut on a character boundary to at most ``max_bytes`` UTF-8 bytes, ending with a
    ``…[+N chars]`` marker that counts towards the budget (just ``…``, or nothing, if the budget is
    too small for the marker). Lone surrogates become U+FFFD so the result always encodes."""
    text = valid_text(text)
    if _utf8_len(text) <= max_bytes:
        return text
    selfstats.count("content.truncated")
    end, hidden = _split_str(text)
    worst = _chars_marker(hidden + end)  # the real marker is never longer than this
    room = max_bytes - _utf8_len(worst)
    if room >= 0:
        kept = _prefix(text, end, room)
        marker = _chars_marker(hidden + end - len(kept))
        if len(marker) < len(worst):  # the real marker is shorter: spend the difference on text
            kept = _prefix(text, end, max_bytes - _utf8_len(marker))
            marker = _chars_marker(hidden + end - len(kept))
        return kept + marker
    if max_bytes >= 3:
        return _prefix(text, end, max_bytes - 3) + "…"
    return _prefix(text, end, max(0, max_bytes))


def _prefix(s: str, limit: int, max_bytes: int) -> str:
    """The longest prefix of ``s[:limit]`` that fits in ``max_bytes`` UTF-8 bytes."""
    return s[: min(limit, max_bytes)].encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
