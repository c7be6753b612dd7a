"""Problem classification of failures: why a span failed, in one of :data:`llmobs.semconv.PROBLEM_CLASSES`.

The evidence is what providers and frameworks put in the error type (``RateLimitError``,
``ThrottlingException``, ``httpx.ReadTimeout``...), the exception message (OpenAI's
``context_length_exceeded``, DashScope's ``DataInspectionFailed``, Anthropic's ``prompt is too long``,
Azure's ``ResponsibleAIPolicyViolation``...), the HTTP status code, and what failed (a tool span). The
rules are ordered from the most specific signal to the least: a message naming the cause beats a
generic status code, which beats the kind of span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llmobs import semconv as sc
from llmobs.analyze.records import Failure


@dataclass(frozen=True)
class Classification:
    problem: str
    evidence: str


def _rx(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# Checked against "error type\nmessage", in this order.
_RULES: Sequence[tuple[str, re.Pattern[str]]] = (
    (sc.PROBLEM_CONTEXT_LENGTH, _rx(
        r"context[_ ]length", r"maximum context", r"context window", r"prompt is too long", r"too many tokens",
        r"input (?:is )?too long", r"input length", r"reduce the length", r"token limit",
        r"max(?:imum)?_?tokens? exceeded", r"maximum model length", r"longer than the max",
        r"exceeds? (?:the )?(?:model'?s? )?(?:maximum|max) (?:input|context|token)", r"ContextWindowExceeded",
        r"string too long", r"Range of input length", r"上下文长度", r"超过.{0,6}(?:最大|长度)",
    )),
    (sc.PROBLEM_CONTENT_FILTER, _rx(
        r"content[_ ]?filter", r"content (?:management )?policy", r"ResponsibleAIPolicyViolation",
        r"DataInspectionFailed",
        r"data[_ ]inspection", r"inappropriate content", r"safety (?:system|filter|settings)", r"blocked by safety",
        r"finish_?reason[\"':= ]+SAFETY", r"moderation", r"flagged", r"policy violation", r"敏感", r"内容安全",
        r"guardrail",
    )),
    (sc.PROBLEM_RATE_LIMIT, _rx(
        r"rate[_ ]?limit", r"too many requests", r"throttl", r"quota", r"RateQuota", r"requests per (?:min|sec)",
        r"tokens per min", r"\bTPM\b", r"\bRPM\b", r"resource[_ ]exhausted", r"overloaded", r"capacity",
        r"\b429\b", r"限流", r"请求过于频繁",
    )),
    (sc.PROBLEM_AUTHENTICATION, _rx(
        r"authenticat", r"unauthori[sz]ed", r"invalid[_ ]?api[_ ]?key", r"incorrect api key", r"api key",
        r"permission[_ ]?denied", r"forbidden", r"access[_ ]?denied", r"AccessDenied", r"invalid[_ ]?token",
        r"expired token", r"credential", r"\b401\b", r"\b403\b", r"鉴权", r"认证失败",
    )),
    (sc.PROBLEM_OUTPUT_PARSE, _rx(
        r"OutputParser", r"parse", r"JSONDecodeError", r"decode error", r"ValidationError", r"invalid json",
        r"Expecting value", r"Extra data", r"Unterminated string", r"could not (?:parse|convert)", r"malformed",
        r"schema validation", r"解析",
    )),
    (sc.PROBLEM_TIMEOUT, _rx(
        r"time[sd]?[_ ]?out", r"deadline[_ ]?exceeded", r"DeadlineExceeded", r"took too long", r"\b408\b",
        r"\b504\b", r"超时",
    )),
    (sc.PROBLEM_NETWORK, _rx(
        r"connect(?:ion)?(?:Error| error|Refused| refused| reset| aborted| closed)", r"APIConnectionError",
        r"ConnectError", r"RemoteProtocolError", r"remote end closed", r"name or service not known",
        r"name resolution", r"getaddrinfo", r"nodename nor servname", r"ECONNRESET", r"ECONNREFUSED",
        r"EHOSTUNREACH", r"network is unreachable", r"broken pipe", r"SSL", r"TLS", r"proxy", r"\b502\b",
        r"\b503\b", r"bad gateway", r"service unavailable", r"网络",
    )),
)

_STATUS: dict[int, str] = {
    429: sc.PROBLEM_RATE_LIMIT, 401: sc.PROBLEM_AUTHENTICATION, 403: sc.PROBLEM_AUTHENTICATION,
    407: sc.PROBLEM_AUTHENTICATION, 408: sc.PROBLEM_TIMEOUT, 504: sc.PROBLEM_TIMEOUT,
    413: sc.PROBLEM_CONTEXT_LENGTH, 502: sc.PROBLEM_NETWORK, 503: sc.PROBLEM_RATE_LIMIT,
    529: sc.PROBLEM_RATE_LIMIT,
}
_TOOL_ERROR = _rx(r"ToolException", r"ToolError", r"tool[_ ](?:call|execution|invocation)[_ ]?(?:error|failed)")


def classify(failure: Failure) -> Classification:
    """The problem class of one failure, with the signal that decided it."""
    error_type = failure.error_type or ""
    is_tool = failure.operation == sc.OP_EXECUTE_TOOL or failure.span_kind == sc.KIND_TOOL
    if _TOOL_ERROR.search(error_type):
        return Classification(sc.PROBLEM_TOOL_ERROR, f"error type {error_type}")
    # The error type names the cause most reliably; the message comes next. A tool that cannot parse
    # its input is a tool error, not a model output the application failed to parse.
    for text, what in ((error_type, "error type"), (failure.message, "message")):
        for problem, pattern in _RULES:
            if is_tool and problem == sc.PROBLEM_OUTPUT_PARSE:
                continue
            match = pattern.search(text) if text else None
            if match:
                return Classification(problem, f"{what} matches {match.group(0)!r}")
    if failure.http_status in _STATUS:
        return Classification(_STATUS[failure.http_status], f"HTTP status {failure.http_status}")
    if is_tool:
        return Classification(sc.PROBLEM_TOOL_ERROR, f"the tool {failure.name!r} failed")
    return Classification(sc.PROBLEM_OTHER, f"no known signal in {error_type or 'the error'}")
