"""Fuzzing the decoders that take bytes from outside: the OTLP receiver (protobuf and JSON, gzip and deflate)
and the llmobs.toml parser. Never a crash or a hang, always the decoder's clean error.

The targets live in ``fuzz_targets.py`` beside this file, which is also the long-running atheris fuzzer
(its docstring has the commands). Here hypothesis drives them on every run — mutated valid requests,
random bytes, structurally valid requests with hostile values, hostile TOML — and, where atheris is
installed, a short coverage-guided run of each target checks the runner itself works.
"""

from __future__ import annotations

import gzip
import http.client
import importlib.util
import json
import math
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from llmobs import config
from llmobs.serve import create_server, otlp

_PATH = Path(__file__).with_name("fuzz_targets.py")
_spec = importlib.util.spec_from_file_location("llmobs_reliability_fuzz_targets", _PATH)
targets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(targets)

def fuzz(examples: int):
    """Hypothesis settings for a fuzz test: ``examples`` inputs, no deadline, no example database."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SEEDS = targets.otlp_seeds()


# --- regressions found by fuzzing --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_nested_arrays_decode_in_linear_size(encoding):
    """A 40-deep array of arrays (a 2 KB request) once decoded into 2**40 bytes: each level re-encoded the
    level below as JSON, doubling its escapes (24 levels here: 16 MB before the fix)."""
    depth = 24
    value = AnyValue(string_value="x")
    for _ in range(depth):
        outer = AnyValue()
        outer.array_value.values.add().CopyFrom(value)
        value = outer
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="n")
    span.attributes.add(key="nested").value.CopyFrom(value)
    if encoding == "protobuf":
        data = targets.otlp_input(request.SerializeToString())
    else:
        from google.protobuf import json_format

        document = json_format.MessageToDict(request)
        document["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(
            traceId="01" * 16, spanId="02" * 8
        )
        data = targets.otlp_input(json.dumps(document).encode(), json_body=True)
    assert targets.fuzz_otlp(data) == 1
    decoded = otlp.decode(otlp.parse(data[1:], otlp.JSON if encoding == "json" else otlp.PROTOBUF),
                          lambda a, n, s: (n, a), lambda n, a: a, lambda a: a)
    (nested,) = decoded.spans[0].attributes["nested"]
    assert json.loads(nested) == json.loads("[" * (depth - 1) + '"x"' + "]" * (depth - 1))


@pytest.mark.parametrize(
    "text",
    [
        "max_attribute_bytes = inf",
        "max_attribute_bytes = -inf",
        "max_attribute_bytes = nan",
        "retention.max_mb = nan",
        "retention.max_age_days = nan",
        "[sampling]\nfloor = inf",
        "[sampling.buffer]\nmax_traces = inf",
        "[sampling.buffer]\nmax_spans = -inf",
    ],
)
def test_non_finite_numbers_in_the_config_file_are_clean_errors(tmp_path, text):
    """int(inf) raised OverflowError out of the parser (and out of configure() and config.current());
    NaN passed every ``>= minimum`` check."""
    path = tmp_path / "llmobs.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=re.escape(str(path))):
        config.parse_file(path)
    with pytest.raises(config.ConfigError):
        config.load(environ={config.CONFIG_ENV: str(path)})


def test_a_span_the_normaliser_cannot_read_is_rejected_not_the_request():
    """A flattened attribute key thousands of levels deep made the normaliser recurse past Python's limit:
    the RecursionError failed the whole request (a 500 from llmobs serve and the Dify relay)."""
    key = "llm.input_messages" + ".0" * 3_000 + ".message.content"
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.scope.name = "openinference.instrumentation.langchain"
    bad = scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\2" * 8, name="bad")
    bad.attributes.add(key=key).value.string_value = "x"
    scope_spans.spans.add(trace_id=b"\1" * 16, span_id=b"\3" * 8, name="good")
    ingestor = targets._get().ingestor
    decoded = otlp.decode(otlp.parse(request.SerializeToString(), otlp.PROTOBUF), ingestor.span_attributes,
                          ingestor.event_attributes, lambda a: a)
    assert "good" in [s.name for s in decoded.spans]
    assert len(decoded.spans) + decoded.rejected == 2  # the deep one normalised, or rejected with a reason
    assert decoded.rejected == 0 or "could not be read" in decoded.reason


@pytest.mark.parametrize(
    "text",
    [
        "service_name = " + "[" * 5_000 + "]" * 5_000,
        "x = " + "{a = " * 3_000 + "1" + "}" * 3_000,
        "[" + ".".join(["a"] * 3_000) + "]\nx = 1",
        ".".join(["a"] * 3_000) + " = 1",
    ],
    ids=["arrays", "inline-tables", "table-header", "dotted-key"],
)
def test_deeply_nested_toml_is_a_config_error(tmp_path, text):
    """tomllib parses nested arrays and inline tables recursively, and the settings' flattening walked nested
    tables recursively: the RecursionError escaped the parser (and configure(), and config.current())."""
    path = tmp_path / "llmobs.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match="nested too deeply"):
        config.parse_file(path)


# --- OTLP receiver ---------------------------------------------------------------------------------------

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.integers(0, 0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("repeat"), st.integers(0, 10_000), st.integers(2, 2_000)),
)


def _mutate(data: bytes, mutations) -> bytes:
    for op, at, arg in mutations:
        at = 1 + at % max(1, len(data) - 1)  # keep the selector byte
        if op == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ arg]) + data[at + 1 :]
        elif op == "cut":
            data = data[:at]
        elif op == "insert":
            data = data[:at] + arg + data[at:]
        elif op == "repeat":
            data = data[:at] + data[at : at + 8] * arg + data[at + 8 :]
    return data


@fuzz(400)
@given(st.sampled_from(SEEDS), st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_requests_decode_or_are_refused(seed, mutations):
    targets.fuzz_otlp(_mutate(seed, mutations))


@fuzz(200)
@given(st.integers(0, 5), st.binary(max_size=2_000))
def test_random_bytes_are_refused_cleanly(selector, body):
    targets.fuzz_otlp(bytes([selector]) + body)


_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.sampled_from(["", "null", "[", '{"role":"user"', "[{}]", '[{"role":1,"parts":"x"}]', "\x00", "😀" * 50]),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\\", '"', "\n"]), st.integers(0, 200_000)),
)
_KEYS = st.one_of(
    st.sampled_from([
        "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.prompt",
        "gen_ai.completion", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.request.model",
        "gen_ai.response.finish_reasons", "gen_ai.operation.name", "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.role", "llm.token_count.prompt", "llm.invocation_parameters",
        "openinference.span.kind", "input.value", "output.value", "gen_ai.prompt.0.content",
        "traceloop.entity.input", "llm.usage.total_tokens", "session.id", "user.id", "service.name",
        "gen_ai.tool.call.arguments", "retrieval.documents.0.document.content", "embedding.embeddings",
    ]),
    st.text(max_size=12),
)


def _any_values():
    leaves = st.one_of(
        st.builds(lambda s: {"stringValue": s}, _TEXT),
        st.builds(lambda i: {"intValue": str(i)}, st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda f: {"doubleValue": f if math.isfinite(f) else str(f).replace("inf", "Infinity")
                  .replace("nan", "NaN")}, st.floats()),
        st.builds(lambda b: {"boolValue": b}, st.booleans()),
        st.builds(lambda b: {"bytesValue": __import__("base64").b64encode(b).decode()}, st.binary(max_size=40)),
        st.just({}),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=4)),
            st.builds(lambda kv: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kv]}},
                      st.lists(st.tuples(_KEYS, inner), max_size=4)),
        ),
        max_leaves=12,
    )


_ATTRIBUTES = st.lists(st.builds(lambda k, v: {"key": k, "value": v}, _KEYS, _any_values()), max_size=8)
_HEX = st.one_of(st.binary(min_size=0, max_size=17).map(bytes.hex), st.sampled_from(["", "zz", "0" * 32, "0" * 16]))
_TIME = st.one_of(st.integers(0, 2**64 - 1).map(str), st.sampled_from(["-1", "1e30", "x"]))
_SPAN = st.fixed_dictionaries(
    {
        "traceId": st.one_of(st.just("0af7651916cd43dd8448eb211c80319c"), _HEX),
        "spanId": st.one_of(st.just("b7ad6b7169203331"), _HEX),
        "name": _TEXT,
        "attributes": _ATTRIBUTES,
    },
    optional={
        "parentSpanId": _HEX,
        "kind": st.integers(-3, 9),
        "startTimeUnixNano": _TIME,
        "endTimeUnixNano": _TIME,
        "events": st.lists(st.fixed_dictionaries({"name": _TEXT, "attributes": _ATTRIBUTES},
                                                 optional={"timeUnixNano": _TIME}), max_size=3),
        "status": st.fixed_dictionaries({}, optional={"code": st.integers(-2, 5), "message": _TEXT}),
        "flags": st.integers(0, 2**32 - 1),
    },
)
_SCOPE = st.sampled_from(["llmobs", "openinference.instrumentation.langchain", "opentelemetry.instrumentation.openai",
                          "traceloop", "promptflow", "langfuse-sdk", ""])
_DOCUMENT = st.builds(
    lambda resource, scope, spans: {"resourceSpans": [{"resource": {"attributes": resource},
                                                       "scopeSpans": [{"scope": {"name": scope}, "spans": spans}]}]},
    _ATTRIBUTES, _SCOPE, st.lists(_SPAN, min_size=1, max_size=3),
)


@fuzz(150)
@given(_DOCUMENT, st.sampled_from(["json", "protobuf"]), st.sampled_from(["identity", "gzip", "deflate"]))
def test_valid_requests_with_hostile_values_decode_within_bounds(document, encoding, coding):
    body = json.dumps(document).encode()
    if encoding == "protobuf":
        try:
            body = otlp.parse(body, otlp.JSON).SerializeToString()
        except otlp.PayloadError:
            return  # not representable (e.g. an int out of range); the JSON route covers it
    targets.fuzz_otlp(targets.otlp_input(body, json_body=encoding == "json", coding=coding))


def test_compression_bombs_and_truncations_are_refused():
    body = SEEDS[0][1:]
    assert targets.fuzz_otlp(targets.otlp_input(b"\0" * (targets.BODY_LIMIT + 1), coding="gzip")) == 0
    assert targets.fuzz_otlp(targets.otlp_input(b"\0" * (targets.BODY_LIMIT + 1), coding="deflate")) == 0
    assert targets.fuzz_otlp(targets.otlp_input(body, coding="gzip")[:-9]) == 0
    assert targets.fuzz_otlp(bytes([2]) + gzip.compress(body) * 2) == 1  # a second gzip member is ignored
    assert targets.fuzz_otlp(bytes([4]) + zlib.compress(body)[:5]) == 0


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    server = create_server(tmp_path_factory.mktemp("fuzz") / "s.db", port=0, max_body=256 * 1024,
                           settings=config.Settings()).start()
    yield server
    server.close()


def _post(server, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    try:
        connection.request("POST", "/v1/traces", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@fuzz(60)
@given(
    st.one_of(st.sampled_from(SEEDS), st.builds(_mutate, st.sampled_from(SEEDS), st.lists(_mutation, max_size=3))),
    st.sampled_from(["gzip", "deflate", "identity", "br", "GZIP ", ""]),
    st.booleans(),
)
def test_the_receiver_answers_every_request_without_a_server_error(receiver, data, coding, chunked):
    """The same inputs through a real ``llmobs serve`` socket: an answer for each, never a 5xx."""
    selector, body = data[0], data[1:]
    content_type = otlp.JSON if selector & 1 else otlp.PROTOBUF
    headers = {"Content-Type": content_type, "Content-Encoding": coding}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        body = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:100], body[100:]) if part) + b"0\r\n\r\n"
    status = _post(receiver, body, headers)
    assert status in (200, 400, 413, 415), status


# --- llmobs.toml -----------------------------------------------------------------------------------------


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"


_SETTINGS = [
    "service_name", "capture", "max_attribute_bytes", "pii_redaction", "exporters", "store", "disabled_integrations",
    "prices", "sampling", "retention", "retention.max_age_days", "retention.max_mb", "sampling.enabled",
    "sampling.ratio", "sampling.floor", "sampling.floor_window_s", "sampling.key", "sampling.max_traces_per_minute",
    "sampling.key_max_traces_per_minute", "sampling.rules", "sampling.promote", "sampling.buffer", "llmobs", "other",
]
_INNER = ["match", "ratio", "input", "output", "cache_read", "cache_write", "enabled", "latency_s", "ttft_s",
          "tokens", "cost_usd", "finish_reasons", "empty_output", "min_eval_score", "max_traces", "max_spans",
          "max_age_s", "name", "model", "gpt-4o", "max_age_days", "max_mb", "x"]
_SCALAR = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 64, 63, 10**30]).filter(lambda v: abs(v) < 2**63),
    st.floats(),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.5, 1e308, -0.0]),
    st.text(max_size=20),
    st.sampled_from(["SPAN_ONLY", "no_content", "true", "off", "none", "store,otlp", "auto", "1e400", "-1", "nan",
                     "inf", "gpt-5*", "*", "[", "\\"]),
)
_TOML_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(_INNER), inner, max_size=4)),
    max_leaves=10,
)


@fuzz(200)
@given(st.dictionaries(st.sampled_from(_SETTINGS), _TOML_VALUE, max_size=6))
def test_hostile_settings_are_accepted_or_a_config_error(table):
    text = "\n".join(f"{key} = {_toml(value)}" for key, value in table.items())
    targets.fuzz_config(text.encode("utf-8", "surrogatepass"))


@fuzz(200)
@given(st.sampled_from(targets.CONFIG_SEEDS), st.lists(_mutation, min_size=1, max_size=4), st.binary(max_size=64))
def test_mutated_and_random_config_files_are_accepted_or_a_config_error(seed, mutations, noise):
    targets.fuzz_config(_mutate(b"#" + seed, mutations))
    targets.fuzz_config(noise)


# --- the atheris runner ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "runs"), [("otlp", 20_000), ("config", 4_000)])
def test_atheris_short_run(target, runs, tmp_path):
    """A bounded coverage-guided run per target (longer runs: see fuzz_targets.py)."""
    pytest.importorskip("atheris")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(_PATH), target, f"-runs={runs}", "-max_total_time=60", "-print_final_stats=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    executed = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", done.stderr).group(1))
    assert executed >= min(runs, 1_000), done.stderr[-2000:]
    print(f"atheris {target}: {executed} inputs in {time.monotonic() - started:.1f} s")
