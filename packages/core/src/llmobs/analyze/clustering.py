"""Clustering of call vectors into topics, their labels, and a 2-D map of them.

The method follows the data size:

* up to :data:`AGGLOMERATIVE_MAX` vectors, agglomerative clustering (Ward linkage), the tree cut where
  the merge cost jumps most (at most :data:`MAX_CLUSTERS` clusters) — exact, and quick at that size;
* above it, density-based clustering (HDBSCAN) on a seeded sample of :data:`DENSITY_SAMPLE` vectors,
  whose clusters' centroids then take every vector by cosine similarity; vectors close to no centroid
  stay unclustered (label -1). The sample keeps the cost flat however many calls the store holds.

Labels are each cluster's characteristic terms: the terms whose mean TF-IDF weight in the cluster most
exceeds their weight elsewhere.

The map places cluster centroids by classical multidimensional scaling of their cosine distances and
spreads each cluster's members around its centroid along the two main axes of its own members' offsets, so
that clusters that are apart in meaning are apart on the map, and each cluster's spread is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest data set clustered agglomeratively; above it, density-based on a sample.
AGGLOMERATIVE_MAX = 3000
#: Sample size for the density-based path.
DENSITY_SAMPLE = 2500
#: Most clusters the agglomerative cut considers.
MAX_CLUSTERS = 30
#: Below this cosine similarity between the centroids of its two halves, a density cluster is split.
CHAIN_SIMILARITY = 0.3
#: Cosine similarity to the nearest centroid below which a vector stays unclustered (density path).
MIN_SIMILARITY = 0.15


@dataclass
class Clustering:
    labels: np.ndarray  # cluster id per vector, -1 unclustered
    method: str
    centroids: dict[int, np.ndarray]


def cluster(vectors: np.ndarray, *, method: str = "auto", seed: int = 0) -> Clustering:
    """Cluster L2-normalised ``vectors``; ``method`` is ``"auto"``, ``"agglomerative"`` or ``"density"``."""
    n = len(vectors)
    if n == 0:
        return Clustering(np.zeros(0, dtype=int), "none", {})
    if method == "auto":
        method = "agglomerative" if n <= AGGLOMERATIVE_MAX else "density"
    if n < 4:
        labels = np.zeros(n, dtype=int)
        method = "single"
    elif method == "agglomerative":
        labels = _agglomerative(vectors)
    elif method == "density":
        labels = _density(vectors, seed)
    else:
        raise ValueError(f"unknown clustering method {method!r}")
    labels = _renumber_by_size(labels)
    centroids = {int(c): _unit(vectors[labels == c].mean(axis=0)) for c in np.unique(labels) if c >= 0}
    return Clustering(labels, method, centroids)


def _agglomerative(vectors: np.ndarray) -> np.ndarray:
    return _cut_at_largest_gap(vectors, MAX_CLUSTERS)


def _cut_at_largest_gap(vectors: np.ndarray, max_clusters: int) -> np.ndarray:
    """Ward linkage, cut where the merge cost jumps most: going from k to k - 1 clusters would join
    two groups much further apart than any merge before it (the largest relative gap in the dendrogram's
    heights), with 2 <= k <= ``max_clusters``."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors.astype(np.float64), method="ward")
    heights = tree[:, 2]
    n = len(vectors)
    best_k, best_gap = 1, 1.0
    for k in range(2, min(max_clusters, n - 1) + 1):
        below = heights[-k]
        gap = heights[-(k - 1)] / below if below > 0 else np.inf
        if gap > best_gap * (1 + 1e-9):
            best_k, best_gap = k, gap
    return fcluster(tree, best_k, criterion="maxclust") - 1


def _density(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    n = len(vectors)
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, DENSITY_SAMPLE), replace=False) if n > DENSITY_SAMPLE else np.arange(n)
    points = vectors[sample]
    # A topic is at least 2% of the sample: finer groups are phrasings of one topic, not topics.
    min_size = min(max(25, len(points) // 50), max(2, len(points) // 4))
    found = HDBSCAN(min_cluster_size=min_size, min_samples=min(5, min_size), metric="euclidean",
                    cluster_selection_method="eom", copy=True).fit_predict(points)
    found = _split_chained(points, found, min_size)
    clusters = [c for c in np.unique(found) if c >= 0]
    if not clusters:
        return np.full(n, -1, dtype=int)
    centroids = np.stack([_unit(points[found == c].mean(axis=0)) for c in clusters])
    centroids, merged = _merge_close(centroids)
    similarity = vectors @ centroids.T
    labels = merged[similarity.argmax(axis=1)]
    labels[similarity.max(axis=1) < MIN_SIMILARITY] = -1
    return labels


def _split_chained(points: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Split density clusters that are chains of unrelated groups.

    Density-based clustering links two groups through a few points between them (a Chinese question
    answered in English joins the Chinese topic to an English one). Each cluster is cut in two by Ward
    linkage; when both halves are big enough and their centroids share almost nothing (cosine below
    :data:`CHAIN_SIMILARITY`), the halves become clusters of their own, and are examined in turn.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    labels = labels.copy()
    pending = [int(c) for c in np.unique(labels) if c >= 0]
    next_id = max(pending, default=-1) + 1
    while pending:
        members = np.flatnonzero(labels == pending.pop())
        if len(members) < 2 * min_size:
            continue
        halves = fcluster(linkage(points[members].astype(np.float64), method="ward"), 2, criterion="maxclust")
        first, second = members[halves == 1], members[halves == 2]
        if min(len(first), len(second)) < min_size:
            continue
        similarity = float(_unit(points[first].mean(axis=0)) @ _unit(points[second].mean(axis=0)))
        if similarity < CHAIN_SIMILARITY:
            labels[second] = next_id
            pending += [int(labels[first[0]]), next_id]
            next_id += 1
    return labels


def _merge_close(centroids: np.ndarray, threshold: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Union clusters whose centroids have cosine similarity above ``threshold`` (near duplicates);
    returns the centroids (one row per original cluster) and each original cluster's merged id."""
    k = len(centroids)
    parent = list(range(k))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    similarity = centroids @ centroids.T
    for i in range(k):
        for j in range(i + 1, k):
            if similarity[i, j] > threshold:
                parent[root(j)] = root(i)
    roots = sorted({root(i) for i in range(k)})
    ids = {r: n for n, r in enumerate(roots)}
    return centroids, np.array([ids[root(i)] for i in range(k)])


def _renumber_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster 0 is the largest; -1 stays -1."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping.get(int(x), -1) for x in labels], dtype=int)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def characteristic_terms(terms: tuple[Any, list[str]] | None, labels: np.ndarray, top: int = 4) -> dict[int, list[str]]:
    """Per cluster, the terms most over-represented in it compared with the rest of the data."""
    if terms is None:
        return {}
    matrix, vocabulary = terms
    out: dict[int, list[str]] = {}
    total = np.asarray(matrix.sum(axis=0)).ravel()
    n = matrix.shape[0]
    for c in np.unique(labels):
        if c < 0:
            continue
        mask = labels == c
        inside = np.asarray(matrix[mask].sum(axis=0)).ravel()
        size = int(mask.sum())
        outside = (total - inside) / max(n - size, 1)
        weight = inside / size - outside
        picked: list[str] = []
        for index in np.argsort(-weight):
            if weight[index] <= 0 or len(picked) >= top:
                break
            term = vocabulary[index]
            # Skip a unigram already inside a chosen bigram, and a bigram whose words are both chosen.
            if any(term in p.split(" ") for p in picked) or all(w in picked for w in term.split(" ")):
                continue
            picked.append(term)
        out[int(c)] = picked
    return out


def layout(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D positions in [-1, 1]² for every vector (see the module docstring)."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2))
    groups = sorted(int(c) for c in np.unique(labels))
    centroids = np.stack([_unit(vectors[labels == c].mean(axis=0)) for c in groups])
    centres = _mds(1.0 - np.clip(centroids @ centroids.T, -1.0, 1.0))
    # Each member's offset from its centroid, on the two main axes of its own cluster's offsets, scaled
    # robustly per cluster (a few outliers must not shrink the rest to a dot) and clipped.
    index = {c: i for i, c in enumerate(groups)}
    local = np.zeros((n, 2))
    for c in groups:
        mask = labels == c
        offsets = vectors[mask] - centroids[index[c]]
        projected = offsets @ _principal_axes(offsets, seed).T
        scale = float(np.percentile(np.abs(projected), 95)) if len(projected) else 0.0
        local[mask] = np.clip(projected / scale, -1.5, 1.5) if scale > 0 else 0.0
    if len(groups) > 1:
        gaps = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
        gaps[gaps == 0] = np.inf
        nearest = gaps.min(axis=1)
        nearest = nearest[np.isfinite(nearest)]
        radius = 0.3 * float(np.median(nearest)) if len(nearest) else 0.3
    else:
        radius = 0.6
    positions = centres[[index[int(c)] for c in labels]] + radius * local
    span = np.abs(positions).max() or 1.0
    return positions / span


def _mds(distances: np.ndarray) -> np.ndarray:
    k = len(distances)
    if k == 1:
        return np.zeros((1, 2))
    centring = np.eye(k) - np.ones((k, k)) / k
    gram = -0.5 * centring @ (distances ** 2) @ centring
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:2]
    coords = vectors[:, order] * np.sqrt(np.clip(values[order], 0, None))
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((k, 2 - coords.shape[1]))])
    span = np.abs(coords).max() or 1.0
    return coords / span


def _principal_axes(offsets: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = offsets[rng.choice(len(offsets), size=min(len(offsets), 2000), replace=False)]
    try:
        _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    except np.linalg.LinAlgError:
        vt = np.eye(2, offsets.shape[1])
    if vt.shape[0] < 2:
        vt = np.vstack([vt, np.zeros((2 - vt.shape[0], offsets.shape[1]))])
    return vt[:2]
