"""``llmobs analyze``: semantic analysis of the model calls in the trace store.

What it does, in order (:func:`analyze`):

1. reads the LLM spans (and the retrievals they were given, and every failed span) from the store;
2. runs the quality evaluators on every call — the built-in checks of :mod:`llmobs.analyze.evaluators`
   and any a plugin offers through the ``llmobs_evaluators`` hook (e.g. :class:`JudgeEvaluator`, an
   LLM-as-judge against an OpenAI-compatible endpoint);
3. classifies every failure into a problem class (:mod:`llmobs.analyze.problems`);
4. embeds each call's question and answer locally (:mod:`llmobs.analyze.embedding`) and clusters them
   into topics with characteristic-term labels (:mod:`llmobs.analyze.clustering`);
5. summarises each topic (volume, error rate, p95 latency and TTFT, tokens, cost, quality-flag rate,
   example traces) and writes the results back to the store as ``gen_ai.evaluation.result`` events
   (:mod:`llmobs.analyze.writeback`), where ``llmobs show`` and the console display them;
6. renders a self-contained HTML report (:mod:`llmobs.analyze.report`).

Needs the ``analysis`` extra (scikit-learn): ``pip install 'llmobs[analysis]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmobs import lazy

if TYPE_CHECKING:
    from llmobs.analyze.analysis import Analysis, ClusterSummary, analyze
    from llmobs.analyze.embedding import AnalysisUnavailable
    from llmobs.analyze.evaluators import EvaluationResult, Evaluator
    from llmobs.analyze.records import Document, Failure, LLMCall, Retrieval

# Every ``llmobs`` command builds its argument parser with llmobs.analyze.command, which must not cost
# them NumPy's import (a third of a second).
__getattr__ = lazy.exports(__name__, {
    "Analysis": "analysis", "ClusterSummary": "analysis", "analyze": "analysis",
    "AnalysisUnavailable": "embedding", "EvaluationResult": "evaluators", "Evaluator": "evaluators",
    "Document": "records", "Failure": "records", "LLMCall": "records", "Retrieval": "records",
})  # fmt: skip

__all__ = [
    "Analysis",
    "AnalysisUnavailable",
    "ClusterSummary",
    "Document",
    "EvaluationResult",
    "Evaluator",
    "Failure",
    "LLMCall",
    "Retrieval",
    "analyze",
]
