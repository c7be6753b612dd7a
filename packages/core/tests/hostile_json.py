"""Shared by the content tests: hostile JSON-ish values and strict JSON checks."""

from __future__ import annotations

import json

from hypothesis import strategies as st

CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]))  # incl. lone surrogates
TEXT = st.one_of(
    st.text(CHARS, max_size=40),
    st.builds(lambda c, n: c * n, st.text(CHARS, min_size=1, max_size=3), st.integers(0, 12_000)),
)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.binary(max_size=20),
)
#: Nested lists, tuples and dicts (with non-string keys) of hostile leaves.
JSONISH = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=30),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, st.integers()), inner, max_size=20),
    ),
    max_leaves=80,
)
CAPS = st.integers(min_value=16, max_value=20_000)


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-strict JSON constant {name}")


def strict_loads(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""
    return json.loads(text, parse_constant=_reject_constant)


def size(text: str) -> int:
    return len(text.encode("utf-8"))
