"""Optional PII redaction for captured text (off by default; enabled as a ContentPolicy redactor).

Patterns are deliberately conservative: a redactor that eats token counts, prices, dates, versions
or ids makes traces useless, so every pattern is anchored on token boundaries and cards must pass
the Luhn check. Known gap: unseparated 11-digit numbers starting ``13``-``19`` are treated as
Chinese mobile numbers.
"""

from __future__ import annotations

import ipaddress
import re

EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
CARD = "[CARD]"
IP = "[IP]"

# Starting only at a boundary keeps these linear on long runs of word characters.
_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d+\-.])(?:\d[ \-]?){12,18}\d(?![\d\-]|[.,]\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)")
_PHONES = (
    # E.164, optionally grouped: +1 (555) 123-4567, +86 138 1234 5678, +442079460958
    re.compile(r"(?<![\w+])\+\d{1,3}[ \-]?(?:\(\d{1,4}\)[ \-]?)?(?:\d[ \-]?){5,13}\d(?!\d)"),
    # North American: (555) 123-4567, 555-123-4567, 555.123.4567
    re.compile(r"(?<![\w(])\(\d{3}\)[ \-]?\d{3}[ \-.]\d{4}(?![\w\-]|\.\d)"),
    re.compile(r"(?<![\w.\-])\d{3}([\-.])\d{3}\1\d{4}(?![\w\-]|\.\d)"),
    # Chinese mobile: 138 1234 5678, 138-1234-5678, 13812345678
    re.compile(r"(?<![\w.\-])1[3-9]\d([ \-]?)\d{4}\1\d{4}(?![\w\-]|\.\d)"),
)
_HAS_DIGIT = re.compile(r"\d")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    # Issuer prefixes 2-6 (Mastercard, Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay) also
    # keep epoch-millisecond timestamps (leading 1) out.
    return CARD if digits[0] in "23456" and _luhn(digits) else m.group(0)


def _ipv6(m: re.Match[str]) -> str:
    candidate = m.group(0)
    if not _HAS_DIGIT.search(candidate):  # "a::b" in code, not an address anyone wrote
        return candidate
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:  # times (10:30:00), MAC addresses
        return candidate
    return IP


def _phone(m: re.Match[str]) -> str:
    return PHONE if 7 <= sum(ch.isdigit() for ch in m.group(0)) <= 15 else m.group(0)


def redact_pii(text: str) -> str:
    """Replace emails, payment cards (Luhn-checked), IPv4/IPv6 addresses and phone numbers with
    ``[EMAIL]``, ``[CARD]``, ``[IP]`` and ``[PHONE]``. Cards are matched before phones so a card
    number is never half-read as a phone number."""
    if "@" in text:
        text = _EMAIL.sub(EMAIL, text)
    if not _HAS_DIGIT.search(text):
        return text
    text = _CARD.sub(_card, text)
    if ":" in text:
        text = _IPV6.sub(_ipv6, text)
    if "." in text:
        text = _IPV4.sub(IP, text)
    for pattern in _PHONES:
        text = pattern.sub(_phone, text)
    return text
