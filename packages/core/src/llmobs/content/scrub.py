"""Always-on secret scrubbing: credentials must never reach a span, whatever the capture mode.

Prompts, tool arguments and HTTP-ish payloads routinely carry API keys, bearer tokens and signed
URLs. :func:`scrub_text` removes the well-known shapes from free text; :func:`is_secret_key` names
the dict keys whose values are dropped wholesale. Both are tuned to leave token *counts*
(``max_tokens``, ``total_tokens`` ...) alone.
"""

from __future__ import annotations

import functools
import re

REDACTED = "[REDACTED]"

# Lower-cased text containing none of these cannot match a rule below, so ordinary prose costs one
# lower() and a few substring scans rather than a regex per rule ("=" is checked separately, for
# _PARAM). Substring tests, not one alternation regex: Python's regex engine tries every alternative at
# every position, which took ~7 us on a 350-character prompt. A short needle still costs a scan of its
# own (~0.5 us for "sk-" in 450 characters), so the scans go by rarest character (_contains_any): ~2 us
# for a chat message's JSON instead of ~5.7 us.
_TRIGGERS = (
    "authorization", "cookie", "bearer", "eyj", "sk-", "akia", "asia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "github_pat_", "://",
)  # fmt: skip
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header values first: they may contain any of the token shapes below.
    (
        re.compile(
            r"\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|digest|token)\s+)?)"
            r"[^\s,;\"']+",
            re.I,
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"(?im)\b((?:set-)?cookie[\"']?\s*:\s*)[^\r\n\"']+"), rf"\1{REDACTED}"),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9\-._~+/]{16,}=*", re.I), rf"\1{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # OpenAI (sk-, sk-proj-, sk-svcacct-), Anthropic (sk-ant-...), DashScope (sk- + 32 hex).
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"), REDACTED),
    # Userinfo up to the last @ before the host: a password pasted unencoded may hold @ itself.
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s:@]*:[^/\s]*@"), rf"\1{REDACTED}@"),
)
_PARAM = re.compile(r"(?<![A-Za-z0-9_\-])([A-Za-z][A-Za-z0-9_\-]*)=([^&\s#\"',;]+)")

_NORMALISE = str.maketrans("-", "_")
_SECRET_KEYS = frozenset(
    {
        "api_key", "apikey", "x_api_key", "api_secret", "api_token", "authorization",
        "proxy_authorization", "auth", "auth_token", "x_auth_token", "bearer", "cookie", "set_cookie",
        "password", "passwd", "pwd", "passphrase", "secret", "secrets", "client_secret", "private_key",
        "secret_key", "access_key", "secret_access_key", "access_token", "refresh_token", "id_token",
        "session_token", "security_token", "token", "credential", "credentials", "signature",
    }
)  # fmt: skip
_SECRET_SUFFIXES = (
    "_api_key", "_apikey", "_secret", "_password", "_passwd", "_private_key", "_secret_key",
    "_access_key", "_signing_key", "_subscription_key", "_token", "_credentials",
)  # fmt: skip
# "<word>_token" names that count tokens rather than hold one.
_COUNT_PREFIXES = ("max_", "min_", "num_", "n_", "total_", "input_", "output_", "prompt_", "completion_")
# Query parameters that are secret in URLs, though too generic to redact as dict keys.
_SECRET_PARAMS = frozenset({"key", "sig", "x_amz_signature", "x_amz_credential", "x_goog_signature"})


@functools.lru_cache(maxsize=2048)
def is_secret_key(key: str) -> bool:
    """True for mapping keys whose values are credentials (case- and ``-``/``_``-insensitive).
    Token-count keys (``max_tokens``, ``input_tokens``, ``token_usage`` ...) are not secrets."""
    k = key.lower().translate(_NORMALISE)
    if k in _SECRET_KEYS:
        return True
    return k.endswith(_SECRET_SUFFIXES) and not k.startswith(_COUNT_PREFIXES)


def _param(m: re.Match[str]) -> str:
    name = m.group(1)
    if is_secret_key(name) or name.lower().translate(_NORMALISE) in _SECRET_PARAMS:
        return f"{name}={REDACTED}"
    return m.group(0)


#: Characters from most to least common in English prose and chat JSON (roughly): each trigger is looked
#: for only where its rarest character occurs at all.
_COMMON_FIRST = ' e"taoinsrhldcu:,mfpgwybv.k-_/xjqz'


def _by_rarest_character(words: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``words`` grouped under their rarest character: one C-speed character scan then rules a whole group
    out. Equivalent to testing each word (a word present has every one of its characters present)."""
    groups: dict[str, list[str]] = {}
    for word in words:
        rarest = max(word, key=lambda c: _COMMON_FIRST.find(c) if c in _COMMON_FIRST else len(_COMMON_FIRST))
        groups.setdefault(rarest, []).append(word)
    return tuple((char, tuple(group)) for char, group in groups.items())


_TRIGGER_GROUPS = _by_rarest_character(_TRIGGERS)


def _contains_any(lowered: str, groups: tuple[tuple[str, tuple[str, ...]], ...] = _TRIGGER_GROUPS) -> bool:
    """Whether ``lowered`` contains a word of ``groups`` (made by :func:`_by_rarest_character`)."""
    for char, words in groups:
        if char in lowered:
            for word in words:
                if word in lowered:
                    return True
    return False


def might_hold_secrets(text: str) -> bool:
    """Cheap pre-check: False guarantees :func:`scrub_text` would leave ``text`` unchanged; True only means
    it must look. (Secret *keys* of structured content are checked where its dicts are walked.)"""
    return "=" in text or _contains_any(text.lower())


def scrub_text(text: str) -> str:
    """Replace credentials in free text with ``[REDACTED]``: authorization and cookie headers,
    bearer tokens, JWTs, OpenAI/Anthropic/DashScope ``sk-`` keys, AWS access key ids, GitHub tokens,
    ``user:password@`` in URLs and secret query/assignment parameters (``api_key=``, ``token=`` ...)."""
    if _contains_any(text.lower()):
        for pattern, replacement in _RULES:
            text = pattern.sub(replacement, text)
    if "=" in text:
        text = _PARAM.sub(_param, text)
    return text
