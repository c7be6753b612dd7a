"""Settings, authentication, the exporter cache and the Dify part of the core's interop mapping."""

import json

import pytest
from dify_traces import Run, arms_spans, phoenix_spans
from werkzeug.datastructures import EnvironHeaders, Headers

from llmobs import interop
from llmobs import semconv as sc
from llmobs.content import CaptureMode, ContentPolicy
from llmobs_dify import relay
from llmobs_dify.settings import (
    Destination,
    SettingsError,
    destination,
    parse_headers,
    relay_settings,
    traces_url,
)


@pytest.mark.parametrize(("given", "url"), [
    ("https://c.example.com:4318", "https://c.example.com:4318/v1/traces"),
    ("https://c.example.com:4318/", "https://c.example.com:4318/v1/traces"),
    ("http://c/otlp/v1/traces", "http://c/otlp/v1/traces"),
    (" http://c/prefix?tenant=a ", "http://c/prefix/v1/traces?tenant=a"),
])
def test_traces_url(given, url):
    assert traces_url(given) == url


@pytest.mark.parametrize("bad", ["", "collector:4318", "ftp://c", "http://"])
def test_traces_url_refuses(bad):
    with pytest.raises(SettingsError):
        traces_url(bad)


def test_headers_in_both_forms():
    assert parse_headers("authorization=Bearer%20x, x-team=ml") == (("authorization", "Bearer x"), ("x-team", "ml"))
    assert parse_headers('{"x-team": "ml", "authorization": "Bearer x"}') == (
        ("authorization", "Bearer x"), ("x-team", "ml"))
    assert parse_headers(None) == ()
    for bad in ("no-equals-sign", '["a"]', "{not json", "a=b\r\nX: y"):
        with pytest.raises(SettingsError):
            parse_headers(bad)


def test_relay_settings():
    settings = relay_settings({"api_key": "k", "otlp_endpoint": "http://c", "capture_content": "no_content",
                               "max_attribute_bytes": "1024", "redact_pii": True})
    assert settings.capture is CaptureMode.NO_CONTENT and settings.max_attribute_bytes == 1024
    assert settings.redact_pii and settings.destination == Destination("http://c/v1/traces", (), "dify")
    defaults = relay_settings({"api_key": "k", "otlp_endpoint": "http://c"})
    assert (defaults.capture, defaults.max_attribute_bytes, defaults.redact_pii) == (CaptureMode.SPAN_ONLY, 8192, False)
    for bad in ({"otlp_endpoint": "http://c"}, {"api_key": "k", "otlp_endpoint": "http://c", "capture_content": "x"},
                {"api_key": "k", "otlp_endpoint": "http://c", "max_attribute_bytes": "12"},
                {"api_key": "k", "otlp_endpoint": "http://c", "max_attribute_bytes": "lots"}):
        with pytest.raises(SettingsError):
            relay_settings(bad)
    assert destination({"otlp_endpoint": "http://c", "service_name": " shop "}).service_name == "shop"


def test_a_key_saved_or_sent_with_surrounding_whitespace_still_matches():
    settings = relay_settings({"api_key": "  secret\n", "otlp_endpoint": "http://c"})
    assert settings.api_key == "secret"
    assert relay.authorised(EnvironHeaders({"HTTP_AUTHORIZATION": "Bearer secret "}), settings.api_key)
    assert relay.authorised(EnvironHeaders({"HTTP_API_KEY": " secret"}), settings.api_key)


def test_a_misconfigured_endpoint_tells_callers_nothing_of_its_settings(caplog):
    reply = relay.handle_traces({"api_key": "k", "otlp_endpoint": "ftp://user:hunter2@collector.internal"}, Headers(),
                                b"")  # fmt: skip
    assert reply.status == 500 and b"not configured" in reply.body
    assert b"hunter2" not in reply.body and b"collector.internal" not in reply.body
    assert "collector.internal" in caplog.text  # the operator finds the reason in the plugin's log


def test_keys_from_either_header():
    environ = {"HTTP_API_KEY": "secret", "HTTP_AUTHORIZATION": "Bearer other"}
    headers = EnvironHeaders(environ)
    assert relay.offered_keys(headers) == ["secret", "other"]
    assert relay.authorised(headers, "secret") and relay.authorised(headers, "other")
    assert not relay.authorised(headers, "secre") and not relay.authorised(Headers(), "secret")
    assert not relay.authorised(Headers([("Authorization", "Basic secret")]), "secret")


def test_exporter_cache_is_bounded_and_closes_what_it_evicts():
    made = []

    def factory(dest):
        made.append(relay._otlp_exporter(dest))
        return made[-1]

    def use(dest):
        with cache.use(dest) as exporter:
            return exporter

    cache = relay.Exporters(factory, limit=2)
    first = Destination("http://a/v1/traces")
    assert use(first) is use(first)
    use(Destination("http://b/v1/traces"))
    use(Destination("http://c/v1/traces"))
    assert len(made) == 3 and made[0]._shutdown and not made[2]._shutdown
    cache.clear()
    assert all(e._shutdown for e in made)


def test_an_exporter_evicted_while_a_request_uses_it_closes_when_that_request_ends():
    made = []

    def factory(dest):
        made.append(relay._otlp_exporter(dest))
        return made[-1]

    cache = relay.Exporters(factory, limit=1)
    with cache.use(Destination("http://a/v1/traces")) as busy:
        with cache.use(Destination("http://b/v1/traces")):  # evicts a's exporter while it is exporting
            assert not busy._shutdown
        assert not busy._shutdown
    assert busy._shutdown and not made[1]._shutdown


def _attributes(span) -> dict:
    return dict(span.attributes)


@pytest.mark.parametrize("spans", [phoenix_spans, arms_spans], ids=["phoenix", "arms"])
def test_normalise_is_idempotent_on_dify_spans(spans):
    for span in spans(Run()):
        once = interop.normalise(_attributes(span), name=span.name)
        assert interop.normalise(once, name=span.name) == once, span.name


def test_foreign_non_dify_spans_are_not_touched_by_the_dify_rules():
    attrs = {"openinference.span.kind": "LLM", "llm.provider": "azure/openai", "metadata": json.dumps(
        {"app_id": "x"}), "output.value": json.dumps({"text": "hi", "finish_reason": "stop"})}
    out = interop.normalise(attrs, name="llm")
    assert sc.DIFY_APP_ID not in out and sc.OUTPUT_MESSAGES not in out
    assert out[sc.PROVIDER_NAME] == "azure/openai"
    arms = {"gen_ai.span.kind": "RETRIEVER"}  # any LoongSuite span kind without an operation
    assert interop.normalise(arms)[sc.OPERATION_NAME] == sc.OP_RETRIEVAL


def test_no_content_drops_dify_content_but_keeps_facts():
    (llm,) = [s for s in phoenix_spans(Run()) if s.name == "llm_Answer"]
    out = interop.normalise(_attributes(llm), name=llm.name, policy=ContentPolicy(mode=CaptureMode.NO_CONTENT))
    assert sc.OUTPUT_MESSAGES not in out and sc.INPUT_VALUE not in out and sc.OUTPUT_VALUE not in out
    assert out[sc.RESPONSE_TIME_TO_FIRST_TOKEN_NS] == 420_000_000 and out[sc.USAGE_TOTAL_TOKENS] == 180
