"""End to end: ``vllm serve`` (the OpenAI-compatible server) on CPU with the plugin loaded by its entry point.

Real HTTP chat and completion requests, streaming and not; the server's spans and metrics arrive over OTLP
at a loopback sink and are checked against what the client observed.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from otlp_sink import Sink
from servers import running_server

from llmobs import semconv as sc

MAX_TOKENS = 6
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def chat(client: httpx.Client, content: str, stream: bool, headers: dict | None = None, n: int = 1) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS,
            "ignore_eos": True, "stream": stream, "n": n}
    return _send(client, "/v1/chat/completions", body, stream, headers)


def complete(client: httpx.Client, prompt, stream: bool, headers: dict | None = None) -> dict:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": MAX_TOKENS, "ignore_eos": True, "stream": stream}
    return _send(client, "/v1/completions", body, stream, headers)


def _ours(span: dict) -> bool:
    return span["scope"] == "llmobs"


def _vllms(span: dict) -> bool:
    return span["name"] == "llm_request"


def _send(client: httpx.Client, path: str, body: dict, stream: bool, headers: dict | None) -> dict:
    """The response's id and usage, with the client-side elapsed time and (streaming) time to first chunk."""
    if stream:
        body["stream_options"] = {"include_usage": True}
    started = time.perf_counter()
    if not stream:
        response = client.post(path, json=body, headers=headers or {})
        response.raise_for_status()
        data = response.json()
        return {"id": data["id"], "usage": data["usage"], "elapsed": time.perf_counter() - started, "ttfc": None}
    ttfc = usage = response_id = None
    with client.stream("POST", path, json=body, headers=headers or {}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: "):])
            response_id = chunk["id"]
            choices = chunk.get("choices") or []
            if ttfc is None and any((c.get("delta") or {}).get("content") or c.get("text") for c in choices):
                ttfc = time.perf_counter() - started
            usage = chunk.get("usage") or usage
    return {"id": response_id, "usage": usage, "elapsed": time.perf_counter() - started, "ttfc": ttfc}


def total(points: list[dict], field: str) -> float:
    return sum(p[field] for p in points)


def test_served_requests_become_metrics_and_spans(tiny_model, tmp_path, sink: Sink):
    with running_server(tiny_model, tmp_path, sink, ["--middleware", "llmobs_vllm.TraceMiddleware"]) as server:
        log = server.log()
        # No flag, no code: vLLM found the plugin through its entry point.
        assert "vllm.stat_logger_plugins" in log and "llmobs" in log.split("vllm.stat_logger_plugins", 1)[1][:400]

        with httpx.Client(base_url=server.url, timeout=60) as client:
            results = {
                "chat": chat(client, "hello world", stream=False, headers={"traceparent": TRACEPARENT}),
                "chat_stream": chat(client, "the engine schedules", stream=True),
                "completion": complete(client, ["hello world", "a tiny model"], stream=False,
                                       headers={"X-Request-Id": "client-req-7"}),
                "completion_stream": complete(client, "time to first token", stream=True),
            }
        engine_requests = 5  # the two-prompt completion is two engine requests
        ok = sink.wait_for(lambda s: total(s.metrics.get(sc.METRIC_VLLM_REQUESTS_FINISHED, []), "value")
                           >= engine_requests and len([x for x in s.spans if _ours(x)])
                           >= engine_requests, timeout=30)
        assert ok, f"metrics {sorted(sink.metrics)}; spans {len(sink.spans)}\n{server.log_tail()}"
        time.sleep(1.5)  # one more metric export, so every instrument reflects the last flush

    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in results.values())
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in results.values())
    assert completion_tokens == engine_requests * MAX_TOKENS

    # --- metrics against what the client saw ---
    finished = sink.points(sc.METRIC_VLLM_REQUESTS_FINISHED)
    assert total(finished, "value") == engine_requests
    assert {p["attributes"][sc.VLLM_FINISH_REASON] for p in finished} == {"length"}
    duration = sink.points(sc.METRIC_SERVER_REQUEST_DURATION)
    assert total(duration, "count") == engine_requests
    assert duration[0]["bounds"] == list(sc.BUCKETS_DURATION)
    by_operation = {p["attributes"].get(sc.OPERATION_NAME): p["count"] for p in duration}
    assert by_operation == {"chat": 2, "text_completion": 3}  # the middleware told the operation
    for p in duration:
        assert p["attributes"][sc.PROVIDER_NAME] == "vllm" and p["attributes"][sc.REQUEST_MODEL] == "tiny"
        assert p["attributes"][sc.VLLM_ENGINE_INDEX] == 0
    ttft = sink.points(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN)
    assert total(ttft, "count") == engine_requests
    assert total(ttft, "sum") <= total(duration, "sum")
    assert max(p["max"] for p in ttft) <= max(p["max"] for p in duration)
    assert total(sink.points(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN), "count") == engine_requests
    assert total(sink.points(sc.METRIC_VLLM_INTER_TOKEN_LATENCY), "count") == engine_requests * (MAX_TOKENS - 1)
    tokens = {p["attributes"][sc.TOKEN_TYPE]: p for p in sink.points(sc.METRIC_VLLM_REQUEST_TOKENS)
              if p["attributes"].get(sc.OPERATION_NAME) == "chat"}
    assert tokens["output"]["sum"] == 2 * MAX_TOKENS
    request_tokens = sink.points(sc.METRIC_VLLM_REQUEST_TOKENS)
    assert total([p for p in request_tokens if p["attributes"][sc.TOKEN_TYPE] == "input"], "sum") == prompt_tokens
    assert total([p for p in request_tokens if p["attributes"][sc.TOKEN_TYPE] == "output"], "sum") \
        == completion_tokens
    step_tokens = {p["attributes"][sc.TOKEN_TYPE]: p["value"] for p in sink.points(sc.METRIC_VLLM_TOKENS)}
    assert step_tokens == {"input": prompt_tokens, "output": completion_tokens}
    for name in (sc.METRIC_VLLM_REQUESTS_RUNNING, sc.METRIC_VLLM_REQUESTS_WAITING, sc.METRIC_VLLM_KV_CACHE_USAGE):
        (point,) = sink.points(name)
        assert point["attributes"][sc.VLLM_ENGINE_INDEX] == 0, name
    assert 0.0 <= sink.points(sc.METRIC_VLLM_KV_CACHE_USAGE)[0]["value"] <= 1.0
    for name in (sc.METRIC_VLLM_REQUEST_QUEUE_DURATION, sc.METRIC_VLLM_REQUEST_PREFILL_DURATION,
                 sc.METRIC_VLLM_REQUEST_DECODE_DURATION, sc.METRIC_VLLM_REQUEST_INFERENCE_DURATION):
        assert total(sink.points(name), "count") == engine_requests, name

    # --- one span per engine request ---
    spans = {s["attributes"][sc.REQUEST_ID]: s for s in sink.spans if _ours(s)}
    assert len(spans) == engine_requests
    assert set(spans) >= {results["chat"]["id"], results["chat_stream"]["id"], "cmpl-client-req-7-0",
                          "cmpl-client-req-7-1", f"{results['completion_stream']['id']}-0"}
    for key, result in results.items():
        ids = ["cmpl-client-req-7-0", "cmpl-client-req-7-1"] if key == "completion" else \
            [result["id"] + ("-0" if key == "completion_stream" else "")]
        for request_id in ids:
            span = spans[request_id]
            attrs = span["attributes"]
            assert attrs[sc.OPERATION_NAME] == ("chat" if key.startswith("chat") else "text_completion")
            assert attrs[sc.PROVIDER_NAME] == "vllm" and attrs[sc.FRAMEWORK] == "vllm"
            assert attrs[sc.REQUEST_MODEL] == "tiny" and attrs[sc.SPAN_KIND] == "LLM"
            assert attrs[sc.USAGE_OUTPUT_TOKENS] == MAX_TOKENS
            assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("length",)
            assert span["resource"]["service.name"] == "vllm-e2e"
            server_e2e = (span["end"] - span["start"]) / 1e9
            assert 0 < server_e2e <= result["elapsed"], request_id  # the server's view fits in the client's
            server_ttft = attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK]
            assert 0 <= server_ttft <= server_e2e
            if result["ttfc"] is not None:
                assert server_ttft <= result["ttfc"] + 0.05, request_id
    assert spans[results["chat"]["id"]]["attributes"][sc.USAGE_INPUT_TOKENS] == results["chat"]["usage"][
        "prompt_tokens"]
    # The middleware carried the client's trace context: the span joins the client's trace.
    chat_span = spans[results["chat"]["id"]]
    assert (chat_span["trace_id"], chat_span["parent_id"]) == (TRACE_ID, PARENT_ID)
    assert spans[results["chat_stream"]["id"]]["parent_id"] == ""  # no traceparent: a root span
    assert spans[results["chat_stream"]["id"]]["trace_id"] != TRACE_ID


@pytest.mark.parametrize("protocol", ["http/protobuf"])
def test_with_vllm_tracing_on_llmobs_enriches_instead_of_duplicating(tiny_model, tmp_path, sink: Sink, protocol):
    args = ["--middleware", "llmobs_vllm.TraceMiddleware", "--otlp-traces-endpoint", f"{sink.endpoint}/v1/traces"]
    with running_server(tiny_model, tmp_path, sink, args, env={"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": protocol}
                        ) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        result = chat(client, "hello world", stream=False,
                      headers={"traceparent": TRACEPARENT, "X-Request-Id": "trace-req-1"})
        # Parallel sampling: vLLM ends one llm_request per sequence, all under the request's id.
        sampled = chat(client, "hello again", stream=False, headers={"X-Request-Id": "trace-req-n2"}, n=2)

        def arrived(s: Sink) -> bool:
            ours, vllms = (sum(test(x) for x in s.spans) for test in (_ours, _vllms))
            return ours >= 3 and vllms >= 3

        assert sink.wait_for(arrived, timeout=30), f"spans {[x['name'] for x in sink.spans]}\n{server.log_tail()}"
    request_id = result["id"]
    assert request_id == "chatcmpl-trace-req-1"
    by_request: dict[str, list[dict]] = {}
    for s in sink.spans:
        if _vllms(s) or _ours(s):
            by_request.setdefault(s["attributes"].get(sc.REQUEST_ID), []).append(s)
    sequences = by_request.pop(sampled["id"])
    vllm_sequences = {s["span_id"] for s in sequences if _vllms(s)}
    ours_sampled = [s for s in sequences if _ours(s)]
    assert len(vllm_sequences) == len(ours_sampled) == 2
    assert {s["parent_id"] for s in ours_sampled} == vllm_sequences  # each sequence's span under its own
    (vllm_span,) = [s for s in by_request[request_id] if _vllms(s)]
    assert (vllm_span["trace_id"], vllm_span["parent_id"]) == (TRACE_ID, PARENT_ID)
    ours = [s for s in by_request[request_id] if _ours(s)]
    assert len(ours) == 1  # no second request span
    (span,) = ours
    assert span["parent_id"] == vllm_span["span_id"] and span["trace_id"] == TRACE_ID
    assert span["start"] == span["end"]  # enrichment only: vLLM's span has the timing
    attrs = span["attributes"]
    assert attrs[sc.REQUEST_ID] == request_id and attrs[sc.OPERATION_NAME] == "chat"
    assert tuple(attrs[sc.RESPONSE_FINISH_REASONS]) == ("length",)
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == MAX_TOKENS
