"""The ``llmobs analyze`` HTML report in real headless Chromium (Debian's ``chromium``, driven by Playwright),
opened from a file with the network blocked: it must render whole on its own (no CDN), show hostile span
text as text, and its topic map must answer clicks. Screenshots are kept under the pytest base
temporary directory (``analyze-report/``).
"""

from __future__ import annotations

import pytest
from analyze_corpus import build
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from llmobs import content
from llmobs import semconv as sc
from llmobs.cli import main
from llmobs.recorder import ROOT, Recorder
from llmobs.store import SQLiteSpanExporter
from llmobs.testing import launch_chromium

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need the playwright Python package (it drives the system Chromium)")
    folder = tmp_path_factory.mktemp("analyze-report")
    store = folder / "report.db"
    build(store, 300, seed=21)
    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(store, retention=None)))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    llm = recorder.start(sc.OP_CHAT, provider="openai", model=f"gpt-4o-mini{HOSTILE}", parent=ROOT)
    llm.set_input([content.message(sc.ROLE_USER, [content.text_part(f"Where is my parcel? {HOSTILE}")])])
    llm.set_output([content.output_message([content.text_part(f"I'm sorry, but I can't help with that. {HOSTILE}")],
                                           "stop")])
    llm.end()
    provider.shutdown()
    page_path = folder / "report.html"
    assert main(["analyze", "--store", str(store), "--out", str(page_path), "--no-write"]) == 0
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        requests: list[str] = []

        def block(route):  # the page is self-contained: anything but the file itself is a failure
            requests.append(route.request.url)
            route.abort()

        context.route("http*://**", block)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_path.as_uri())
        page.locator("[data-test=cluster-map] circle").first.wait_for()
        yield {"page": page, "errors": errors, "requests": requests, "folder": folder, "html": page_path.read_text(),
               "store": store, "browser": browser, "hostile": f"{llm.span.get_span_context().trace_id:032x}"}
        browser.close()


def test_report_renders_every_section(report):
    page = report["page"]
    for section in ("totals", "cluster-map", "clusters", "latency", "ttft", "models", "problems", "quality"):
        assert page.locator(f"[data-test={section}]").count() == 1, section
    assert page.locator("[data-test=cluster-map] circle").count() == 301
    assert page.locator("[data-test=clusters] tbody tr").count() >= 4
    assert page.locator("[data-test=latency] rect.bar").count() > 0
    assert page.locator("[data-test=ttft] rect.bar").count() > 0
    assert "rate_limit" in page.locator("[data-test=problems]").inner_text()
    assert "refusal" in page.locator("[data-test=quality]").inner_text()
    box = page.locator("[data-test=cluster-map] svg").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200
    page.screenshot(path=report["folder"] / "report.png", full_page=True)
    assert report["errors"] == [] and report["requests"] == []


def test_hostile_span_text_is_shown_not_run(report):
    page = report["page"]
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main script, main img").count() == 0
    assert f"gpt-4o-mini{HOSTILE}" in page.locator("[data-test=models] table").inner_text()  # a span's model name
    assert HOSTILE not in report["html"]  # escaped in the file itself, not only by the browser


def test_clicking_a_topic_focuses_its_points(report):
    page = report["page"]
    row = page.locator("[data-test=clusters] tbody tr").first
    cluster = row.get_attribute("data-cluster")
    row.click()
    assert "focus" in (page.locator("#map").get_attribute("class") or "")
    focused = page.locator("#map circle.on")
    assert focused.count() == page.locator(f"#map circle[data-cluster='{cluster}']").count() > 0
    page.locator("[data-test=cluster-map]").screenshot(path=report["folder"] / "map-focus.png")
    row.click()
    assert "focus" not in (page.locator("#map").get_attribute("class") or "")
    assert report["errors"] == []


def test_console_shows_the_written_back_evaluations(report):
    from llmobs.analyze import analyze
    from llmobs.serve import create_server

    result = analyze(report["store"])
    assert result.events_written > 0
    server = create_server(report["store"], port=0).start()
    try:
        page = report["browser"].new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{server.url}/#/trace/{report['hostile']}")
        page.locator(".wf-row[data-span]:has(.kind-LLM)").first.click()
        events = page.locator("[data-test=span-detail] ul.events")
        events.wait_for()
        text = events.inner_text()
        assert sc.EVENT_EVALUATION_RESULT in text and sc.EVAL_REFUSAL in text and sc.EVAL_LABEL_FAIL in text
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=report["folder"] / "console-evaluations.png")
        page.close()
    finally:
        server.close()
