"""Low-cost collection: keep every trace that matters, a consistent sample of the rest."""

from llmobs.sampling.policy import Buffer, Promote, Rule, SamplingPolicy, parse, ratio_from_otel_env
from llmobs.sampling.processor import SamplingProcessor, keeps

__all__ = [
    "Buffer",
    "Promote",
    "Rule",
    "SamplingPolicy",
    "SamplingProcessor",
    "keeps",
    "parse",
    "ratio_from_otel_env",
]
