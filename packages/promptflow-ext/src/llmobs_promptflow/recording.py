"""GenAI metrics for spans Promptflow made, through the recorder's own instruments and arithmetic.

The recorder records duration, token usage, time to first chunk and cost when one of its handles ends;
Promptflow's spans never go through a handle, yet their metrics must be the same series, computed the
same way (total tokens, cached-input prices, the price cache, error attributes). The core has no public
call for "record the metrics of a call someone else traced" yet, so this module drives the recorder's
own code on a span-less handle. It is the only place that touches recorder internals; it becomes one
public call once the core offers it.
"""

from __future__ import annotations

from typing import Any

from llmobs.recorder import Recorder, SpanHandle
from llmobs_promptflow.mapping import Translation


def record(recorder: Recorder, t: Translation, duration_s: float) -> dict[str, Any]:
    """Record the metrics of one translated call; return its usage attributes (with total and cost)."""
    call = SpanHandle.non_recording(recorder, t.operation)  # no span: only the metric code runs
    call.provider, call.model, call.response_model = t.provider, t.model, t.response_model
    call.error_type, call._usage = t.error_type, t.usage
    usage_attributes = call._usage_attributes(recorder.derived)
    call._record_metrics(duration_s, usage_attributes)
    return usage_attributes
