"""Similarity tables and source selection: which source vectors (or prompts) to transfer to a target.

* :func:`similarity_table` labels a cosine similarity matrix (:func:`tpv.cosine_matrix`) of vectors or
  prompts, the data behind the paper's heatmaps; :func:`tpv.plots.plot_similarity` draws it.
* :func:`rank_sources` ranks sources by cosine similarity to a target.
* :func:`select_sources` picks sources for a target in one of two ways:

  - ``"spot"``, SPoT-style retrieval (Vu et al., arXiv 2110.07904): tune a target prompt briefly, rank the
    source prompts (or vectors) by similarity to it, keep the ``top_k`` best.
  - ``"dtvg"``, DTVG-style grouping (Zhang et al., arXiv 2503.18063): keep the sources whose similarity to
    the target vector is above ``threshold`` (positive by default), then choose, among the groups of those
    sources, the one whose members, together with the target, have the highest mean pairwise similarity: it
    rewards sources similar to the target (target similarity) and to each other (knowledge consistency).
    DTVG regroups at every training step; call this with the current target vector to do the same.

Similarity is the cosine of the flattened tensors by default (the task prompt vectors paper's measure).
SPoT's token-level variants are available as ``pooling="mean_tokens"`` (cosine of the average rows) and
``pooling="token_pairs"`` (average cosine over all pairs of rows).

Example:
    >>> import torch
    >>> from tpv.select import select_sources
    >>> target = torch.tensor([[1.0, 0.0]])
    >>> sources = {"near": torch.tensor([[1.0, 0.1]]), "far": torch.tensor([[-1.0, 0.2]])}
    >>> select_sources(target, sources, method="spot").chosen
    ('near',)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from tpv._tensor import check_prompt_tensor
from tpv.errors import ConfigError, IncompatibleVectorsError, InvalidVectorError
from tpv.vector import TaskPromptVector, cosine_matrix

__all__ = [
    "Selection",
    "SimilarityTable",
    "SourceScore",
    "rank_sources",
    "select_sources",
    "similarity",
    "similarity_table",
]

Item = TaskPromptVector | torch.Tensor
Pooling = Literal["flat", "mean_tokens", "token_pairs"]
_POOLINGS = ("flat", "mean_tokens", "token_pairs")


# -- similarity -----------------------------------------------------------------------------------------------


def _tensor(item: Item, what: str) -> torch.Tensor:
    if isinstance(item, TaskPromptVector):
        return item.tensor
    return check_prompt_tensor(item, what=what)


def _pairwise(items: Sequence[Item], names: Sequence[str], pooling: Pooling) -> torch.Tensor:
    """Similarity matrix ``(n, n)`` (float64) of the items under a pooling."""
    if pooling not in _POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(_POOLINGS)}, got {pooling!r}")
    if pooling == "flat":
        return cosine_matrix(list(items))
    tensors = [_tensor(x, f"item {name!r}").double() for x, name in zip(items, names)]
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1:
        raise IncompatibleVectorsError(f"token-level similarity needs one width, got widths {sorted(dims)}")
    if pooling == "mean_tokens":
        return cosine_matrix([t.mean(dim=0, keepdim=True) for t in tensors])
    normed = []
    for t, name in zip(tensors, names):
        norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)  # (rows, 1)
        if bool((norms == 0).any()):
            raise InvalidVectorError(f"{name!r} has an all-zero row: its token-level cosine is undefined")
        normed.append(t / norms)  # (rows, dim)
    n = len(normed)
    sim = torch.ones(n, n, dtype=torch.float64)  # (n, n)
    for i in range(n):
        for j in range(i + 1, n):
            value = (normed[i] @ normed[j].T).mean().clamp(-1.0, 1.0)  # mean over (rows_i, rows_j) pairs
            sim[i, j] = sim[j, i] = value
    return sim


def similarity(a: Item, b: Item, *, pooling: Pooling = "flat") -> float:
    """Similarity of two vectors or prompts: cosine of the flattened values, or a SPoT token-level variant.

    Args:
        a: a vector or a tensor of shape ``(rows, dim)``.
        b: another; same shape for ``pooling="flat"``, same width otherwise.
        pooling: ``"flat"``, ``"mean_tokens"`` or ``"token_pairs"`` (see the module docs).

    Returns:
        The similarity, in ``[-1, 1]``.
    """
    return float(_pairwise([a, b], ["a", "b"], pooling)[0, 1])


@dataclass(frozen=True)
class SimilarityTable:
    """A labelled similarity matrix.

    Attributes:
        labels: one label per row and column.
        matrix: the similarities, float64, shape ``(n, n)``.
    """

    labels: tuple[str, ...]
    matrix: torch.Tensor

    def pairs(self) -> list[tuple[str, str, float]]:
        """Every unordered pair ``(a, b, similarity)``, most similar first."""
        n = len(self.labels)
        out = [(self.labels[i], self.labels[j], float(self.matrix[i, j])) for i in range(n) for j in range(i + 1, n)]
        return sorted(out, key=lambda p: -p[2])

    def to_dict(self) -> dict[str, Any]:
        """``{"labels": [...], "matrix": [[...], ...]}``, JSON-ready."""
        return {"labels": list(self.labels), "matrix": self.matrix.tolist()}

    def to_markdown(self, digits: int = 3) -> str:
        """The matrix as a markdown table."""
        head = "| | " + " | ".join(self.labels) + " |"
        rule = "|---|" + "---:|" * len(self.labels)
        body = [
            f"| {label} | " + " | ".join(f"{float(v):.{digits}f}" for v in row) + " |"
            for label, row in zip(self.labels, self.matrix)
        ]
        return "\n".join([head, rule, *body])


def _check_labels(labels: Sequence[str], n: int, what: str) -> tuple[str, ...]:
    out = tuple(str(x) for x in labels)
    if len(out) != n:
        raise ConfigError(f"got {len(out)} label(s) for {n} {what}: give one label per item")
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise ConfigError(f"labels must be unique, {dup} repeat")
    return out


def similarity_table(items: Sequence[Item], labels: Sequence[str], *, pooling: Pooling = "flat") -> SimilarityTable:
    """Pairwise similarities of vectors or prompts, labelled.

    Args:
        items: ``n`` vectors or tensors of shape ``(rows, dim)`` (origins may differ: the paper compares the
            same task across origins).
        labels: one unique label per item.
        pooling: ``"flat"`` (default), ``"mean_tokens"`` or ``"token_pairs"``.

    Returns:
        The table; ``table.matrix`` has shape ``(n, n)`` with ones on the diagonal.

    Raises:
        ConfigError: no items, or labels that do not match them one to one.
        IncompatibleVectorsError: shapes differ.
        InvalidVectorError: an all-zero item.
    """
    items = list(items)
    if not items:
        raise ConfigError("similarity_table needs at least one item")
    names = _check_labels(labels, len(items), "items")
    return SimilarityTable(names, _pairwise(items, names, pooling))


# -- source selection -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceScore:
    """A source's similarity to the target.

    Attributes:
        name: the source's name.
        score: its similarity to the target.
        chosen: whether the selection kept it.
    """

    name: str
    score: float
    chosen: bool = False


@dataclass(frozen=True)
class Selection:
    """The sources selected for a target.

    Attributes:
        method: ``"spot"`` or ``"dtvg"``.
        chosen: the chosen sources' names, most similar to the target first.
        ranking: every source with its similarity to the target, most similar first.
        group_score: for ``"dtvg"``, the chosen group's mean pairwise similarity (target included); else
            ``None``.
        params: the selection's parameters.
    """

    method: Literal["spot", "dtvg"]
    chosen: tuple[str, ...]
    ranking: tuple[SourceScore, ...]
    group_score: float | None
    params: Mapping[str, Any]

    @property
    def scores(self) -> dict[str, float]:
        """Source name -> similarity to the target, most similar first."""
        return {s.name: s.score for s in self.ranking}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "method": self.method,
            "chosen": list(self.chosen),
            "group_score": self.group_score,
            "params": dict(self.params),
            "ranking": [{"name": s.name, "score": s.score, "chosen": s.chosen} for s in self.ranking],
        }


def _sources(sources: Mapping[str, Item] | Sequence[Item], names: Sequence[str] | None) -> tuple[list[str], list[Item]]:
    if isinstance(sources, Mapping):
        if names is not None:
            raise ConfigError("give names only with a sequence of sources; a mapping already names them")
        keys, items = [str(k) for k in sources], list(sources.values())
    else:
        items = list(sources)
        keys = list(names) if names is not None else [f"source{i}" for i in range(len(items))]
    if not items:
        raise ConfigError("source selection needs at least one source, got none")
    return list(_check_labels(keys, len(items), "sources")), items


def rank_sources(
    target: Item,
    sources: Mapping[str, Item] | Sequence[Item],
    *,
    names: Sequence[str] | None = None,
    pooling: Pooling = "flat",
) -> list[SourceScore]:
    """Sources ranked by similarity to the target, most similar first (ties: the order given).

    Args:
        target: the target's vector or (briefly tuned) prompt, shape ``(rows, dim)``.
        sources: name -> vector or prompt, or a sequence with ``names``.
        names: names for a sequence of sources (default ``source0``, ``source1``, ...).
        pooling: ``"flat"``, ``"mean_tokens"`` or ``"token_pairs"``.

    Returns:
        One :class:`SourceScore` per source.
    """
    keys, items = _sources(sources, names)
    sim = _pairwise([target, *items], ["target", *keys], pooling)  # (1 + k, 1 + k)
    scores = sim[0, 1:].tolist()
    order = sorted(range(len(keys)), key=lambda i: (-scores[i], i))
    return [SourceScore(keys[i], scores[i]) for i in order]


def select_sources(
    target: Item,
    sources: Mapping[str, Item] | Sequence[Item],
    *,
    method: Literal["spot", "dtvg"] = "spot",
    names: Sequence[str] | None = None,
    top_k: int = 1,
    threshold: float = 0.0,
    max_group: int | None = None,
    min_group: int = 1,
    pooling: Pooling = "flat",
    max_exhaustive: int = 16,
) -> Selection:
    """Choose the sources to transfer to a target.

    ``"spot"`` keeps the ``top_k`` sources most similar to the target. ``"dtvg"`` keeps the sources more
    similar to the target than ``threshold``, then picks the group ``G`` of them (``min_group`` to
    ``max_group`` members) maximizing the mean pairwise similarity over ``G`` plus the target; ties go to the
    larger group, then to the group of better-ranked sources. The score rewards a source only if it is about
    as similar to the target and to the other members as they are to each other, so it favours small, tight
    groups (often the single closest source): raise ``min_group`` to insist on a combination. Groups are
    searched exhaustively when at most ``max_exhaustive`` sources pass the threshold, else greedily (from
    the best-ranked source, adding the one that raises the score most, while it rises or the group is below
    ``min_group``). If no source passes the threshold, nothing is chosen; if fewer than ``min_group`` pass,
    all of them are.

    Args:
        target: the target's vector or briefly tuned prompt, shape ``(rows, dim)``.
        sources: name -> vector or prompt, or a sequence with ``names``.
        method: ``"spot"`` or ``"dtvg"``.
        names: names for a sequence of sources.
        top_k: how many sources ``"spot"`` keeps.
        threshold: ``"dtvg"`` keeps sources whose similarity to the target is above this.
        max_group: largest group ``"dtvg"`` may choose (default: no limit).
        min_group: smallest group ``"dtvg"`` may choose.
        pooling: ``"flat"``, ``"mean_tokens"`` or ``"token_pairs"``.
        max_exhaustive: most candidate sources searched exhaustively by ``"dtvg"`` (``2 ** k`` groups).

    Returns:
        The selection, with every source's similarity to the target.

    Raises:
        ConfigError: unknown method or pooling, no sources, bad names or limits.
        IncompatibleVectorsError: shapes differ.
    """
    if method not in ("spot", "dtvg"):
        raise ConfigError(f"selection method must be 'spot' or 'dtvg', got {method!r}")
    keys, items = _sources(sources, names)
    for value, name in ((top_k, "top_k"), (max_exhaustive, "max_exhaustive")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if max_group is not None and (isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 1):
        raise ConfigError(f"max_group must be a positive integer or None, got {max_group!r}")
    if isinstance(min_group, bool) or not isinstance(min_group, int) or min_group < 1:
        raise ConfigError(f"min_group must be a positive integer, got {min_group!r}")
    if max_group is not None and min_group > max_group:
        raise ConfigError(f"min_group={min_group} is above max_group={max_group}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number, got {threshold!r}")
    sim = _pairwise([target, *items], ["target", *keys], pooling)  # (1 + k, 1 + k); index 0 is the target
    to_target = sim[0, 1:].tolist()
    order = sorted(range(len(keys)), key=lambda i: (-to_target[i], i))
    params: dict[str, Any] = {"pooling": pooling}
    group_score: float | None = None
    if method == "spot":
        params["top_k"] = top_k
        chosen = order[:top_k]
    else:
        params.update(threshold=float(threshold), max_group=max_group, min_group=min_group)
        kept = [i for i in order if to_target[i] > threshold]
        chosen, group_score = _best_group(sim, kept, min_group, max_group or len(kept), max_exhaustive)
    chosen_set = set(chosen)
    ranking = tuple(SourceScore(keys[i], to_target[i], i in chosen_set) for i in order)
    return Selection(method, tuple(keys[i] for i in order if i in chosen_set), ranking, group_score, params)


def _group_score(sim: torch.Tensor, group: Sequence[int]) -> float:
    """Mean pairwise similarity over the target (index 0) and the group's sources (index ``i + 1``)."""
    idx = [0, *(i + 1 for i in group)]
    sub = sim[idx][:, idx]  # (m, m)
    m = len(idx)
    return float((sub.sum() - sub.diagonal().sum()) / (m * (m - 1)))


def _best_group(
    sim: torch.Tensor, kept: list[int], min_group: int, max_group: int, max_exhaustive: int
) -> tuple[list[int], float | None]:
    """The group of ``kept`` sources (ordered by rank) with the best score; see :func:`select_sources`."""
    if not kept:
        return [], None
    rank = {i: r for r, i in enumerate(kept)}

    def key(group: Sequence[int]) -> tuple[float, int, list[int]]:
        # Higher score, then larger group, then better-ranked members.
        return (_group_score(sim, group), len(group), [-rank[i] for i in group])

    limit = min(max_group, len(kept))
    smallest = min(min_group, limit)
    if len(kept) <= max_exhaustive:
        groups = (list(g) for size in range(smallest, limit + 1) for g in itertools.combinations(kept, size))
        best = max(groups, key=key)
    else:
        best = [kept[0]]
        while len(best) < limit:
            options = [[*best, i] for i in kept if i not in best]
            candidate = max(options, key=key)
            if len(best) >= smallest and key(candidate) <= key(best):
                break
            best = candidate
    return best, _group_score(sim, best)
