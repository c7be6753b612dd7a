"""The ``llmobs serve`` console in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Screenshots are kept as test artifacts under the pytest base temporary directory
(``console-screenshots/``). The README's picture is made on purpose, not by the test run:

    .venv/bin/python tests/test_console_browser.py --screenshot docs/console.png
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.serve import create_server
from llmobs.testing import launch_chromium

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def seed(path: Path) -> dict[str, str]:
    """`llmobs demo` into ``path`` plus one trace whose prompt, answer and names are hostile markup."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from llmobs.store import SQLiteSpanExporter, TraceStore
    from llmobs.store.queries import TraceQuery

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
    demo = subprocess.run([str(Path(sys.executable).with_name("llmobs")), "demo", "--store", str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    exporter = SQLiteSpanExporter(path)
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    agent = recorder.start("invoke_agent", HOSTILE, parent=ROOT, session_id="hostile-session")
    llm = recorder.start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_input([content.message("user", [content.text_part(HOSTILE)])])
    llm.chunk()
    llm.set_usage(12, 7)
    llm.set_output([content.output_message([content.text_part(f"echo {HOSTILE}")], "stop")])
    llm.end()
    agent.end()
    provider.shutdown()
    with TraceStore(path) as store:
        failed = store.search_traces(TraceQuery(status="error"), 50).traces
    demo_trace = next(t for t in failed if t.name == "invoke_agent support-agent")  # the core demo's failed run
    return {"demo": demo_trace.trace_id, "hostile": agent.trace_id}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the playwright Python package (it drives the system Chromium)")
    path = tmp_path_factory.mktemp("console") / "console.db"
    ids = seed(path)
    server = create_server(path, port=0).start()
    shots = tmp_path_factory.getbasetemp() / "console-screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield {"page": page, "url": server.url, "ids": ids, "shots": shots, "errors": errors}
        browser.close()
    server.close()
    print(f"\nconsole screenshots: {shots}")


def test_list_trace_span_messages_tokens_ttft(console):
    page, url = console["page"], console["url"]
    page.goto(f"{url}/")
    rows = page.locator("[data-test=traces] tbody tr[data-trace]")
    rows.first.wait_for()
    assert rows.count() >= 4
    page.screenshot(path=console["shots"] / "traces.png")

    page.locator("[data-test=traces] tbody tr", has_text="invoke_agent support-agent").first.click()
    page.locator("[data-test=waterfall]").wait_for()
    assert page.locator("[data-test=ttft-marker]").count() >= 1
    page.locator(".wf-row[data-span]:has(.kind-LLM)").first.click()
    detail = page.locator("[data-test=span-detail]")
    detail.locator("[data-test=conversation]").first.wait_for()
    assert detail.locator(".message[data-role=user]").count() >= 1
    assert detail.locator(".message[data-role=assistant]").count() >= 1
    assert " in · " in detail.locator("[data-fact=Tokens]").inner_text()
    assert detail.locator("[data-fact=TTFT]").inner_text().endswith(("ms", "s", "µs"))
    page.screenshot(path=console["shots"] / "trace.png")
    assert console["errors"] == []


def test_hostile_span_text_is_shown_not_run(console):
    page, url = console["page"], console["url"]
    page.goto(f"{url}/#/trace/{console['ids']['hostile']}")
    page.locator(".wf-row[data-span]:has(.kind-LLM)").first.click()
    detail = page.locator("[data-test=span-detail]")
    detail.locator(".message[data-role=user]").wait_for()
    assert HOSTILE in detail.locator(".message[data-role=user]").inner_text()
    assert page.locator("h1", has_text="<script>").count() == 1  # the span name, as text
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0
    page.goto(f"{url}/#/traces?q=__pwned")
    page.locator("[data-test=traces] tbody tr[data-trace]").first.wait_for()
    assert page.evaluate("window.__pwned") is None
    assert "null" not in page.locator("main").inner_text()  # nothing missing rendered as text
    page.screenshot(path=console["shots"] / "hostile.png")


def test_sessions_and_dashboard(console):
    page, url = console["page"], console["url"]
    page.goto(f"{url}/#/sessions")
    page.locator("[data-test=sessions] tbody tr", has_text="hostile-session").click()
    page.locator("[data-test=turn]").first.wait_for()
    assert "echo" in page.locator("[data-test=turn]").first.inner_text()
    page.screenshot(path=console["shots"] / "session.png")

    page.goto(f"{url}/#/dashboard?by=model&range=7d")
    page.locator("[data-test=chart]").first.wait_for()
    assert page.locator("[data-test=chart]").count() == 8
    assert page.locator("[data-test=chart] polyline, [data-test=chart] circle").count() > 0
    assert "gpt-4o-mini" in page.locator("[data-test=dashboard-totals]").inner_text()
    page.screenshot(path=console["shots"] / "dashboard.png", full_page=True)
    assert console["errors"] == []


def screenshot(out: Path) -> None:
    """The README picture: a demo trace with its LLM span open."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        ids = seed(Path(tmp) / "console.db")
        server = create_server(Path(tmp) / "console.db", port=0).start()
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page(viewport={"width": 1440, "height": 860})
                page.goto(f"{server.url}/#/trace/{ids['demo']}")
                page.locator(".wf-row[data-span]:has(.kind-LLM)").first.click()
                page.locator("[data-test=conversation]").first.wait_for()
                page.screenshot(path=out)
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, required=True, help="where to write the PNG")
    screenshot(parser.parse_args().screenshot)
    sys.exit(0)
