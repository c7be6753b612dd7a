"""LLM-as-judge: an evaluator that asks a model, over any OpenAI-compatible chat completions endpoint
(OpenAI, DashScope's compatible mode, a vLLM server, a gateway), how well each answer serves its question.

It is an ordinary evaluator plugin: :class:`JudgePlugin` offers it through the ``llmobs_evaluators`` hook,
and ``llmobs analyze --judge-url ... --judge-model ...`` registers one. Plain ``urllib`` (no client
library, nothing traced); the API key comes from the caller or ``$LLMOBS_JUDGE_API_KEY`` and is only
ever sent to the configured endpoint. ``limit`` caps the calls judged per run (judging costs money);
the judge answers JSON ``{"score": 0..1, "reason": "..."}``, and a score below ``threshold`` fails.
Up to ``concurrency`` requests are in flight at once.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from typing import Any

from llmobs import plugins
from llmobs import semconv as sc
from llmobs.analyze.evaluators import EvaluationResult
from llmobs.analyze.records import LLMCall

DEFAULT_PROMPT = (
    "You grade answers of an AI assistant. Given the user's question and the assistant's answer, rate how well "
    "the answer addresses the question: correct, relevant, complete and in the user's language. Reply with JSON "
    'only: {"score": <number from 0 to 1>, "reason": "<one short sentence>"}.'
)
#: Consecutive failed requests after which the judge stops asking for the rest of the run (an endpoint that
#: is down or timing out must not hold the analysis for limit x timeout).
GIVE_UP_AFTER = 3
#: Characters of question and answer sent to the judge.
MAX_CHARS = 4000


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered something that is not a verdict."""


class JudgeEvaluator:
    name = sc.EVAL_LLM_JUDGE

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, limit: int = 50,
                 threshold: float = 0.5, timeout_s: float = 30.0, prompt: str = DEFAULT_PROMPT,
                 concurrency: int = 4) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("LLMOBS_JUDGE_API_KEY")
        self.limit = limit
        self.threshold = threshold
        self.timeout_s = timeout_s
        self.prompt = prompt
        self.concurrency = max(1, concurrency)  # requests in flight at once (the analysis runs it on threads)
        self.judged = 0
        self.failures_in_a_row = 0
        self._lock = threading.Lock()

    def evaluate(self, call: LLMCall) -> EvaluationResult | None:
        if call.failed or not call.question or not call.output:
            return None
        with self._lock:
            if self.judged >= self.limit or self.failures_in_a_row >= GIVE_UP_AFTER:
                return None
            self.judged += 1
        try:
            verdict = self._ask(call.question[:MAX_CHARS], call.output[:MAX_CHARS])
        except JudgeError:
            with self._lock:
                self.failures_in_a_row += 1
            raise
        with self._lock:
            self.failures_in_a_row = 0
        score = verdict.get("score")
        if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
            raise JudgeError(f"the judge gave no score between 0 and 1: {verdict!r}")
        label = sc.EVAL_LABEL_PASS if score >= self.threshold else sc.EVAL_LABEL_FAIL
        return EvaluationResult(self.name, float(score), label, str(verdict.get("reason") or "")[:500],
                                f"{sc.EVAL_LLM_JUDGE}:{self.model}")

    def _ask(self, question: str, answer: str) -> dict[str, Any]:
        body = {
            "model": self.model,
            "temperature": 0,
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": self.prompt},
                {"role": "user", "content": f"Question:\n{question}\n\nAnswer:\n{answer}"},
            ],
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise JudgeError(f"judge request to {self.url} failed: {exc}") from exc
        try:
            content = reply["choices"][0]["message"]["content"]
            verdict = json.loads(_strip_fence(content))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise JudgeError(f"the judge's answer is not a JSON verdict: {str(reply)[:200]}") from exc
        if not isinstance(verdict, dict):
            raise JudgeError(f"the judge's answer is not a JSON object: {verdict!r}")
        return verdict


def _strip_fence(text: str) -> str:
    from llmobs.analyze.text import json_payload

    return json_payload(text)


class JudgePlugin:
    """Offers one :class:`JudgeEvaluator` to ``llmobs analyze`` (register with :func:`llmobs.plugins.register`)."""

    def __init__(self, evaluator: JudgeEvaluator) -> None:
        self.evaluator = evaluator

    @plugins.hookimpl
    def llmobs_evaluators(self, settings: object) -> list[JudgeEvaluator]:
        return [self.evaluator]
