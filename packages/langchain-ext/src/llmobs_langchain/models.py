"""What a LangChain model call says about itself: provider, model, request parameters, usage, finish.

LangChain reports the model in two places: ``ls_*`` keys in the run metadata (``ls_provider``,
``ls_model_name``, ``ls_temperature``, ... — what every integration fills in for LangSmith) and the
``invocation_params`` (the model's own fields plus call kwargs). Usage comes first from
``AIMessage.usage_metadata`` (LangChain's standard, summed over chunks when streaming), else from the
provider's raw ``llm_output["token_usage"]`` / ``["usage"]``, else from ``generation_info`` — one
source per call, never added together, so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from llmobs import semconv as sc

# ls_provider (what LangChain integrations report) → gen_ai.provider.name; others pass through as given.
_PROVIDERS = {
    "openai": sc.PROVIDER_OPENAI,
    "azure": sc.PROVIDER_AZURE_OPENAI,
    "azure_openai": sc.PROVIDER_AZURE_OPENAI,
    "azure_ai": sc.PROVIDER_AZURE_AI_INFERENCE,
    "anthropic": sc.PROVIDER_ANTHROPIC,
    "amazon_bedrock": sc.PROVIDER_AWS_BEDROCK,
    "bedrock": sc.PROVIDER_AWS_BEDROCK,
    "bedrock_converse": sc.PROVIDER_AWS_BEDROCK,
    "google_genai": sc.PROVIDER_GCP_GEMINI,
    "google_vertexai": sc.PROVIDER_GCP_VERTEX_AI,
    "google_anthropic_vertex": sc.PROVIDER_GCP_VERTEX_AI,
    "mistral": sc.PROVIDER_MISTRAL_AI,
    "mistralai": sc.PROVIDER_MISTRAL_AI,
    "groq": sc.PROVIDER_GROQ,
    "deepseek": sc.PROVIDER_DEEPSEEK,
    "xai": sc.PROVIDER_X_AI,
    "cohere": sc.PROVIDER_COHERE,
    "perplexity": sc.PROVIDER_PERPLEXITY,
    "ibm": sc.PROVIDER_IBM_WATSONX_AI,
    "watsonx": sc.PROVIDER_IBM_WATSONX_AI,
    "tongyi": sc.PROVIDER_DASHSCOPE,
    "dashscope": sc.PROVIDER_DASHSCOPE,
    "qwen": sc.PROVIDER_DASHSCOPE,
    "vllm": sc.PROVIDER_VLLM,
}
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "azure_deployment")
# invocation_params key → set_request keyword (the first key present for a keyword wins)
_REQUEST_KEYS = {
    "temperature": "temperature",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "max_output_tokens": "max_tokens",
    "max_new_tokens": "max_tokens",
    "num_predict": "max_tokens",
    "top_p": "top_p",
    "top_k": "top_k",
    "seed": "seed",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
    "n": "choice_count",
}
_FINISH_REASONS = {
    "stop": sc.FINISH_STOP,
    "end_turn": sc.FINISH_STOP,
    "stop_sequence": sc.FINISH_STOP,
    "complete": sc.FINISH_STOP,
    "length": sc.FINISH_LENGTH,
    "max_tokens": sc.FINISH_LENGTH,
    "model_length": sc.FINISH_LENGTH,
    "tool_calls": sc.FINISH_TOOL_CALL,
    "tool_use": sc.FINISH_TOOL_CALL,
    "function_call": sc.FINISH_TOOL_CALL,
    "content_filter": sc.FINISH_CONTENT_FILTER,
    "safety": sc.FINISH_CONTENT_FILTER,
    "refusal": sc.FINISH_CONTENT_FILTER,
}


class Usage(NamedTuple):
    input_tokens: int | None
    output_tokens: int | None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    total: int | None = None


def provider(metadata: Mapping[str, Any]) -> str | None:
    name = metadata.get("ls_provider")
    if not isinstance(name, str) or not name:
        return None
    key = name.lower()
    return _PROVIDERS.get(key, key)


def model_name(metadata: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    name = metadata.get("ls_model_name")
    if isinstance(name, str) and name:
        return name
    for key in _MODEL_KEYS:
        name = params.get(key)
        if isinstance(name, str) and name:
            return name
    return None


def request_parameters(metadata: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``set_request`` keywords from the ``ls_*`` metadata, completed by the invocation params."""
    request: dict[str, Any] = {}
    for source, value in params.items():
        key = _REQUEST_KEYS.get(source)
        if key is not None and key not in request and isinstance(value, int | float) and not isinstance(value, bool):
            request[key] = value
    for key, ls_key in (("temperature", "ls_temperature"), ("max_tokens", "ls_max_tokens")):
        value = metadata.get(ls_key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            request[key] = value
    stop = metadata.get("ls_stop") or params.get("stop") or params.get("stop_sequences")
    if isinstance(stop, str):
        request["stop_sequences"] = [stop]
    elif isinstance(stop, list | tuple) and stop:
        request["stop_sequences"] = [str(s) for s in stop]
    return request


def finish_reason(generation: Any) -> str | None:
    """The provider's finish reason of one generation, in GenAI terms (unknown values pass through)."""
    info = getattr(generation, "generation_info", None) or {}
    reason = info.get("finish_reason") or info.get("stop_reason")
    if not reason:
        meta = getattr(getattr(generation, "message", None), "response_metadata", None) or {}
        reason = meta.get("finish_reason") or meta.get("stop_reason")
    if not isinstance(reason, str) or not reason:
        return None
    return _FINISH_REASONS.get(reason.lower(), reason)


def response_identity(
    generations: Sequence[Any], llm_output: Mapping[str, Any] | None
) -> tuple[str | None, str | None]:
    """``(response id, response model)`` as the provider reported them; LangChain's own ids are skipped."""
    response_id = response_model = None
    for generation in generations:
        message = getattr(generation, "message", None)
        meta = getattr(message, "response_metadata", None) or {}
        response_model = response_model or _text(meta.get("model_name")) or _text(meta.get("model"))
        candidate = _text(meta.get("id")) or _text(getattr(message, "id", None))
        if candidate and not candidate.startswith("lc_"):
            response_id = response_id or candidate
    if llm_output:
        response_model = response_model or _text(llm_output.get("model_name")) or _text(llm_output.get("model"))
        response_id = response_id or _text(llm_output.get("id"))
    return response_id, response_model


def usage(generations: Sequence[Any], llm_output: Mapping[str, Any] | None) -> Usage | None:
    """Token usage of one call from the first source that has it (see the module docstring)."""
    for generation in generations:
        found = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if found:
            return _from_usage_metadata(found)
    if llm_output:
        raw = llm_output.get("token_usage") or llm_output.get("usage")
        if isinstance(raw, Mapping) and raw:
            return _from_provider_usage(raw)
    for generation in generations:
        info = getattr(generation, "generation_info", None) or {}
        raw = info.get("usage_metadata") or info.get("token_usage") or info.get("usage")
        if isinstance(raw, Mapping) and raw:
            return _from_usage_metadata(raw) if _is_usage_metadata(raw) else _from_provider_usage(raw)
    return None


def _is_usage_metadata(raw: Mapping[str, Any]) -> bool:
    """LangChain's ``UsageMetadata`` rather than Anthropic's own usage, which also has ``input_tokens`` but
    reports cache reads and writes apart (``cache_read_input_tokens``...) and no total."""
    return "input_tokens" in raw and "cache_read_input_tokens" not in raw and "cache_creation_input_tokens" not in raw


def _from_usage_metadata(found: Mapping[str, Any]) -> Usage:
    """LangChain's ``UsageMetadata``: ``input_tokens`` already includes cache reads and writes."""
    inputs = found.get("input_token_details") or {}
    outputs = found.get("output_token_details") or {}
    return Usage(
        _int(found.get("input_tokens")),
        _int(found.get("output_tokens")),
        _int(inputs.get("cache_read")),
        _int(inputs.get("cache_creation")),
        _int(outputs.get("reasoning")),
        _int(found.get("total_tokens")),
    )


def _from_provider_usage(raw: Mapping[str, Any]) -> Usage:
    """A provider's own usage dict: OpenAI-style ``prompt_tokens``..., Anthropic-style ``input_tokens``
    (cache reads and writes reported apart, so added to the input here), or Gemini's ``*_token_count``."""
    if "prompt_token_count" in raw:
        output = (_int(raw.get("candidates_token_count")) or 0) + (_int(raw.get("thoughts_token_count")) or 0)
        return Usage(
            _int(raw.get("prompt_token_count")),
            output,
            _int(raw.get("cached_content_token_count")),
            reasoning=_int(raw.get("thoughts_token_count")),
            total=_int(raw.get("total_token_count")),
        )
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        prompt = raw.get("prompt_tokens_details") or {}
        completion = raw.get("completion_tokens_details") or {}
        return Usage(
            _int(raw.get("prompt_tokens")),
            _int(raw.get("completion_tokens")),
            _int(prompt.get("cached_tokens")) or _int(raw.get("prompt_cache_hit_tokens")),
            reasoning=_int(completion.get("reasoning_tokens")),
            total=_int(raw.get("total_tokens")),
        )
    cache_read = _int(raw.get("cache_read_input_tokens"))
    cache_write = _int(raw.get("cache_creation_input_tokens"))
    inputs = _int(raw.get("input_tokens"))
    if inputs is not None:
        inputs += (cache_read or 0) + (cache_write or 0)
    return Usage(inputs, _int(raw.get("output_tokens")), cache_read, cache_write, total=_int(raw.get("total_tokens")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
