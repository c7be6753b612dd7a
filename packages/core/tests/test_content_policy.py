"""CaptureMode parsing and ContentPolicy rendering: scrubbed, redacted, capped, never raising."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from hostile_json import CAPS, JSONISH, TEXT, size, strict_loads
from hypothesis import given, settings
from hypothesis import strategies as st

from llmobs import selfstats
from llmobs.content import CaptureMode, ContentPolicy, redact_pii, scrub_text, to_jsonable
from llmobs.content.serialize import dumps_capped

# --- CaptureMode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NO_CONTENT", CaptureMode.NO_CONTENT),
        ("span_only", CaptureMode.SPAN_ONLY),
        (" Event_Only ", CaptureMode.EVENT_ONLY),
        ("SPAN_AND_EVENT", CaptureMode.SPAN_AND_EVENT),
        ("true", CaptureMode.SPAN_ONLY),
        ("TRUE", CaptureMode.SPAN_ONLY),
        ("1", CaptureMode.SPAN_ONLY),
        ("false", CaptureMode.NO_CONTENT),
        ("False", CaptureMode.NO_CONTENT),
        ("0", CaptureMode.NO_CONTENT),
    ],
)
def test_parse_accepts_modes_and_booleans(value, expected):
    assert CaptureMode.parse(value, CaptureMode.EVENT_ONLY) is expected


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_unset_gives_default_silently(value):
    selfstats.reset()
    assert CaptureMode.parse(value, CaptureMode.SPAN_AND_EVENT) is CaptureMode.SPAN_AND_EVENT
    assert selfstats.snapshot() == {}


def test_parse_invalid_gives_default_and_warns_once(caplog):
    selfstats.reset()
    with caplog.at_level(logging.WARNING, logger="llmobs"):
        assert CaptureMode.parse("everything", CaptureMode.SPAN_ONLY) is CaptureMode.SPAN_ONLY
        assert CaptureMode.parse("bogus", CaptureMode.NO_CONTENT) is CaptureMode.NO_CONTENT
    assert selfstats.snapshot()["content.invalid_capture_mode"] == 2
    warnings = [r for r in caplog.records if "capture_mode" in r.getMessage()]
    assert len(warnings) == 1
    assert "everything" in warnings[0].getMessage()


def test_mode_destinations():
    assert [(m.on_span, m.on_event) for m in CaptureMode] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    ]


def test_policy_defaults_and_immutability():
    policy = ContentPolicy()
    assert (policy.mode, policy.max_bytes, policy.redactors) == (CaptureMode.SPAN_ONLY, 8192, (scrub_text,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_bytes = 1  # type: ignore[misc]


# --- render ---------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(JSONISH, CAPS)
def test_render_is_strict_json_within_cap(value, cap):
    out = ContentPolicy(max_bytes=cap).render(value)
    strict_loads(out)
    assert size(out) <= cap


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.integers(), st.text("abcxyz 0", max_size=30)), st.lists, max_leaves=30))
def test_render_fitting_values_round_trip(value):
    policy = ContentPolicy(max_bytes=20_000)
    assert strict_loads(policy.render(value)) == to_jsonable(value)


@settings(max_examples=100, deadline=None)
@given(st.one_of(TEXT, JSONISH), st.integers(min_value=16, max_value=5_000))
def test_render_text_fits(value, cap):
    out = ContentPolicy(max_bytes=cap).render_text(value)
    assert size(out) <= cap
    if not isinstance(value, str):
        strict_loads(out)


def test_render_text_keeps_plain_strings_plain():
    policy = ContentPolicy(max_bytes=20)
    assert policy.render_text("hello") == "hello"
    assert policy.render_text("x" * 100) == "xxxxxx…[+94 chars]"
    assert policy.render_text({"a": 1}) == '{"a":1}'


def test_render_hostile_object_graph():
    class Evil:
        def __repr__(self):
            raise RuntimeError("repr")

    def gen():
        yield from range(3)

    cyc: dict = {"b": b"\x80\x81"}
    cyc["me"] = cyc
    g = gen()
    out = ContentPolicy().render({"evil": Evil(), "cyc": cyc, "gen": g, "nan": float("nan")})
    assert strict_loads(out) == {
        "evil": "<Evil>",
        "cyc": {"b": "<bytes len=2>", "me": "[cycle]"},
        "gen": "<generator>",
        "nan": "NaN",
    }
    assert list(g) == [0, 1, 2]


def test_ten_megabytes_are_cut_before_any_costly_work():
    big = "lorem ipsum " * 900_000
    seen: list[int] = []

    def measuring(text: str) -> str:  # stands in for secret scrubbing: records what it is given
        seen.append(len(text))
        return scrub_text(text)

    policy = ContentPolicy(redactors=(measuring,))
    out = policy.render({"content": big})
    text = policy.render_text(big)
    assert seen and max(seen) <= 8192 + 1024 + 64  # never more than the cap, slack and a cut marker
    assert size(out) <= 8192 and size(text) <= 8192
    assert strict_loads(out)["content"].endswith(" chars]")
    kept = text.split("…")[0]
    assert text.endswith(f"…[+{len(big) - len(kept)} chars]")  # counts from the original length


def test_render_never_raises_on_internal_failure(monkeypatch):
    import llmobs.content.policy as policy_module

    def explode(*args, **kwargs):
        raise RuntimeError("internal")

    selfstats.reset()
    monkeypatch.setattr(policy_module, "dumps_capped", explode)
    assert ContentPolicy().render({"a": {1}}) == '"[unserialisable]"'  # a set: not plain JSON
    assert ContentPolicy(max_bytes=4).render({"a": {1}}) == '""'
    assert selfstats.snapshot()["content.serialise_failed"] == 2


# --- scrubbing and redactors ----------------------------------------------------------------------


def test_render_scrubs_nested_secrets_but_not_token_counts():
    value = {
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k-1", "Cookie": "sid=1"},
        "client": {"api_key": "sk-proj-0123456789abcdefghij", "password": None},
        "messages": [{"role": "user", "content": "my key is sk-ant-api03-abcdefghijklmnopqrst ok"}],
        "url": "https://bob:hunter2@example.com/v1?api_key=zzz&model=qwen",
        "max_tokens": 100,
        "usage": {"input_tokens": 5, "total_tokens": 7, "prompt_tokens": 5},
        "token_usage": {"completion_tokens": 2},
        "tokens": [1, 2],
    }
    assert strict_loads(ContentPolicy().render(value)) == {
        "headers": {"Authorization": "[REDACTED]", "X-Api-Key": "[REDACTED]", "Cookie": "[REDACTED]"},
        "client": {"api_key": "[REDACTED]", "password": None},
        "messages": [{"role": "user", "content": "my key is [REDACTED] ok"}],
        "url": "https://[REDACTED]@example.com/v1?api_key=[REDACTED]&model=qwen",
        "max_tokens": 100,
        "usage": {"input_tokens": 5, "total_tokens": 7, "prompt_tokens": 5},
        "token_usage": {"completion_tokens": 2},
        "tokens": [1, 2],
    }


def test_secret_in_object_attributes_is_scrubbed():
    class Client:
        def __init__(self):
            self.api_key = "plain-secret"
            self.base_url = "https://api.example.com"

    assert strict_loads(ContentPolicy().render(Client())) == {
        "api_key": "[REDACTED]",
        "base_url": "https://api.example.com",
    }


def test_redactors_run_in_order_after_scrubbing():
    seen = []

    def first(text: str) -> str:
        seen.append(text)
        return text.replace("q", "w")

    def second(text: str) -> str:
        return text.replace("w", "z")

    policy = ContentPolicy(redactors=(scrub_text, first, second))
    assert policy.render_text("q Bearer abcdefghijklmnopqrstuvwxyz") == "z Bearer [REDACTED]"
    assert seen == ["q Bearer [REDACTED]"]


def test_failing_redactor_is_skipped_and_counted():
    def broken(text: str) -> str:
        raise ValueError("nope")

    def not_a_string(text: str) -> str:
        return None  # type: ignore[return-value]

    selfstats.reset()
    policy = ContentPolicy(redactors=(broken, not_a_string, str.upper))
    assert policy.render(["abc"]) == '["ABC"]'
    assert selfstats.snapshot()["content.redactor_failed"] == 2


def test_pii_redactor_through_policy():
    policy = ContentPolicy(redactors=(redact_pii,))
    out = policy.render({"content": "mail ann@example.com, tokens: 1234", "max_tokens": 1234})
    assert strict_loads(out) == {"content": "mail [EMAIL], tokens: 1234", "max_tokens": 1234}


_plain_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["sk-proj-abcdefghijklmnopqrstuv", "Bearer abcdefghijklmnopqrstuvwxyz", "a=b", "https://u:p@h/x"]),
)
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _plain_text,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.one_of(st.text(max_size=10), st.sampled_from(["api_key", "token", "max_tokens"])), children, max_size=5
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.lists(_plain_json, max_size=5), st.dictionaries(st.text(max_size=8), _plain_json, max_size=5))
)
def test_fast_path_renders_exactly_what_the_full_path_renders(value):
    fast = ContentPolicy(max_bytes=512)
    full = ContentPolicy(max_bytes=512, redactors=(scrub_text, lambda text: text))  # not eligible for the fast path
    assert fast.render(value) == full.render(value)


def test_shared_references_to_a_huge_string_are_never_serialised_whole():
    """[msg] * 1000 with a 10 MB message is 10 GB of JSON if dumped before capping: memory stays bounded."""
    import tracemalloc

    class Text(str):
        pass

    big = "x" * 10_000_000
    policy = ContentPolicy()
    tracemalloc.start()
    try:
        messages = policy.render([{"role": "user", "content": big}] * 1000)
        arguments = policy.render_text({"args": [big] * 1000})
        capped = dumps_capped([big] * 1000, 8192)
        subclassed = policy.render([{"role": "user", "content": Text(big)}] * 1000)  # a str subclass, shared
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for text in (messages, arguments, capped, subclassed):
        assert len(text.encode()) <= 8192
        json.loads(text)
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB while rendering"


_openai_text = st.one_of(
    _plain_text, st.integers(), st.none(), st.dictionaries(st.sampled_from(["api_key", "a"]), _plain_text)
)
_openai_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _openai_text}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from(["https://x/y.png", "data:image/png;base64,AAAA"])})}),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": _openai_text}),
)
_openai_message = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer"]),
         "content": st.one_of(_openai_text, st.lists(_openai_part, max_size=3))},
        optional={"name": _plain_text, "reasoning_content": _plain_text},
    ),
    st.fixed_dictionaries({"role": st.just("assistant"), "tool_calls": st.lists(st.fixed_dictionaries(
        {"id": _plain_text, "type": st.just("function"), "function": st.fixed_dictionaries(
            {"name": _plain_text, "arguments": _plain_json.map(json.dumps)})}), max_size=2)}),
    st.fixed_dictionaries(
        {"role": st.just("tool"), "tool_call_id": _plain_text, "content": _plain_json.map(json.dumps)}
    ),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(request=st.lists(_openai_message, max_size=4), cap=st.sampled_from([64, 512, 8192]))
def test_messages_built_from_parsed_json_render_exactly_as_the_full_path_renders_them(request, cap):
    """``render_parsed_messages`` (no walk) gives the full path's text for what the builders make of a parsed
    request: secrets scrubbed, secret keys of tool calls' arguments redacted, the cap kept."""
    import orjson

    from llmobs.content import messages_from_openai

    messages = messages_from_openai(orjson.loads(json.dumps(request)))
    full = ContentPolicy(max_bytes=cap, redactors=(scrub_text, lambda text: text))  # no fast path at all
    assert ContentPolicy(max_bytes=cap).render_parsed_messages(messages) == full.render(messages)


def test_parsed_messages_json_takes_only_small_messages_without_tool_parts():
    from llmobs.content import serialize

    text = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert serialize.parsed_messages_json(text, 1000) == '[{"role":"user","parts":[{"type":"text","content":"hi"}]}]'
    assert serialize.parsed_messages_json(text, 20) is None  # too long: the full path cuts it
    call = [{"role": "assistant", "parts": [{"type": "tool_call", "name": "f", "arguments": {"api_key": "x"}}]}]
    answer = [{"role": "tool", "parts": [{"type": "tool_call_response", "response": {"token": "x"}}]}]
    assert serialize.parsed_messages_json(call, 1000) is None and serialize.parsed_messages_json(answer, 1000) is None
    assert json.loads(ContentPolicy().render_parsed_messages(call))[0]["parts"][0]["arguments"] == {
        "api_key": "[REDACTED]"
    }

    class Text(str):
        pass

    for odd in ([{"role": Text("user"), "parts": []}], [{"role": object()}], [{"n": 1 << 70}], [{"t": "\ud800"}]):
        assert serialize.parsed_messages_json(odd, 1000) is None, odd
    secret = [{"role": "user", "parts": [{"type": "text", "content": "key sk-proj-abcdefghijklmnopqrstuv"}]}]
    assert "sk-proj" not in ContentPolicy().render_parsed_messages(secret)
