"""Fuzz targets for every decoder that takes bytes from outside the process, and an atheris runner.

Each target takes one input (bytes) and returns normally when the decoder either decoded it or refused it
with its clean error; anything else it raises is a finding. The same targets serve three drivers:

* ``tests/reliability/test_fuzz_decoders.py`` drives them with hypothesis (every CI run, any platform)
  and runs atheris for a bounded number of inputs when it is installed;
* this file, run directly, is the coverage-guided atheris fuzzer, for as long as you like::

      python tests/reliability/fuzz_targets.py otlp -max_total_time=600
      python tests/reliability/fuzz_targets.py config -runs=200000 -max_len=4096
      python tests/reliability/fuzz_targets.py otlp CORPUS_DIR -max_total_time=3600   # keep a corpus

  Any libFuzzer flag works (``-jobs``, ``-dict``, ``-timeout``); a seed corpus of valid inputs is
  written to a temporary directory and used unless a corpus directory is given. A crash prints the
  traceback and saves the input as ``crash-*``; reproduce with ``python tests/reliability/fuzz_targets.py
  otlp crash-…``. libFuzzer's own ``-timeout`` (default here 10 s per input) turns a hang into a finding.

Targets:

``otlp``   what ``llmobs serve`` does with a POST to ``/v1/traces``: the Content-Encoding (identity, gzip,
           deflate) is inflated within the body limit, the body parsed as OTLP protobuf or JSON, and the
           spans normalised and handed to an exporter. Clean errors: the HTTP refusals (400, 413, 415)
           and ``PayloadError``. Also checked: what is decoded stays proportional to what was sent.
``config`` an ``llmobs.toml`` file: ``config.parse_file`` and building settings from it. Clean error:
           ``ConfigError``.

``dify``   the Dify plugin's relay endpoint, ``relay.handle_traces`` (Python >= 3.12: run it with the plugin's
           own environment, ``packages/dify-plugin/.venv/bin/python``): the same selector byte also picks the
           content type and whether the key is offered; spans are forwarded to an in-memory exporter. Clean
           answers: 200, 400, 401, 413, 415 — never 500 (its catch-all for an unexpected exception).

Without atheris (another platform, or the plugin's environment), ``--plain-runs N`` runs a plain mutation
fuzzer instead: seeds mutated at random (bit flips, cuts, insertions, repeats, splices), N inputs::

      packages/dify-plugin/.venv/bin/python tests/reliability/fuzz_targets.py dify --plain-runs 20000
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BODY_LIMIT = 1 << 20  # the receiver's body limit in these runs (its default is 32 MB)
_ENCODINGS = ("identity", "gzip", "deflate")
_CLEAN_STATUSES = frozenset({400, 413, 415})


class _Targets:
    """The decoders' imports, made once (after atheris' import hook is in place, when it runs)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from llmobs import config
        from llmobs.serve import otlp
        from llmobs.serve.ingest import Ingestor

        self.config, self.otlp = config, otlp
        self.exporter = InMemorySpanExporter()
        self.ingestor = Ingestor(self.exporter, config.Settings())
        self.config_dir = Path(tempfile.mkdtemp(prefix="llmobs-fuzz-config-"))


_targets: _Targets | None = None


def _get() -> _Targets:
    global _targets
    if _targets is None:
        _targets = _Targets()
    return _targets


# --- OTLP receiver ---------------------------------------------------------------------------------------


def otlp_input(body: bytes, *, json_body: bool = False, coding: str = "identity") -> bytes:
    """Encode a request for :func:`fuzz_otlp`: one selector byte (encoding, Content-Encoding), then the body."""
    if coding == "gzip":
        body = gzip.compress(body)
    elif coding == "deflate":
        body = zlib.compress(body)
    return bytes([int(json_body) | _ENCODINGS.index(coding) << 1]) + body


def fuzz_otlp(data: bytes) -> int:
    """One OTLP/HTTP trace request; returns the number of spans decoded (0 when refused cleanly)."""
    t = _get()
    if not data:
        return 0
    selector, body = data[0], data[1:]
    encoding = t.otlp.JSON if selector & 1 else t.otlp.PROTOBUF
    coding = _ENCODINGS[(selector >> 1) % 3]
    try:
        body = t.otlp.inflate(body, coding, BODY_LIMIT)  # what the receiver and the Dify relay do first
    except t.otlp.BodyError as refused:
        if refused.status not in _CLEAN_STATUSES:
            raise AssertionError(f"unexpected refusal {refused.status}: {refused}") from None
        return 0
    try:
        request = t.otlp.parse(body, encoding)
    except t.otlp.PayloadError as exc:
        assert str(exc), "a PayloadError says why"
        return 0
    t.exporter.clear()
    result = t.ingestor.ingest(request)
    spans = t.exporter.get_finished_spans()
    t.exporter.clear()
    assert result.stored and result.accepted == len(spans)
    decoded = sum(_size(s.attributes) + sum(_size(e.attributes) for e in s.events) for s in spans)
    # Reduction to SDK attribute values may escape text (JSON of key-value lists, base64 of bytes) but never
    # multiply it: a nested array once decoded into 2**depth bytes.
    assert decoded <= 16 * len(body) + 64 * 1024 * (1 + len(spans)), f"{len(body)} bytes decoded into {decoded}"
    return len(spans)


def _size(attributes: Mapping[str, Any] | None) -> int:
    total = 0
    for key, value in (attributes or {}).items():
        assert isinstance(value, str | bool | int | float | tuple | list), f"{key}: {type(value).__name__}"
        if isinstance(value, tuple | list):
            assert all(isinstance(v, str | bool | int | float) for v in value), f"{key}: nested {value!r:.80}"
        total += len(key) + len(str(value))
    return total


def otlp_seeds() -> list[bytes]:
    """Valid requests (protobuf and JSON, plain and compressed) in the shapes instrumentations send."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    now = time.time_ns()
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "fuzz"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "openinference.instrumentation.langchain"
    span = scope_spans.spans.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="ChatOpenAI")
    span.parent_span_id = bytes(range(2, 10))
    span.start_time_unix_nano, span.end_time_unix_nano, span.kind = now, now + 1000, 3
    values: list[tuple[str, AnyValue]] = [
        ("openinference.span.kind", AnyValue(string_value="LLM")),
        ("llm.model_name", AnyValue(string_value="gpt-4o")),
        ("llm.token_count.prompt", AnyValue(int_value=12)),
        ("llm.invocation_parameters", AnyValue(string_value='{"temperature": 0.2, "api_key": "sk-x"}')),
        ("llm.input_messages.0.message.role", AnyValue(string_value="user")),
        ("llm.input_messages.0.message.content", AnyValue(string_value="hello")),
        ("gen_ai.request.temperature", AnyValue(double_value=0.5)),
        ("gen_ai.input.messages", AnyValue(string_value='[{"role":"user","parts":[{"type":"text","content":"hi"}]}]')),
        ("raw", AnyValue(bytes_value=b"\x00\xff")),
        ("flag", AnyValue(bool_value=True)),
    ]
    for key, value in values:
        span.attributes.add(key=key).value.CopyFrom(value)
    nested = span.attributes.add(key="nested").value
    nested.array_value.values.add().kvlist_value.values.add(key="k").value.array_value.values.add(int_value=1)
    event = span.events.add(name="gen_ai.content.prompt", time_unix_nano=now)
    event.attributes.add(key="gen_ai.prompt").value.string_value = "hello"
    span.status.code, span.status.message = 2, "boom"
    protobuf = request.SerializeToString()
    document = {
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "fuzz"}}]},
            "scopeSpans": [{"scope": {"name": "traceloop"}, "spans": [{
                "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
                "parentSpanId": "00f067aa0ba902b7", "name": "openai.chat", "kind": 3,
                "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 5),
                "attributes": [
                    {"key": "gen_ai.prompt.0.content", "value": {"stringValue": "hi"}},
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "3"}},
                    {"key": "x", "value": {"arrayValue": {"values": [{"doubleValue": 1.5}, {"stringValue": "a"}]}}},
                    {"key": "y", "value": {"kvlistValue": {"values": [{"key": "z", "value": {"boolValue": True}}]}}},
                ],
                "events": [{"name": "e", "timeUnixNano": str(now)}],
                "status": {"code": 1},
            }]}],
        }]
    }
    text = json.dumps(document).encode()
    return [
        otlp_input(protobuf),
        otlp_input(protobuf, coding="gzip"),
        otlp_input(protobuf, coding="deflate"),
        otlp_input(text, json_body=True),
        otlp_input(text, json_body=True, coding="gzip"),
    ]


# --- llmobs.toml -----------------------------------------------------------------------------------------


def fuzz_config(data: bytes) -> int:
    """One llmobs.toml; returns the number of settings it set (0 when refused cleanly)."""
    import dataclasses

    t = _get()
    path = t.config_dir / "llmobs.toml"
    path.write_bytes(data)
    try:
        values = t.config.parse_file(path)
        dataclasses.replace(t.config.Settings(), **values)
    except t.config.ConfigError as exc:
        assert str(exc).startswith(str(path)), f"the error names the file: {exc}"
        return 0
    return len(values)


CONFIG_SEEDS = [
    b'service_name = "support-bot"\ncapture = "span_only"\nmax_attribute_bytes = 16384\npii_redaction = true\n'
    b'exporters = ["store", "otlp"]\ndisabled_integrations = "vllm, promptflow"\n\n'
    b'[retention]\nmax_age_days = 3\nmax_mb = 100\n\n[prices."my-finetune"]\ninput = 0.8\noutput = 2.4\n'
    b"cache_read = 0.1\n",
    b'[llmobs]\nstore = "/tmp/x.db"\ncapture = "NO_CONTENT"\n',
    b'[sampling]\nenabled = true\nratio = 0.03\nfloor = 10\nfloor_window_s = 3600\nkey = ["service", "name"]\n'
    b"max_traces_per_minute = 600\nkey_max_traces_per_minute = 60\n\n"
    b'[[sampling.rules]]\nmatch = { name = "invoke_agent healthcheck*" }\nratio = 0.0\n\n'
    b'[[sampling.rules]]\nmatch = { model = "gpt-5*", operation = "chat" }\nratio = 1.0\n\n'
    b'[sampling.promote]\nlatency_s = 20\nttft_s = 3\ntokens = 16000\ncost_usd = 0.10\n'
    b'finish_reasons = ["length", "content_filter"]\nempty_output = true\nmin_eval_score = 0.5\n\n'
    b"[sampling.buffer]\nmax_traces = 10000\nmax_spans = 200000\nmax_age_s = 600\n",
]


# --- the Dify relay -------------------------------------------------------------------------------------

_DIFY_KEY = "relay-key"
_dify_relay: Any = None


def fuzz_dify(data: bytes) -> int:
    """One POST to the Dify plugin's /v1/traces endpoint; returns the HTTP status it answered."""
    global _dify_relay
    if _dify_relay is None:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from llmobs_dify import relay

        exporter = InMemorySpanExporter()
        _dify_relay = (relay, relay.Exporters(lambda dest: exporter), exporter)
    relay, exporters, exporter = _dify_relay
    if not data:
        return 0
    selector, body = data[0], data[1:]
    content_type = ("application/x-protobuf", "application/json", "application/protobuf", "text/plain")[selector & 3]
    coding = _ENCODINGS[(selector >> 2 & 3) % 3]
    headers = {"Content-Type": content_type, "Content-Encoding": coding}
    if not selector & 0x20:
        headers["Authorization" if selector & 0x40 else "api_key"] = ("Bearer " if selector & 0x40 else "") + _DIFY_KEY
    settings = {"api_key": _DIFY_KEY, "otlp_endpoint": "http://127.0.0.1:4318", "service_name": "dify-fuzz"}
    reply = relay.handle_traces(settings, headers, body, exporters)
    exporter.clear()
    assert reply.status in (200, 400, 401, 413, 415), f"answered {reply.status}: {reply.body[:200]!r}"
    assert isinstance(reply.body, bytes)
    return reply.status


def dify_seeds() -> list[bytes]:
    """The OTLP seeds with the selector bits the relay reads (protobuf/JSON, key offered either way)."""
    seeds = []
    for seed in otlp_seeds():
        json_body, coding = seed[0] & 1, _ENCODINGS[(seed[0] >> 1) % 3]
        for auth in (0x00, 0x40):
            seeds.append(bytes([json_body | _ENCODINGS.index(coding) << 2 | auth]) + seed[1:])
    return seeds


TARGETS: dict[str, tuple[Callable[[bytes], int], Callable[[], Sequence[bytes]]]] = {
    "otlp": (fuzz_otlp, otlp_seeds),
    "config": (fuzz_config, lambda: CONFIG_SEEDS),
    "dify": (fuzz_dify, dify_seeds),
}


def plain_fuzz(name: str, runs: int, seed: int = 0) -> tuple[int, float]:
    """Mutation fuzzing without coverage feedback: ``runs`` inputs from the seeds; (inputs, seconds)."""
    import random
    import traceback

    target, seeds = TARGETS[name]
    corpus = list(seeds())
    rng = random.Random(seed)
    started = time.monotonic()
    for _ in range(runs):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            op, at = rng.randrange(5), rng.randrange(len(data) + 1)
            if op == 0 and at < len(data):
                data[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                del data[at:]
            elif op == 2:
                data[at:at] = rng.randbytes(rng.randint(1, 16))
            elif op == 3:
                data[at:at] = bytes(data[at : at + 8]) * rng.randint(2, 64)
            else:
                other = rng.choice(corpus)
                data[at:] = other[rng.randrange(len(other) + 1) :]
        try:
            target(bytes(data))
        except Exception:
            crash = Path(f"crash-{name}-{int(time.time())}")
            crash.write_bytes(bytes(data))
            traceback.print_exc()
            sys.exit(f"{name}: finding saved as {crash}")
    return runs, time.monotonic() - started


# --- the atheris runner ----------------------------------------------------------------------------------


def _has_corpus_dir(args: Iterable[str]) -> bool:
    return any(not a.startswith("-") and os.path.isdir(a) for a in args)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags | --plain-runs N] [corpus | crash file]")
    name = argv[1]
    if "--plain-runs" in argv:
        runs, seconds = plain_fuzz(name, int(argv[argv.index("--plain-runs") + 1]))
        print(f"plain {name}: {runs} inputs in {seconds:.1f} s")
        return
    import atheris

    with atheris.instrument_imports(include=["llmobs", "llmobs_dify"]):
        _get()
        if name == "dify":
            import llmobs_dify.relay  # noqa: F401  (instrumented: coverage guides the relay too)
    target, seeds = TARGETS[name]
    args = [argv[0], *argv[2:]]
    if not _has_corpus_dir(args[1:]) and not any(os.path.isfile(a) for a in args[1:]):
        corpus = tempfile.mkdtemp(prefix=f"llmobs-fuzz-{name}-")
        for i, seed in enumerate(seeds()):
            Path(corpus, f"seed-{i}").write_bytes(seed)
        args.append(corpus)
    if not any(a.startswith("-timeout=") for a in args):
        args.append("-timeout=10")
    if not any(a.startswith("-rss_limit_mb=") for a in args):
        args.append("-rss_limit_mb=2048")

    def one(data: bytes) -> None:
        target(data)

    atheris.Setup(args, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
