"""Optional PII redaction: catches the common shapes, leaves ordinary numbers alone."""

from __future__ import annotations

import pytest

from llmobs.content import redact_pii


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob.smith+tag@example.co.uk now", "mail [EMAIL] now"),
        ("<ann_lee@mail.example.com>", "<[EMAIL]>"),
        ("call +14155552671", "call [PHONE]"),
        ("call +1 (415) 555-2671 today", "call [PHONE] today"),
        ("call +86 138 1234 5678", "call [PHONE]"),
        ("office (555) 123-4567.", "office [PHONE]."),
        ("office 555-123-4567", "office [PHONE]"),
        ("office 555.123.4567", "office [PHONE]"),
        ("手机 138 1234 5678", "手机 [PHONE]"),
        ("手机 13812345678", "手机 [PHONE]"),
        ("手机 138-1234-5678", "手机 [PHONE]"),
        ("visa 4111 1111 1111 1111 ok", "visa [CARD] ok"),
        ("visa 4111-1111-1111-1111", "visa [CARD]"),
        ("mc 5555555555554444", "mc [CARD]"),
        ("amex 378282246310005", "amex [CARD]"),
        ("unionpay 6212345678901265", "unionpay [CARD]"),
        ("from 192.168.1.20, then", "from [IP], then"),
        ("to 10.0.0.1.", "to [IP]."),
        ("v6 2001:db8::8a2e:370:7334 up", "v6 [IP] up"),
        ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "v6 [IP]"),
        ("loopback ::1 and mapped ::ffff:10.0.0.1", "loopback [IP] and mapped [IP]"),
    ],
)
def test_redacts(text, expected):
    assert redact_pii(text) == expected


def test_card_is_not_half_read_as_a_phone():
    assert redact_pii("card 5555 5555 5555 4444") == "card [CARD]"


@pytest.mark.parametrize(
    "text",
    [
        "used 123456 tokens, 4096 max, 128000 context",
        "in 2024 and 1999",
        "costs $1,299.99 or ¥12,345.50 or 0.0021",
        "version 1.2.3 and v10.0.1 and 3.11.4",
        "at 2024-01-15T10:30:00Z and 2024-01-15 10:30:00.123",
        "epoch 1700000000 and 1700000000123 ms",
        "id 550e8400-e29b-41d4-a716-446655440000",
        "id 12345678-1234-1234-1234-123456789012",
        "time 12:30:45 and mac 00:1A:2B:3C:4D:5E",
        "C++ std::vector and a::b",
        "pi 3.14159265358979323846",
        "not luhn 4111111111111112",
        "order 1234567890123456",
        "ratio 1:2:3",
        "no digits here at all",
    ],
)
def test_leaves_ordinary_numbers_alone(text):
    assert redact_pii(text) == text


def test_long_runs_without_pii_come_back_unchanged():
    text = "a" * 200_000 + "@" + "b" * 200_000 + " 1" * 50_000
    assert redact_pii(text) == text
