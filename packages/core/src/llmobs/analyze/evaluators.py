"""Quality evaluators: the built-in checks every model call gets, and the plugin seam for more.

An evaluator is any object with a ``name`` and ``evaluate(call) -> EvaluationResult | list | None``
(None: the check does not apply to this call). Evaluators come from the ``llmobs_evaluators`` hook of
:mod:`llmobs.plugins`; the built-ins are registered through that same hook. An evaluator that raises is
counted in :mod:`llmobs.selfstats` and skipped for that call; the analysis goes on.

Built-in checks (each a ``gen_ai.evaluation.name``, failing with score 0 and label ``fail``):

* ``empty_output`` — a successful call that returned no text and no tool call;
* ``refusal`` — the answer opens by declining (English and Chinese phrasings);
* ``truncation`` — the model stopped at the token limit (finish reason ``length`` and its aliases);
* ``repetition`` — degenerate repetition (most word 4-grams repeat earlier ones);
* ``invalid_json`` — JSON was asked for (``gen_ai.output.type`` json, ``response_format``, or the
  instructions) and the answer does not parse;
* ``language_mismatch`` — the answer is in another language than the question;
* ``irrelevant_retrieval`` — the retrieval the call was given found no document relevant to the query
  (no document, or none sharing two content words with the query — one for a short query — and none
  scored as relevant).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from llmobs import plugins, selfstats
from llmobs import semconv as sc
from llmobs.analyze import text as tx
from llmobs.analyze.records import LLMCall

#: Share of repeated 4-grams above which an answer is degenerate.
REPETITION_THRESHOLD = 0.5
#: Content words (CJK: character bigrams) a document must share with the query to count as relevant;
#: one is enough for a short query (at most SHORT_QUERY_TERMS content words, e.g. "shipping times").
MIN_SHARED_TERMS = 2
SHORT_QUERY_TERMS = 4
#: A retrieval score at or above this (similarity scale 0..1) counts as relevant whatever the words say.
RELEVANT_SCORE = 0.5


@dataclass(frozen=True)
class EvaluationResult:
    """One evaluation of one call: ``score`` 1.0 passes and 0.0 fails (a judge may answer in between)."""

    name: str
    score: float | None
    label: str
    explanation: str = ""
    evaluator: str = ""

    @property
    def failed(self) -> bool:
        return self.label == sc.EVAL_LABEL_FAIL

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": self.score, "label": self.label, "explanation": self.explanation,
                "evaluator": self.evaluator}

    def attributes(self) -> dict[str, Any]:
        """The attributes of its ``gen_ai.evaluation.result`` event, as written back by ``llmobs analyze``."""
        attrs: dict[str, Any] = {sc.EVALUATION_NAME: self.name, sc.EVALUATION_SCORE_LABEL: self.label,
                                 sc.EVALUATION_SOURCE: sc.EVALUATION_SOURCE_ANALYZE}
        if self.score is not None:
            attrs[sc.EVALUATION_SCORE_VALUE] = float(self.score)
        if self.explanation:
            attrs[sc.EVALUATION_EXPLANATION] = self.explanation
        if self.evaluator:
            attrs[sc.EVALUATION_EVALUATOR] = self.evaluator
        return attrs


class Evaluator(Protocol):
    name: str

    def evaluate(self, call: LLMCall) -> EvaluationResult | list[EvaluationResult] | None: ...


def fail(name: str, explanation: str) -> EvaluationResult:
    return EvaluationResult(name, 0.0, sc.EVAL_LABEL_FAIL, explanation)


class _Check:
    """A built-in check: ``check`` returns an explanation when the call fails it, "" when it passes and
    None when the check does not apply."""

    name = ""

    def evaluate(self, call: LLMCall) -> EvaluationResult | None:
        explanation = self.check(call)
        if explanation is None:
            return None
        if explanation:
            return fail(self.name, explanation)
        return EvaluationResult(self.name, 1.0, sc.EVAL_LABEL_PASS)

    def check(self, call: LLMCall) -> str | None:
        raise NotImplementedError


class EmptyOutput(_Check):
    name = sc.EVAL_EMPTY_OUTPUT

    def check(self, call: LLMCall) -> str | None:
        if call.failed or call.output is None:
            return None
        if call.output.strip() or call.has_tool_calls:
            return ""
        return "the call succeeded but returned no text and no tool call"


class Refusal(_Check):
    name = sc.EVAL_REFUSAL

    def check(self, call: LLMCall) -> str | None:
        if not call.output:
            return None
        return "the answer declines the request" if tx.is_refusal(call.output) else ""


class Truncation(_Check):
    name = sc.EVAL_TRUNCATION

    def check(self, call: LLMCall) -> str | None:
        if call.failed or not call.finish_reasons:
            return None
        cut = [r for r in call.finish_reasons if r in sc.FINISH_REASONS_TRUNCATED]
        return f"stopped at the token limit (finish reason {cut[0]})" if cut else ""


class Repetition(_Check):
    name = sc.EVAL_REPETITION

    def check(self, call: LLMCall) -> str | None:
        if not call.output:
            return None
        share = tx.repetition(call.output)
        return f"{share:.0%} of the answer's phrases repeat" if share >= REPETITION_THRESHOLD else ""


class InvalidJSON(_Check):
    name = sc.EVAL_INVALID_JSON

    def check(self, call: LLMCall) -> str | None:
        if not call.json_requested or not call.output or call.has_tool_calls:
            return None
        try:
            json.loads(tx.json_payload(call.output))
        except (ValueError, RecursionError) as exc:
            return f"JSON was requested but the answer does not parse: {exc}"
        return ""


class LanguageMismatch(_Check):
    name = sc.EVAL_LANGUAGE_MISMATCH

    def check(self, call: LLMCall) -> str | None:
        if not call.output or not call.question:
            return None
        asked, answered = tx.language(call.question), tx.language(call.output)
        if asked is None or answered is None:
            return None
        if asked == answered or (tx.LATIN in (asked, answered) and tx.is_latin(asked) and tx.is_latin(answered)):
            return ""  # the same language, or both Latin script and one of them not told apart
        return f"asked in {asked}, answered in {answered}"


class IrrelevantRetrieval(_Check):
    name = sc.EVAL_IRRELEVANT_RETRIEVAL

    def check(self, call: LLMCall) -> str | None:
        retrieval = call.retrieval
        if retrieval is None:
            return None
        query = retrieval.query or call.question
        if not retrieval.documents:
            return "the retrieval returned no document"
        terms = tx.content_words(query)
        needed = MIN_SHARED_TERMS if len(terms) > SHORT_QUERY_TERMS else 1
        for doc in retrieval.documents:
            if doc.score is not None and doc.score >= RELEVANT_SCORE and not _is_distance(retrieval):
                return ""
            if len(terms & tx.content_words(doc.content)) >= needed:
                return ""
        return f"none of the {len(retrieval.documents)} retrieved documents relates to the query"


def _is_distance(retrieval: Any) -> bool:
    """Scores above 1 are distances or unnormalised ranks: they say nothing about relevance alone."""
    return any(d.score is not None and d.score > 1.0 for d in retrieval.documents)


BUILTIN_EVALUATORS: tuple[type[_Check], ...] = (
    EmptyOutput, Refusal, Truncation, Repetition, InvalidJSON, LanguageMismatch, IrrelevantRetrieval,
)


class _BuiltinEvaluators:
    """The built-in checks, offered through the public hook like any plugin's evaluators."""

    @plugins.hookimpl(tryfirst=True)
    def llmobs_evaluators(self, settings: object) -> list[Evaluator]:
        return [cls() for cls in BUILTIN_EVALUATORS]


_BUILTIN_NAME = "llmobs.analyze.builtins"


def collect(settings: object = None) -> list[Evaluator]:
    """Every evaluator plugins offer (built-ins first), de-duplicated by name."""
    manager = plugins.manager()
    if manager.get_plugin(_BUILTIN_NAME) is None:
        plugins.register(_BuiltinEvaluators(), name=_BUILTIN_NAME)
    if settings is None:
        from llmobs import config

        settings = config.current()
    found: dict[str, Evaluator] = {}
    for answer in plugins.call("llmobs_evaluators", settings=settings) or []:
        for evaluator in answer or ():
            name = getattr(evaluator, "name", None)
            if isinstance(name, str) and callable(getattr(evaluator, "evaluate", None)):
                found.setdefault(name, evaluator)
    return list(found.values())


def evaluate(call: LLMCall, evaluators: Iterable[Evaluator]) -> list[EvaluationResult]:
    """Run every evaluator on ``call``; a raising evaluator is counted and skipped."""
    results: list[EvaluationResult] = []
    for evaluator in evaluators:
        try:
            answer = evaluator.evaluate(call)
        except Exception as exc:
            selfstats.failure(f"analyze.evaluator_failed:{evaluator.name}", exc)
            continue
        for result in answer if isinstance(answer, list | tuple) else [answer]:
            if isinstance(result, EvaluationResult):
                results.append(result if result.evaluator else _with_evaluator(result, evaluator.name))
    return results


def _with_evaluator(result: EvaluationResult, evaluator: str) -> EvaluationResult:
    return EvaluationResult(result.name, result.score, result.label, result.explanation, evaluator)
