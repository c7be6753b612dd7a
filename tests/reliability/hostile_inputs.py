"""Hostile values and the bookkeeping the extension fuzz tests share (imported by name: conftest.py puts this
folder on ``sys.path``).

``VALUES`` draws what a framework might hand an integration on a bad day: cyclic containers, bytes, NaN and
infinities, 10 MB strings, lone surrogates, very deep nesting, objects whose ``repr``/``str``/attributes
raise, infinite iterators, and look-alikes of framework types with the wrong fields. ``OpenSpans`` is an
SDK span processor that keeps the spans started and not yet ended, so a test can check none is left.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import itertools
import math
import os
import threading
import uuid
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from llmobs import finisher
from llmobs import semconv as sc

HUGE = "x" * 10_000_000  # built once: 10 MB of text
HUGE_UNICODE = "é😀\ud800" * 1_000_000  # 3 M code points, with a lone surrogate in each triple


def fuzz(examples: int) -> settings:
    """Hypothesis settings for a fuzz test: ``examples`` inputs (times ``LLMOBS_FUZZ_SCALE``, for a longer
    campaign than CI's), no deadline, no example database. Inputs are new each run; a failure prints the
    ``@reproduce_failure`` line that replays it."""
    scale = os.environ.get("LLMOBS_FUZZ_SCALE", "1")
    if not scale.isdigit() or int(scale) < 1:
        raise ValueError(f"LLMOBS_FUZZ_SCALE must be a whole number of at least 1, not {scale!r}")
    return settings(max_examples=examples * int(scale), deadline=None, suppress_health_check=list(HealthCheck),
                    database=None, phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink), print_blob=True)


class Raises:
    """An object every common protocol of which raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"getattr {name}")

    def __len__(self) -> int:
        raise RuntimeError("len")

    def __iter__(self):
        raise RuntimeError("iter")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        raise RuntimeError("bool")


class Liar(dict):
    """A mapping whose items() raises halfway and whose get() returns garbage."""

    def items(self):
        yield "k", 1
        raise RuntimeError("items")

    def get(self, key, default=None):
        return Raises()


class BadIndex(list):
    def __getitem__(self, index):
        raise IndexError("nope")


def cyclic_dict() -> dict:
    d: dict[str, Any] = {"role": "user", "content": "hi"}
    d["self"] = d
    d["list"] = [d, {"inner": d}]
    return d


def cyclic_list() -> list:
    items: list[Any] = [1, "two"]
    items.append(items)
    return items


def deep(depth: int = 5_000) -> list:
    node: list[Any] = []
    for _ in range(depth):
        node = [node]
    return node


def deep_dict(depth: int = 5_000) -> dict:
    node: dict[str, Any] = {}
    for _ in range(depth):
        node = {"content": node, "role": "user"}
    return node


_FIXED = [
    None,
    True,
    0,
    -1,
    2**64,
    10**400,
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e308,
    complex(1, math.nan),
    decimal.Decimal("NaN"),
    decimal.Decimal("1e999999"),
    datetime.datetime.max,
    "",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\u202e\u2066 rtl",
    "😀" * 100,
    b"\xff\xfe\x00",
    bytearray(b"abc"),
    memoryview(b"xyz"),
    Ellipsis,
    NotImplemented,
    object,
    type,
    len,
    uuid.UUID(int=0),
    frozenset({1, "a"}),
    {1, 2, 3},
    collections.deque([1, 2]),
    collections.OrderedDict(a=1),
    range(10**12),
    ValueError("an exception as a value"),
    SimpleNamespace(content=None, type="ai", role=None),
    SimpleNamespace(content=[{"type": "text"}, None, 3], tool_calls="x", usage_metadata={"input_tokens": "NaN"}),
    {"role": None, "content": {"nested": [math.nan]}},
    {"type": "image_url", "image_url": "data:image/png;base64," + "A" * 1000},
    {"type": "image_url", "image_url": {"url": 5}},
    [{"type": "text", "text": math.inf}, {"type": None}, "plain", 7],
    {"input_tokens": math.nan, "output_tokens": -5, "total_tokens": "ten"},
    {"token_usage": {"prompt_tokens": 10**30, "completion_tokens": math.inf}},
    {"messages": [{"role": "user", "content": "\ud800"}], "api_key": "sk-secret"},
]


def _fresh() -> st.SearchStrategy[Any]:
    """Values built anew per example (mutable, or too costly to keep many of)."""
    return st.sampled_from([
        cyclic_dict, cyclic_list, deep, deep_dict, Raises, Liar, lambda: BadIndex([1, 2]),
        lambda: itertools.count(), lambda: (i for i in itertools.count()), lambda: iter([1, 2, 3]),
        lambda: HUGE, lambda: HUGE_UNICODE, lambda: {"content": HUGE}, lambda: [HUGE_UNICODE],
        lambda: threading.Lock(), lambda: SimpleNamespace(**{"content": Raises(), "text": Raises()}),
    ]).map(lambda make: make())


LEAVES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(_FIXED),
    _fresh(),
    st.text(st.characters(), max_size=30),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=5),
    st.floats(),
    st.integers(),
    st.binary(max_size=30),
)

VALUES: st.SearchStrategy[Any] = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(["role", "content", "type", "text"])),
                        inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=8,
)


class OpenSpans(SpanProcessor):
    """Spans started and not yet ended, of one ``gen_ai.framework`` (other tests' spans are ignored)."""

    def __init__(self, framework: str | None = None) -> None:
        self.framework = framework
        self._open: dict[int, Any] = {}
        self.started = 0
        self.ended = 0
        self._lock = threading.Lock()

    def _ours(self, span: Any) -> bool:
        return self.framework is None or (span.attributes or {}).get(sc.FRAMEWORK) == self.framework

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self._ours(span):
            with self._lock:
                self._open[span.context.span_id] = span
                self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self._open.pop(span.context.span_id, None) is not None:
                self.ended += 1

    def still_open(self) -> list[str]:
        """Spans still open once the calls that ended are finished (some are finished in the background)."""
        finisher.flush()
        with self._lock:
            return [s.name for s in self._open.values()]

    def forget(self) -> None:
        with self._lock:
            self._open.clear()


def no_context_left(before: otel_context.Context) -> None:
    """Nothing attached to the OTel context by the integration is left behind."""
    assert otel_context.get_current() == before, "OTel context left attached"
    assert not trace.get_current_span().get_span_context().is_valid
