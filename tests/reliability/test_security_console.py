"""Hostile span content in the console, rendered by real headless Chromium: shown as text, never run.

Every field an instrumented application (or anyone who can post OTLP) controls carries markup that
would set ``window.__pwned`` if it ever reached the DOM as HTML or a URL: span, agent, tool, model,
provider and service names, session and user ids, custom attribute keys and values, prompts, answers,
tool arguments, retrieval documents, error messages, and the console's own URL (hash routes, search).
Each view is opened and every span of the hostile trace is clicked; no script may run, no element
may carry an event handler or a ``javascript:`` link, and the text must be visible as text.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from llmobs import content
from llmobs import semconv as sc
from llmobs.recorder import ROOT, Recorder
from llmobs.serve import create_server
from llmobs.testing import launch_chromium

PAYLOADS = [
    "<script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    '"><svg onload="window.__pwned = 3">',
    "javascript:window.__pwned = 4",
    "'-(window.__pwned = 5)-'",
    "{{constructor.constructor('window.__pwned = 6')()}}",
    "</textarea></title></style><script>window.__pwned = 7</script>",
    '<iframe srcdoc="<script>parent.__pwned = 8</script>"></iframe>',
    '<a href="javascript:window.__pwned = 9">click</a>',
    "${window.__pwned = 10}",
    '<details open ontoggle="window.__pwned = 11">',
]
HOSTILE = " ".join(PAYLOADS)
CHECK_DOM = """() => {
  const handlers = [...document.querySelectorAll('*')].filter(
    e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on')));
  const links = [...document.querySelectorAll('[href], [src], [action], [formaction]')].filter(e =>
    ['href', 'src', 'action', 'formaction'].some(n => (e.getAttribute(n) || '').trim().toLowerCase()
      .replace(/[\\s\\u0000-\\u001f]/g, '').startsWith('javascript:')));
  const injected = document.querySelectorAll('main script, main iframe, main img[src=x], main details[ontoggle]');
  return {pwned: window.__pwned === undefined ? null : window.__pwned, handlers: handlers.length,
          links: links.length, injected: injected.length};
}"""


def _seed(path: Path) -> str:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from llmobs.store import SQLiteSpanExporter

    provider = TracerProvider(resource=Resource.create({sc.SERVICE_NAME: PAYLOADS[2], "deployment": HOSTILE}))
    provider.add_span_processor(SimpleSpanProcessor(SQLiteSpanExporter(path)))
    recorder = Recorder(tracer_provider=provider, meter_provider=NoOpMeterProvider())
    agent = recorder.start(sc.OP_INVOKE_AGENT, PAYLOADS[0], parent=ROOT, session_id=PAYLOADS[1],
                           user_id=PAYLOADS[3], attributes={PAYLOADS[1]: HOSTILE, "url": PAYLOADS[3]})
    agent.set_input(value=HOSTILE)
    retrieval = recorder.start(sc.OP_RETRIEVAL, PAYLOADS[6], parent=agent)
    retrieval.set_output(value=[{"id": PAYLOADS[7], "content": HOSTILE, "score": 0.5, "url": PAYLOADS[3]}])
    retrieval.end()
    llm = recorder.start(sc.OP_CHAT, provider=PAYLOADS[4], model=PAYLOADS[5], parent=agent)
    llm.set_request(server_address=PAYLOADS[8], temperature=0.1)
    llm.set_input([content.message("user", [content.text_part(HOSTILE)])], system=[content.text_part(HOSTILE)],
                  tools=[content.tool_definition(PAYLOADS[9], HOSTILE, {"type": "object"})])
    llm.chunk()
    llm.set_usage(5, 5)
    llm.set_output([content.output_message([content.text_part(HOSTILE),
                                            content.tool_call_part(PAYLOADS[10], {"q": HOSTILE}, id=PAYLOADS[1])],
                                           "tool_calls")], response_model=PAYLOADS[0])
    llm.end()
    tool = recorder.start(sc.OP_EXECUTE_TOOL, PAYLOADS[10], parent=agent)
    tool.set_input(value={"q": HOSTILE})
    tool.end(RuntimeError(HOSTILE))
    agent.set_output(value=HOSTILE)
    agent.end(ValueError(HOSTILE))
    provider.shutdown()
    return agent.trace_id


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    path = tmp_path_factory.mktemp("hostile-console") / "console.db"
    trace_id = _seed(path)
    server = create_server(path, port=0).start()
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        yield {"page": page, "url": server.url, "trace": trace_id, "dialogs": dialogs}
        browser.close()
    server.close()


def _assert_clean(console, where: str) -> None:
    found = console["page"].evaluate(CHECK_DOM)
    assert found == {"pwned": None, "handlers": 0, "links": 0, "injected": 0}, where
    assert console["dialogs"] == [], where


def test_trace_list_and_every_span_of_the_hostile_trace(console):
    page, url = console["page"], console["url"]
    page.goto(f"{url}/")
    page.locator("[data-test=traces] tbody tr[data-trace]").first.wait_for()
    _assert_clean(console, "trace list")
    assert "<script>" in page.locator("[data-test=traces]").inner_text()

    page.goto(f"{url}/#/trace/{console['trace']}")
    rows = page.locator(".wf-row[data-span]")
    rows.first.wait_for()
    assert rows.count() == 4
    for index in range(rows.count()):
        rows.nth(index).click()
        page.locator("[data-test=span-detail]").wait_for()
        page.wait_for_load_state("networkidle")
        _assert_clean(console, f"span {index}")
    assert PAYLOADS[1] in page.locator("main").inner_text()  # shown as text


def test_sessions_dashboard_and_search(console):
    page, url = console["page"], console["url"]
    page.goto(f"{url}/#/sessions")
    page.locator("[data-test=sessions] tbody tr").first.wait_for()
    _assert_clean(console, "sessions")
    page.locator("[data-test=sessions] tbody tr").first.click()
    page.wait_for_load_state("networkidle")
    _assert_clean(console, "session")
    for by in ("model", "provider", "service"):
        page.goto(f"{url}/#/dashboard?by={by}&range=7d")
        page.locator("[data-test=chart]").first.wait_for()
        page.wait_for_load_state("networkidle")
        _assert_clean(console, f"dashboard by {by}")


def test_hostile_urls(console):
    page, url = console["page"], console["url"]
    for payload in PAYLOADS:
        quoted = urllib.parse.quote(payload, safe="")
        for route in (f"#/traces?q={quoted}", f"#/trace/{quoted}", f"#/sessions?q={quoted}",
                      f"#/dashboard?by={quoted}", f"#/{quoted}", f"#/traces?service={quoted}&model={quoted}"):
            page.goto(f"{url}/{route}")
            page.wait_for_load_state("networkidle")
            _assert_clean(console, route)

