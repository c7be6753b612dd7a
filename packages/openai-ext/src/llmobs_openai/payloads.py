"""What OpenAI-API JSON bodies say, in the recorder's terms: request parameters, usage, errors, and
vLLM's per-request metrics. Plain functions over parsed JSON that tolerate any shape a server sends.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from llmobs import semconv as sc
from llmobs.recorder import SpanHandle
from llmobs_openai.routes import Api

_FLOAT_PARAMS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")  # body key = parameter name
_INT_PARAMS = ("seed", "top_k")  # top_k: vLLM and DashScope extension
_NUMBER_TYPES = (int, float)
_MAX_TOKENS_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
_JSON_FORMATS = frozenset({"json_object", "json_schema"})
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")  # low cardinality: a code, not a message


def loads(data: bytes | str) -> Any:
    """Parse JSON with orjson, about 4x the standard parser on these bodies and events (a few µs per call
    and per streamed chunk). What orjson refuses but the standard parser reads (NaN and infinities, a
    byte-order mark, lone surrogates) goes to the latter, which raises ``ValueError`` for what neither
    reads. One difference remains: integers past 64 bits come back as floats; no field read here holds one.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def integer(value: Any) -> int | None:
    return value if type(value) is int else None


def _number(value: Any) -> float | int | None:
    return value if type(value) in _NUMBER_TYPES else None


def request_params(body: dict[str, Any], api: str) -> dict[str, Any]:
    """Keyword arguments for ``SpanHandle.set_request`` from a request body."""
    # Most of these are absent from most bodies: the type test runs only on what is there.
    params: dict[str, Any] = {}
    get = body.get
    for key in _FLOAT_PARAMS:
        value = get(key)
        if value is not None and type(value) in _NUMBER_TYPES:
            params[key] = value
    for key in _INT_PARAMS:
        value = get(key)
        if value is not None and type(value) is int:
            params[key] = value
    for key in _MAX_TOKENS_KEYS:
        value = get(key)
        if value is not None and type(value) is int:
            params["max_tokens"] = value
            break
    stop = body.get("stop")
    if isinstance(stop, str):
        params["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        params["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    n = integer(body.get("n"))
    if n is not None and n != 1:
        params["choice_count"] = n
    if api is not Api.EMBEDDINGS:
        params["stream"] = body.get("stream") is True
    else:
        encoding = body.get("encoding_format")
        if isinstance(encoding, str):
            params["encoding_formats"] = [encoding]
    output_type = _output_type(body, api)
    if output_type is not None:
        params["output_type"] = output_type
    return params


def _output_type(body: dict[str, Any], api: str) -> str | None:
    if api is Api.RESPONSES:
        text = body.get("text")
        fmt = text.get("format") if isinstance(text, dict) else None
    else:
        fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in _JSON_FORMATS:
        return "json"
    return "text" if kind == "text" else None


#: Usage keys (input, output, their details) of the Responses API, and of chat, completions and embeddings.
_RESPONSES_USAGE_KEYS = ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")
_CHAT_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details")


def set_usage(handle: SpanHandle, usage: Any) -> None:
    """Record a ``usage`` object of any of the APIs (chat, completions, embeddings, Responses)."""
    if not isinstance(usage, dict):
        return
    get = usage.get
    keys = _RESPONSES_USAGE_KEYS if "input_tokens" in usage else _CHAT_USAGE_KEYS
    in_key, out_key, in_details_key, out_details_key = keys
    # Integers only (``type(x) is int`` inline: this runs once per call).
    inp, out, total = get(in_key), get(out_key), get("total_tokens")
    inp, out = (inp if type(inp) is int else None), (out if type(out) is int else None)
    if inp is None and out is None:
        return
    in_details, out_details = get(in_details_key), get(out_details_key)
    cached = in_details.get("cached_tokens") if isinstance(in_details, dict) else None
    if type(cached) is not int:
        cached = get("prompt_cache_hit_tokens")  # DeepSeek's context cache
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    handle.set_usage(
        inp,
        out,
        cache_read=cached if type(cached) is int else None,
        reasoning=reasoning if type(reasoning) is int else None,
        total=total if type(total) is int else None,
    )


def error_type(body: Any, fallback: str) -> str:
    """The provider's error code (else its error type) as a low-cardinality ``error.type``.

    OpenAI, Azure, DashScope and DeepSeek send ``{"error": {"code", "type", "message"}}``; older vLLM
    servers send the fields at the top level with a numeric code.
    """
    if isinstance(body, dict):
        error = body.get("error")
        fields = error if isinstance(error, dict) else body
        for key in ("code", "type"):
            value = fields.get(key)
            if isinstance(value, str) and _ERROR_CODE.fullmatch(value):
                return value
    return fallback


# vLLM's ``metrics`` field (``--enable-per-request-metrics``; PerRequestMetrics in vLLM's protocol), in ms.
# Its time_to_first_token_ms runs from scheduling to the first token (queue excluded), i.e. the prefill;
# generation_time_ms from the first to the last token; mean_itl_ms is that over the tokens after the first.
_VLLM_METRICS_MS = (
    ("queue_time_ms", sc.VLLM_QUEUE_TIME),
    ("time_to_first_token_ms", sc.VLLM_PREFILL_TIME),
    ("generation_time_ms", sc.VLLM_DECODE_TIME),
    ("mean_itl_ms", sc.VLLM_TIME_PER_OUTPUT_TOKEN),
)


def set_vllm_metrics(handle: SpanHandle, metrics: Any) -> None:
    """Record vLLM's per-request timings (sent on the response, or on a stream's final usage chunk)."""
    if not isinstance(metrics, dict):
        return
    for key, attribute in _VLLM_METRICS_MS:
        value = _number(metrics.get(key))
        if value is not None:
            handle.set_attribute(attribute, value / 1000)
