"""Always-on secret scrubbing of free text and secret dict keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmobs.content import ContentPolicy, is_secret_key, scrub, scrub_text
from llmobs.content.scrub import might_hold_secrets

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"),
        ("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic [REDACTED]"),
        ('{"Authorization": "Bearer xyz"}', '{"Authorization": "Bearer [REDACTED]"}'),
        ("Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: Basic [REDACTED]"),
        ("curl -H 'Bearer abcdefghijklmnop0123' x", "curl -H 'Bearer [REDACTED]' x"),
        ("key sk-abcdefghijklmnopqrstuvwxyz0123456789 end", "key [REDACTED] end"),
        ("sk-proj-Ab_Cd-Ef0123456789xyzXYZ", "[REDACTED]"),
        ("ANTHROPIC=sk-ant-api03-abcdefghijklmnopqrstuv-_x", "ANTHROPIC=[REDACTED]"),
        ("dashscope sk-0123456789abcdef0123456789abcdef", "dashscope [REDACTED]"),
        ("aws AKIAIOSFODNN7EXAMPLE id", "aws [REDACTED] id"),
        ("gh ghp_" + "A1b2" * 9 + " done", "gh [REDACTED] done"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED]"),
        (f"token {JWT}.", "token [REDACTED]."),
        ("postgres://admin:s3cr3t@db.internal:5432/app", "postgres://[REDACTED]@db.internal:5432/app"),
        ("redis://:onlypass@cache:6379", "redis://[REDACTED]@cache:6379"),
        ("postgresql://admin:Pa@ssw0rd!@db.internal:5432/app", "postgresql://[REDACTED]@db.internal:5432/app"),
        ("redis://:s3cr3t@@cache:6379/0 mail ops@example.com", "redis://[REDACTED]@cache:6379/0 mail ops@example.com"),
        (
            "GET /v1?api_key=a1&apikey=a2&key=a3&token=a4&access_token=a5&signature=a6&password=a7&q=ok",
            "GET /v1?api_key=[REDACTED]&apikey=[REDACTED]&key=[REDACTED]&token=[REDACTED]"
            "&access_token=[REDACTED]&signature=[REDACTED]&password=[REDACTED]&q=ok",
        ),
        (
            "https://s3/x?X-Amz-Signature=abc123&X-Amz-Date=1",
            "https://s3/x?X-Amz-Signature=[REDACTED]&X-Amz-Date=1",
        ),
        ("OPENAI_API_KEY=abc123 python app.py", "OPENAI_API_KEY=[REDACTED] python app.py"),
        ("Cookie: session=abc; theme=dark\nAccept: */*", "Cookie: [REDACTED]\nAccept: */*"),
        ("set-cookie: sid=1; HttpOnly", "set-cookie: [REDACTED]"),
    ],
)
def test_scrubs_secret_shapes(text, expected):
    assert scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The bearer of bad news",
        "Use scikit-learn (sk-learn) and a task-0123456789abcdefghij id",
        "max_tokens=256&temperature=0.2&top_p=1",
        "https://example.com/path?page=2&model=qwen-max",
        "Asia and Akiak are places",
        "a plain sentence with no secrets, 42 tokens and a: colon",
        "x = y + z",
    ],
)
def test_leaves_ordinary_text_alone(text):
    assert scrub_text(text) == text


def test_fast_path_returns_the_same_object():
    text = "hello world " * 100
    assert scrub_text(text) is text


def test_scrub_handles_large_text():
    text = ("word " * 200 + "key=value " + "Bearer " + "a" * 30 + "\n") * 200
    out = scrub_text(text)
    assert "a" * 30 not in out


@pytest.mark.parametrize(
    "key",
    [
        "api_key", "apiKey", "API-KEY", "x-api-key", "X_API_KEY", "Authorization", "proxy-authorization",
        "Cookie", "Set-Cookie", "password", "passwd", "secret", "client_secret", "private_key",
        "access_token", "refresh_token", "id_token", "session_token", "bearer", "credentials",
        "openai_api_key", "aws_secret_access_key", "DASHSCOPE_API_KEY", "github_token", "token",
    ],
)  # fmt: skip
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens", "max_token", "input_tokens", "output_tokens", "total_tokens", "prompt_tokens",
        "completion_tokens", "token_usage", "tokens", "max_new_tokens", "num_tokens", "token_count",
        "model", "role", "content", "key", "keys", "primary_key", "cache_key", "secretary",
    ],
)  # fmt: skip
def test_not_secret_keys(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    sorted(scrub._SECRET_KEYS) + [f"my{suffix}" for suffix in scrub._SECRET_SUFFIXES] + ["Passphrase", "X-Api-Key"],
)
def test_every_secret_key_is_redacted_in_rendered_content(key):
    """Plain content skips the cleaning walk; a secret key anywhere in it must still be redacted."""
    assert is_secret_key(key)
    policy = ContentPolicy()
    for value in ({key: "hunter2"}, [{"role": "tool", "parts": [{"type": "text", "meta": {key: "hunter2"}}]}]):
        rendered = policy.render(value)
        assert "hunter2" not in rendered
        assert scrub.REDACTED in rendered


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: x", "a cookie", "Bearer x", "eyJhbGci", "sk-abc", "AKIA", "ASIA", "ghp_", "gho_", "ghu_",
        "ghs_", "ghr_", "github_pat_", "https://x", "a=b",
    ],
)  # fmt: skip
def test_every_trigger_takes_the_full_path(text):
    assert might_hold_secrets(text)


def test_plain_prose_skips_the_full_path():
    assert not might_hold_secrets("List the three most likely causes, shortest first. The GitHub page says hi.")


@given(st.lists(st.one_of(st.text(max_size=40), st.sampled_from(scrub._TRIGGERS)), max_size=8))
def test_trigger_scan_by_rarest_character_finds_exactly_the_triggers(pieces):
    text = "".join(pieces).lower()
    assert scrub._contains_any(text) == any(word in text for word in scrub._TRIGGERS)
