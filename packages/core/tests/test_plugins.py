"""Plugins: a third-party plugin installed under the `llmobs` entry-point group is found and used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmobs import content, plugins
from llmobs import semconv as sc
from llmobs.recorder import Recorder

PLUGIN = """
import llmobs
from llmobs.pricing import ModelPrice

@llmobs.hookimpl
def llmobs_model_price(provider, model, settings):
    return ModelPrice(input=10.0, output=20.0) if model.startswith("acme-") else None

@llmobs.hookimpl
def llmobs_redactors(settings):
    return [lambda text: text.replace("ACME-INTERNAL", "[ACME]")]

@llmobs.hookimpl
def llmobs_span_end(handle):
    handle.set_attribute("acme.plugin", True)
"""

CHILD = """
import json
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from llmobs import content, plugins, selfstats
from llmobs.recorder import Recorder

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
h = Recorder(provider).start("chat", provider="acme", model="acme-1")
h.set_input([content.message("user", [content.text_part("ACME-INTERNAL roadmap")])])
h.set_usage(1_000_000, 500_000)
h.end()
(span,) = exporter.get_finished_spans()
names = [name for name, _ in plugins.manager().list_name_plugin()]
print(json.dumps({"attributes": dict(span.attributes), "plugins": names, "stats": selfstats.snapshot()}))
"""


def install_fake_distribution(site: Path, name: str, module_source: str | None, entry_point: str) -> None:
    """Lay a distribution out as an installer does: the module plus its .dist-info with entry points."""
    if module_source is not None:
        (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[llmobs]\n{entry_point}\n")


def run_child(site: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(site), "LLMOBS_AUTO_CONFIGURE": "false"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_entry_point_plugin_prices_redacts_and_enriches(tmp_path):
    install_fake_distribution(tmp_path, "acme_llmobs", PLUGIN, "acme = acme_llmobs")
    result = run_child(tmp_path)
    attrs = result["attributes"]
    assert "acme" in result["plugins"]
    assert attrs[sc.COST_USD] == pytest.approx(10.0 + 10.0)  # 1M in at $10/M + 0.5M out at $20/M
    assert "[ACME] roadmap" in attrs[sc.INPUT_MESSAGES] and "ACME-INTERNAL" not in attrs[sc.INPUT_MESSAGES]
    assert attrs["acme.plugin"] is True


def test_a_broken_plugin_is_counted_not_raised(tmp_path):
    install_fake_distribution(
        tmp_path, "broken_llmobs", "raise ImportError('missing dependency')\n", "broken = broken_llmobs"
    )
    result = run_child(tmp_path)
    assert result["stats"].get("plugin.load_failed:broken") == 1
    assert sc.COST_USD not in result["attributes"]  # acme-1 has no built-in price


def test_pii_redaction_is_a_builtin_plugin_one_setting_away(settings):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    text = "mail jane.doe@example.com or call +14155550123, card 4111 1111 1111 1111"
    rendered = {}
    for pii in (False, True):
        settings(pii_redaction=pii)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        h = Recorder(provider).start(sc.OP_CHAT, model="m", provider="openai")
        h.set_input([content.message("user", [content.text_part(text)])])
        h.end()
        rendered[pii] = exporter.get_finished_spans()[0].attributes[sc.INPUT_MESSAGES]
    assert "jane.doe@example.com" in rendered[False]
    for secret in ("jane.doe@example.com", "+14155550123", "4111 1111 1111 1111"):
        assert secret not in rendered[True]
    names = [name for name, _ in plugins.manager().list_name_plugin()]
    assert "llmobs.builtins" in names
