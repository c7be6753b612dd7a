"""Settings from defaults < llmobs.toml < environment < code, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmobs import config
from llmobs.config import ConfigError, load, parse_file
from llmobs.content import CaptureMode
from llmobs.pricing import ModelPrice

GOOD = """
service_name = "support-bot"
capture = "event_only"
max_attribute_bytes = 4096
exporters = ["store", "console"]

[retention]
max_age_days = 3

[prices."acme-1"]
input = 1.5
output = 3
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmobs.toml"
    path.write_text(text)
    return path


def test_defaults_capture_content_on_span_and_use_the_store():
    s = load(environ={})
    assert s.capture is CaptureMode.SPAN_ONLY
    assert s.max_attribute_bytes == 8192
    assert s.exporters == ("auto",)
    assert s.pii_redaction is False
    assert s.sdk_spans is False
    assert s.source == "defaults"


def test_sdk_spans_from_file_and_environment(tmp_path):
    assert load(environ={"LLMOBS_CONFIG": str(write(tmp_path, "sdk_spans = true\n"))}).sdk_spans is True
    assert load(environ={"LLMOBS_SDK_SPANS": "true"}).sdk_spans is True
    with pytest.raises(ConfigError, match="LLMOBS_SDK_SPANS: expected true or false"):
        load(environ={"LLMOBS_SDK_SPANS": "sometimes"})


def test_file_then_env_then_code(tmp_path):
    path = write(tmp_path, GOOD)
    s = load(environ={"LLMOBS_CONFIG": str(path)})
    assert s.service_name == "support-bot" and s.capture is CaptureMode.EVENT_ONLY
    assert s.exporters == ("store", "console") and s.retention_max_age_days == 3
    assert s.prices == {"acme-1": ModelPrice(1.5, 3.0)}
    env = {"LLMOBS_CONFIG": str(path), "LLMOBS_CAPTURE": "no_content", "LLMOBS_MAX_ATTRIBUTE_BYTES": "2048"}
    s = load(environ=env)
    assert s.capture is CaptureMode.NO_CONTENT and s.max_attribute_bytes == 2048
    s = load({"capture": "span_and_event", "pii_redaction": True}, environ=env)
    assert s.capture is CaptureMode.SPAN_AND_EVENT and s.pii_redaction is True
    assert s.source == f"defaults < {path} < environment < code"


def test_otel_capture_variable_is_honoured():
    assert load(environ={config.OTEL_CAPTURE_ENV: "NO_CONTENT"}).capture is CaptureMode.NO_CONTENT
    assert load(environ={config.OTEL_CAPTURE_ENV: "false"}).capture is CaptureMode.NO_CONTENT
    assert load(environ={config.OTEL_CAPTURE_ENV: "SPAN_AND_EVENT"}).capture is CaptureMode.SPAN_AND_EVENT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('capture = "loud"\n', ":1: capture: expected one of NO_CONTENT"),
        ('\n\nmax_attribute_bytes = "big"\n', ":3: max_attribute_bytes: expected a number"),
        ("\nexporters = ['kafka']\n", ":2: exporters: unknown exporter 'kafka'"),
        ("colour = 1\n", ":1: colour: unknown setting"),
        ('[prices."m"]\ninput = 1\n', ":1: prices.m: expected a table with input and output"),
        ("capture = \n", "Invalid value"),
    ],
)
def test_invalid_file_names_line_and_reason(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        parse_file(write(tmp_path, text))
    assert expected in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_invalid_environment_and_code_values_are_clear():
    with pytest.raises(ConfigError, match="LLMOBS_PII_REDACTION: expected true or false"):
        load(environ={"LLMOBS_PII_REDACTION": "maybe"})
    with pytest.raises(ConfigError, match=r"configure\(nope=...\): unknown setting"):
        load({"nope": 1}, environ={})


def test_config_check_command(tmp_path, capsys):
    assert config.check_command(str(write(tmp_path, GOOD))) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "capture = EVENT_ONLY" in out
    assert config.check_command(str(write(tmp_path, "capture = 3\n"))) == 1
    assert "invalid:" in capsys.readouterr().err
    assert config.check_command(str(tmp_path / "missing.toml")) == 1


def test_swap_is_atomic_and_returns_the_previous(settings):
    first = settings(max_attribute_bytes=1000)
    previous = config.swap(config.Settings(max_attribute_bytes=2000))
    assert previous is first and config.current().max_attribute_bytes == 2000


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "nan"])
def test_non_finite_numbers_are_invalid_values(value):
    for variable in ("LLMOBS_RETENTION_MB", "LLMOBS_RETENTION_DAYS", "LLMOBS_EXPORT_SHUTDOWN_TIMEOUT"):
        with pytest.raises(ConfigError, match=f"{variable}: expected a finite number"):
            load(environ={variable: value})


def test_config_check_reports_an_infinite_number(tmp_path, capsys):
    assert config.check_command(str(write(tmp_path, "[export]\nshutdown_timeout_s = inf\n"))) == 1
    assert "export.shutdown_timeout_s: expected a finite number" in capsys.readouterr().err


def test_integration_enabled_ignores_case_and_holds_with_nothing_disabled():
    assert config.Settings().integration_enabled("OpenAI")
    some = config.Settings(disabled_integrations=frozenset({"openai"}))
    assert not some.integration_enabled("openai") and not some.integration_enabled("OpenAI")
    assert some.integration_enabled("langchain")
