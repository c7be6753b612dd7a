"""Pre-fork servers (gunicorn, uWSGI, Celery prefork): ``configure()`` in the parent, requests in forked children.

The parent exports before forking (so a pooled connection exists), has spans queued and a request open at
fork time; each child serves requests and exits through the interpreter's normal exit. The receiver must
get every span exactly once: children export on their own threads and connections, and do not re-send
what the parent had queued, buffered or open.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from llmobs import semconv as sc

sys.path.insert(0, str(Path(__file__).parent))
from faultserver import FaultServer

APP = """
import os, sys
import llmobs
from llmobs.recorder import ROOT, get_recorder

def request(name):
    agent = get_recorder().start("invoke_agent", name, parent=ROOT)
    llm = get_recorder().start("chat", provider="openai", model="gpt-4o-mini", parent=agent)
    llm.set_usage(40, 10)
    llm.end()
    agent.end()

llmobs.configure()
request("parent-before")
assert llmobs.flush()  # a pooled connection to the receiver now exists
request("parent-queued")  # still queued at fork time
open_root = get_recorder().start("invoke_agent", "parent-open", parent=ROOT)
done = get_recorder().start("execute_tool", "parent-open-tool", parent=open_root)
done.end()  # with sampling on, this waits in the buffer for its root
children = []
for worker in range(3):
    pid = os.fork()
    if pid == 0:
        for i in range(5):
            request(f"child-{worker}-{i}")
        sys.exit(0)  # the interpreter's normal exit: atexit flushes
    children.append(pid)
for pid in children:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
open_root.end()
request("parent-after")
"""


@pytest.mark.parametrize("sampling", ["false", "true"])
def test_forked_children_export_every_span_once(tmp_path, sampling):
    server = FaultServer()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMOBS_"))}
        env.update(LLMOBS_CONFIG_WATCH="false", OTEL_SERVICE_NAME="prefork-app", LLMOBS_SAMPLING=sampling,
                   LLMOBS_SAMPLING_RATIO="1", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=server.endpoint)
        done = subprocess.run([sys.executable, "-c", APP], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        spans = server.accepted_spans()
        names = Counter(s.name for s in spans)
        expected = Counter({"invoke_agent parent-open": 1, "execute_tool parent-open-tool": 1})
        for name in ["parent-before", "parent-queued", "parent-after"] + [
            f"child-{w}-{i}" for w in range(3) for i in range(5)
        ]:
            expected[f"invoke_agent {name}"] += 1
            expected["chat gpt-4o-mini"] += 1
        assert names == expected
        assert len({(s.trace_id, s.span_id) for s in spans}) == len(spans)  # nothing sent twice
        assert not [s for s in spans if any(a.key == sc.PARTIAL for a in s.attributes)]
    finally:
        server.close()
