"""to_jsonable / dumps_capped / cap_text: strict JSON, byte caps, hostile inputs."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import uuid
from collections import namedtuple
from pathlib import PurePosixPath
from typing import ClassVar

import pydantic
import pytest
from hostile_json import CAPS, CHARS, JSONISH, size, strict_loads
from hypothesis import given, settings
from hypothesis import strategies as st

from llmobs import selfstats
from llmobs.content import cap_text, dumps_capped, to_jsonable


def nested(depth: int):
    value: object = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(JSONISH, CAPS)
def test_dumps_capped_is_strict_json_within_cap(value, cap):
    data = to_jsonable(value)
    out = dumps_capped(data, cap)
    strict_loads(out)
    assert size(out) <= cap


@settings(max_examples=200, deadline=None)
@given(JSONISH, CAPS)
def test_values_that_fit_round_trip_unchanged(value, cap):
    data = to_jsonable(value)
    plain = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    out = dumps_capped(data, cap)
    if size(plain) <= cap:
        assert out == plain
        assert strict_loads(out) == data
    else:
        assert out != plain


@settings(max_examples=200, deadline=None)
@given(st.text(CHARS, max_size=300), st.integers(min_value=0, max_value=400))
def test_cap_text_fits_and_keeps_a_prefix(text, cap):
    out = cap_text(text, cap)
    assert size(out) <= cap
    clean = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if size(clean) <= cap:
        assert out == clean
    else:
        kept = out.split("…", 1)[0]
        assert clean.startswith(kept)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=15), JSONISH)
def test_tiny_caps_still_give_valid_json(cap, value):
    out = dumps_capped(to_jsonable(value), cap)
    strict_loads(out)
    assert size(out) <= max(cap, 2)


# --- to_jsonable: hostile and framework inputs ----------------------------------------------------


def test_cycles_become_markers():
    d: dict = {"name": "root"}
    d["self"] = d
    lst: list = [1]
    lst.append(lst)
    assert to_jsonable(d) == {"name": "root", "self": "[cycle]"}
    assert to_jsonable(lst) == [1, "[cycle]"]


def test_shared_references_are_not_cycles():
    shared = {"a": 1}
    assert to_jsonable([shared, shared]) == [{"a": 1}, {"a": 1}]


def test_object_cycle_through_attributes():
    class Node:
        def __init__(self):
            self.child = self

    assert to_jsonable(Node()) == {"child": "[cycle]"}


def test_repr_that_raises_gives_type_name():
    class Evil:
        __slots__ = ()

        def __repr__(self):
            raise RuntimeError("boom")

        __str__ = __repr__

    assert to_jsonable(Evil()) == "<Evil>"
    assert to_jsonable({Evil(): 1}) == {"<Evil>": 1}


def test_bytes_are_referenced_not_inlined():
    assert to_jsonable(b"\xff\xfe\x00 invalid utf-8") == "<bytes len=17>"
    assert to_jsonable(bytearray(3)) == "<bytes len=3>"
    assert to_jsonable(memoryview(b"abcd")) == "<bytes len=4>"


def test_non_finite_floats_and_wide_ints():
    assert to_jsonable([float("nan"), float("inf"), -float("inf"), 1.5]) == [
        "NaN",
        "Infinity",
        "-Infinity",
        1.5,
    ]
    assert to_jsonable(2**63) == 2**63
    assert to_jsonable(2**100) == 2**100  # valid JSON; the same as a plain json.dumps gives
    assert to_jsonable(10**5000) == f"<int bits={(10**5000).bit_length()}>"


def test_lone_surrogates_are_replaced():
    out = to_jsonable({"k\udc80": "a\ud800b"})
    assert out == {"k\ufffd": "a\ufffdb"}
    json.dumps(out, ensure_ascii=False).encode("utf-8")


def test_a_lone_surrogate_beside_a_float_is_rendered_not_raised():
    """Plain data holding a float takes the standard encoder's path, which writes a lone surrogate as is: its
    UTF-8 size cannot be measured, so the full path (which replaces it) must take over."""
    from llmobs.content.policy import ContentPolicy

    for value in ({"messages": 0.0, "role": "\ud800"}, [1.5, "a\udc80"]):
        text = ContentPolicy().render(value)
        text.encode("utf-8")  # valid UTF-8: the surrogate was replaced
        assert "\ufffd" in json.dumps(json.loads(text), ensure_ascii=False)


def test_generators_and_iterators_are_not_consumed():
    def gen():
        yield 1
        yield 2

    g = gen()
    it = iter([1, 2, 3])
    assert to_jsonable({"g": g, "it": it}) == {"g": "<generator>", "it": "<list_iterator>"}
    assert list(g) == [1, 2]
    assert list(it) == [1, 2, 3]


def test_pydantic_dataclass_and_plain_objects():
    class Inner(pydantic.BaseModel):
        x: int

    class Outer(pydantic.BaseModel):
        name: str
        inner: Inner
        when: datetime.date

    @dataclasses.dataclass
    class DC:
        a: int
        b: list

    class Plain:
        def __init__(self):
            self.visible = 1
            self._hidden = 2

    outer = Outer(name="n", inner=Inner(x=1), when=datetime.date(2024, 1, 2))
    assert to_jsonable(outer) == {"name": "n", "inner": {"x": 1}, "when": "2024-01-02"}
    assert to_jsonable(DC(1, [2])) == {"a": 1, "b": [2]}
    assert to_jsonable(Plain()) == {"visible": 1}


def test_pydantic_v1_style_dict_method():
    class V1Like:
        __fields__: ClassVar[dict] = {"a": None}

        def dict(self):
            return {"a": 1}

    assert to_jsonable(V1Like()) == {"a": 1}


def test_model_dump_that_raises_falls_back_to_repr():
    class Broken:
        def model_dump(self):
            raise RuntimeError("no")

        def __repr__(self):
            return "Broken()"

    assert to_jsonable(Broken()) == "Broken()"


def test_standard_library_scalars():
    class Color(enum.Enum):
        RED = "red"

    Point = namedtuple("Point", "x y")
    u = uuid.UUID(int=1)
    value = {
        "enum": Color.RED,
        "dt": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "td": datetime.timedelta(seconds=1.5),
        "uuid": u,
        "dec": decimal.Decimal("1.10"),
        "path": PurePosixPath("/tmp/x"),
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "point": Point(1, 2),
        "keys": {2: "int", None: "none", False: "bool", 1.5: "float", Color.RED: "enum"},
        "fn": len,
        "fraction": fractions.Fraction(1, 4),
    }
    assert to_jsonable(value) == {
        "enum": "red",
        "dt": "2024-01-02T03:04:05",
        "td": 1.5,
        "uuid": str(u),
        "dec": "1.10",
        "path": "/tmp/x",
        "set": [1, 2, 3],
        "tuple": [1, "a"],
        "point": {"x": 1, "y": 2},
        "keys": {"2": "int", "null": "none", "false": "bool", "1.5": "float", "red": "enum"},
        "fn": "<built-in function len>",
        "fraction": 0.25,
    }


def test_limits_depth_items_and_strings():
    selfstats.reset()
    deep = to_jsonable(nested(10), max_depth=3)
    assert deep == [{"k": ["[too deep]"]}]
    assert to_jsonable(list(range(5)), max_items=2) == [0, 1, "…[+3 items]"]
    assert to_jsonable({"a": 1, "b": 2, "c": 3}, max_items=1) == {"a": 1, "…": "+2 keys"}
    assert to_jsonable("abcdef", max_str=2) == "ab…[+4 chars]"
    assert selfstats.snapshot()["content.limited"] == 4


def test_total_work_is_bounded():
    wide = [[0] * 1000 for _ in range(1000)]  # a million leaves
    out = to_jsonable(wide)
    assert sum(len(row) for row in out) < 200_000
    assert out[-1] == "…[+900 items]" or out[-1][-1].startswith("…[+")


def test_huge_string_is_precut_cheaply():
    big = "x" * 10_000_000
    out = to_jsonable(big, max_str=100)
    assert out == "x" * 100 + "…[+9999900 chars]"


# --- dumps_capped ---------------------------------------------------------------------------------


def test_fits_is_plain_compact_json():
    selfstats.reset()
    assert dumps_capped({"a": [1, "é"]}, 100) == '{"a":[1,"é"]}'
    assert "content.truncated" not in selfstats.snapshot()


def test_long_string_is_cut_with_count():
    selfstats.reset()
    out = dumps_capped({"role": "user", "content": "y" * 1000}, 100)
    data = strict_loads(out)
    assert data["role"] == "user"
    assert data["content"].startswith("yyyy")
    kept = data["content"].split("…")[0]
    assert data["content"].endswith(f"…[+{1000 - len(kept)} chars]")
    assert size(out) <= 100
    assert size(out) > 80  # the budget is used, not wasted
    assert selfstats.snapshot()["content.truncated"] == 1


def test_small_strings_survive_when_one_is_huge():
    value = [{"role": "system", "content": "be brief"}, {"role": "tool", "content": "z" * 50_000}]
    data = strict_loads(dumps_capped(value, 300))
    assert data[0] == {"role": "system", "content": "be brief"}
    assert data[1]["role"] == "tool"


def test_long_list_keeps_head_and_counts_the_rest():
    data = strict_loads(dumps_capped(list(range(10_000)), 200))
    assert data[:3] == [0, 1, 2]
    assert data[-1] == f"…[+{10_000 - (len(data) - 1)} items]"


def test_wide_dict_keeps_first_keys():
    value = {f"key{i}": i for i in range(1000)}
    data = strict_loads(dumps_capped(value, 200))
    assert list(data)[:2] == ["key0", "key1"]
    assert data["…"] == f"+{1000 - (len(data) - 1)} keys"


def test_precut_and_cap_report_the_total_dropped():
    precut = to_jsonable("a" * 100_000, max_str=1000)
    data = strict_loads(dumps_capped(precut, 100))
    kept = data.split("…")[0]
    assert data == kept + f"…[+{100_000 - len(kept)} chars]"
    trimmed = to_jsonable(list(range(5000)), max_items=1000)
    data = strict_loads(dumps_capped(trimmed, 100))
    assert data[-1] == f"…[+{5000 - (len(data) - 1)} items]"


def test_deep_nesting_under_a_small_cap():
    out = dumps_capped(to_jsonable(nested(30)), 16)
    strict_loads(out)
    assert size(out) <= 16


def test_accepts_non_jsonable_input():
    out = dumps_capped({"x": float("nan"), "b": b"12", "s": {1}}, 1000)
    assert strict_loads(out) == {"x": "NaN", "b": "<bytes len=2>", "s": [1]}


def test_multibyte_content_counts_bytes():
    out = dumps_capped(["中" * 5000], 301)
    assert size(out) <= 301
    assert strict_loads(out)[0].startswith("中" * 50)


def test_deterministic():
    value = to_jsonable({"a": ["b" * 3000, {"c": list(range(500))}], "d": "e" * 700})
    assert len({dumps_capped(value, 500) for _ in range(3)}) == 1


def test_shortest_json_below_the_guaranteed_cap():
    assert dumps_capped("", 2) == '""'
    assert dumps_capped("abcdefghijklmnopqrstuvwxyz", 5) == '"…"'
    assert dumps_capped(["x" * 100], 1) == '""'


def test_large_fitting_value_is_the_plain_dump():
    value = [{"role": "user", "content": "hello " * 20} for _ in range(50)]
    plain = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert dumps_capped(value, 100_000) == plain


# --- cap_text -------------------------------------------------------------------------------------


def test_cap_text_marker_is_inside_budget():
    out = cap_text("é" * 100, 30)
    assert size(out) <= 30
    assert out == "é" * 8 + "…[+92 chars]"  # 16 + 14 bytes: the whole budget


@pytest.mark.parametrize(("cap", "expected"), [(5, "ab…"), (2, "ab"), (0, "")])
def test_cap_text_without_room_for_the_marker(cap, expected):
    assert cap_text("abcdefghijklmnopqrstuvwxyz", cap) == expected


def test_cap_text_fitting_is_unchanged():
    assert cap_text("short", 5) == "short"


def test_plain_json_remembers_accepted_keys_never_refused_ones_and_stays_bounded(monkeypatch):
    from llmobs.content import serialize
    from llmobs.content.scrub import is_secret_key

    asked: list[str] = []

    def refuse(key: str) -> bool:
        asked.append(key)
        return is_secret_key(key)

    accepted: set[str] = set()
    message = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    first = serialize.plain_json(message, 1000, refuse, accepted)
    assert first == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert accepted == {"role", "parts", "type", "content"} and len(asked) == 4
    assert serialize.plain_json(message, 1000, refuse, accepted) == first
    assert len(asked) == 4  # remembered: not asked again
    # A refused key is asked every time and never remembered.
    assert serialize.plain_json({"role": "user", "api_key": "x"}, 1000, refuse, accepted) is None
    assert serialize.plain_json({"api_key": "x"}, 1000, refuse, accepted) is None
    assert asked.count("api_key") == 2 and "api_key" not in accepted
    monkeypatch.setattr(serialize, "ACCEPTED_KEYS_MAX", 6)
    serialize.plain_json({f"k{i}": i for i in range(10)}, 1000, refuse, accepted)
    assert len(accepted) == 6


def test_plain_json_without_an_accepted_set_checks_every_key():
    from llmobs.content import serialize
    from llmobs.content.scrub import is_secret_key

    plain = serialize.plain_json({"role": "user", "content": "hi"}, 1000, is_secret_key)
    assert plain == '{"role":"user","content":"hi"}'
    assert serialize.plain_json({"password": "x"}, 1000, is_secret_key) is None
