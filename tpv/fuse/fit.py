"""Fitting FUSE maps: word lists, grouping by subtoken count, stacking, and solving ``G_k``.

The data
--------
The fitting data are *word types* from a word list that installs offline (the paper uses the word types of
wikitext-103, which needs the internet):

* ``"wordnet"`` (default): the single-word lemmas of WordNet 3.0's ``index.noun``, ``index.verb``,
  ``index.adj`` and ``index.adv`` (Princeton University; Debian package ``wordnet-base``, read from
  ``$WNSEARCHDIR`` or ``/usr/share/wordnet``): lower-case, letters and inner hyphens or apostrophes only,
  about 83,000 words.
* ``"dict"``: the system word list ``/usr/share/dict/words`` (Debian ``wamerican``), one word a line.
* a path to any text file with one word a line, or a sequence of strings.

Every word is tokenized *as it appears inside a sentence*: ``word_prefix + word`` (a leading space by default)
with no special tokens, by both tokenizers.

Grouping, stacking, padding
---------------------------
A word whose **target** tokenization has ``k`` subtokens (``1 <= k <= K``; ``K = max_subtokens``, 4 by default)
joins group ``k``. Words the target splits into more than ``K`` subtokens are not used, nor words either side
maps to its unknown token. Within a group of ``n`` words (identical ``(source ids, target ids)`` pairs counted
once, then at most ``max_words_per_k`` drawn with ``seed``):

* ``X_target`` has shape ``(n, d_t, k)``: ``X_target[i, :, j]`` is the input embedding of the ``j``-th target
  subtoken of word ``i``.
* ``X_source`` has shape ``(n, d_s, k)``: ``X_source[i, :, j]`` is the input embedding of the ``j``-th
  **source** subtoken of word ``i`` for ``j < min(s_i, k)`` (``s_i`` the source subtoken count) and zero after:
  a source word shorter than ``k`` is zero-padded on the right, a longer one is truncated to its first ``k``
  subtokens.

Embeddings are the matrices the models actually consume (:func:`tpv.models.input_embeddings`: Gemma's
``sqrt(hidden)`` scale applied), the space soft prompts live in.

The map
-------
``G_k = pinv_t(X_source) *_t X_target`` has shape ``(d_s, d_t, k)`` and maps a source word to the target space
by ``X_source *_t G_k`` (:mod:`tpv.fuse.tproduct`). It is computed face by face in the Fourier domain: the face
``f`` of ``G_k`` is ``pinv(X_source_f) @ X_target_f``, which is exactly the t-product of the t-pseudo-inverse
with ``X_target``. For a face of full column rank this is ``(X^H X)^-1 X^H Y``, solved in float64 through the
eigen-decomposition of the ``d_s x d_s`` Gram matrix (``n d_s^2`` work instead of an SVD of the ``n x d_s``
face, and never forming the ``(d_s, n, k)`` pseudo-inverse).

Modules
-------
The word lists are read by :mod:`tpv.fuse.words`, the fitted :class:`FuseMap` is defined in :mod:`tpv.fuse.maps`
(both re-exported here); this module groups, stacks and solves.

Bad input and fallbacks
-----------------------
* **Too few words** for some ``k`` (fewer than ``min_words``): :class:`~tpv.fuse.NotEnoughWordsError` listing the
  counts, unless ``few_words="positionwise"``: then that ``G_k`` is the single-token map ``G_1`` applied to
  each position on its own (slice 0 equal to ``G_1``, other slices zero), and the fallback is recorded in
  :attr:`FuseMap.solvers`. Group 1 must always have enough words.
* **A singular system** (fewer words than source dimensions, or a Fourier face of ``X_source`` whose smallest
  singular value is below ``rcond`` times its largest): the minimum-norm pseudo-inverse solution would fit noise,
  so that face is solved by ridge regression instead, ``G_f = (X^H X + lambda I)^-1 X^H Y`` with
  ``lambda = ridge_fallback * s_max(X_f)^2`` (``1e-3`` by default), and the solver used is recorded per ``k``
  (``"pinv"`` or ``"ridge(1e-03)"``). Pass ``ridge=`` to use ridge for every face. A face with no information at
  all (all zeros, or non-finite values) raises :class:`~tpv.fuse.SingularSystemError`.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import torch

from tpv.errors import ConfigError, NotEnoughWordsError, SingularSystemError
from tpv.fuse.maps import FuseMap
from tpv.fuse.words import WordList, read_word_list, resolve_words, wordnet_words
from tpv.spaces import EmbeddingSpace, as_space

if TYPE_CHECKING:
    from tpv.fuse.cache import CacheOption

__all__ = [
    "DEFAULT_MAX_SUBTOKENS",
    "EmbeddingSpace",
    "FewWords",
    "FuseMap",
    "WordGroup",
    "WordList",
    "fit",
    "fit_map",
    "group_words",
    "read_word_list",
    "resolve_words",
    "solve_map",
    "stack_embeddings",
    "wordnet_words",
]

DEFAULT_MAX_SUBTOKENS = 4
FewWords = Literal["error", "positionwise"]


# -- grouping and stacking ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WordGroup:
    """The fitting words whose target tokenization has ``k`` subtokens, as padded id matrices.

    Attributes:
        k: target subtoken count.
        words: the ``n`` words.
        source_ids: long tensor ``(n, k)``: the first ``min(s_i, k)`` source ids of word ``i``, then ``-1``.
        target_ids: long tensor ``(n, k)``: the target ids.
    """

    k: int
    words: tuple[str, ...]
    source_ids: torch.Tensor
    target_ids: torch.Tensor

    def __len__(self) -> int:
        return len(self.words)


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    out = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [list(ids) for ids in out]


def group_words(
    words: WordList | Sequence[str],
    source: EmbeddingSpace,
    target: EmbeddingSpace,
    *,
    max_subtokens: int = DEFAULT_MAX_SUBTOKENS,
    max_words_per_k: int | None = 16384,
    seed: int = 0,
    word_prefix: str = " ",
) -> dict[int, WordGroup]:
    """Tokenize words with both tokenizers and group them by target subtoken count (see the module docs).

    Args:
        words: the word list.
        source: source space.
        target: target space.
        max_subtokens: ``K``, the largest target subtoken count kept.
        max_words_per_k: at most this many words per group, drawn with ``seed`` (``None``: all).
        seed: seed of that draw.
        word_prefix: prepended to every word before tokenizing (a space: the in-sentence form).

    Returns:
        ``{k: WordGroup}`` for ``k = 1 .. max_subtokens`` (empty groups included).
    """
    items = list(words.words if isinstance(words, WordList) else words)
    texts = [word_prefix + w for w in items]
    src = _encode(source.tokenizer, texts)
    tgt = _encode(target.tokenizer, texts)
    unk_s = getattr(source.tokenizer, "unk_token_id", None)
    unk_t = getattr(target.tokenizer, "unk_token_id", None)
    buckets: dict[int, dict[tuple[tuple[int, ...], tuple[int, ...]], str]] = {
        k: {} for k in range(1, max_subtokens + 1)
    }
    for word, s_ids, t_ids in zip(items, src, tgt):
        k = len(t_ids)
        if not s_ids or k < 1 or k > max_subtokens:
            continue
        if (unk_s is not None and unk_s in s_ids) or (unk_t is not None and unk_t in t_ids):
            continue
        buckets[k].setdefault((tuple(s_ids[:k]), tuple(t_ids)), word)
    groups: dict[int, WordGroup] = {}
    for k, bucket in buckets.items():
        pairs = sorted(bucket.items(), key=lambda kv: kv[1])
        if max_words_per_k is not None and len(pairs) > max_words_per_k:
            pairs = sorted(random.Random(seed * 1000 + k).sample(pairs, max_words_per_k), key=lambda kv: kv[1])
        s_rows = [list(s_key) + [-1] * (k - len(s_key)) for (s_key, _), _ in pairs]
        s_mat = torch.tensor(s_rows, dtype=torch.long).reshape(len(pairs), k)  # (n, k), -1 = padding
        t_mat = torch.tensor([list(t_key) for (_, t_key), _ in pairs], dtype=torch.long).reshape(len(pairs), k)
        groups[k] = WordGroup(k, tuple(w for _, w in pairs), s_mat, t_mat)
    return groups


def stack_embeddings(
    ids: torch.Tensor, embeddings: torch.Tensor, *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Stack word embeddings as a third-order tensor, zero where the id is ``-1`` (padding).

    Args:
        ids: long tensor ``(n, k)``, ``-1`` for padding.
        embeddings: ``(vocab, d)``.
        dtype: output dtype.

    Returns:
        Shape ``(n, d, k)``: ``out[i, :, j] = embeddings[ids[i, j]]`` (zeros for ``-1``).
    """
    pad = ids < 0
    rows = embeddings[ids.clamp(min=0)].to(dtype)  # (n, k, d)
    rows[pad] = 0
    return rows.permute(0, 2, 1).contiguous()  # (n, d, k)


# -- solving ------------------------------------------------------------------------------------------------------


def solve_map(
    x_source: torch.Tensor,
    x_target: torch.Tensor,
    *,
    rcond: float = 1e-6,
    ridge: float | None = None,
    ridge_fallback: float = 1e-3,
) -> tuple[torch.Tensor, str]:
    """Solve ``G = pinv_t(x_source) *_t x_target``, face by face in the Fourier domain.

    Args:
        x_source: ``(n, d_s, k)``.
        x_target: ``(n, d_t, k)``.
        rcond: a face whose smallest singular value is below ``rcond`` times its largest (or with ``n < d_s``)
            is singular and solved with the ridge fallback. Singular values are computed from the Gram matrix in
            float64, so values of ``rcond`` below about ``1e-7`` are not resolved.
        ridge: if given, solve every face by ridge regression with ``lambda = ridge * s_max^2``.
        ridge_fallback: the relative ``lambda`` of the fallback.

    Returns:
        ``(G, solver)``: ``G`` of shape ``(d_s, d_t, k)`` in float64, and ``"pinv"`` or ``"ridge(<lambda>)"``
        (the latter when any face needed it).

    Raises:
        SingularSystemError: ``x_source`` is all zeros or not finite.
        ConfigError: shapes disagree.
    """
    if x_source.ndim != 3 or x_target.ndim != 3 or x_source.shape[0] != x_target.shape[0]:
        raise ConfigError(
            f"solve_map needs x_source (n, d_s, k) and x_target (n, d_t, k): got {tuple(x_source.shape)} "
            f"and {tuple(x_target.shape)}"
        )
    if x_source.shape[2] != x_target.shape[2]:
        raise ConfigError(f"tube lengths differ: {x_source.shape[2]} and {x_target.shape[2]}")
    if not bool(torch.isfinite(x_source).all()) or not bool(torch.isfinite(x_target).all()):
        raise SingularSystemError("the fitting embeddings hold NaN or inf values: no map can be solved")
    n, d_s, k = x_source.shape
    xs_hat = torch.fft.rfft(x_source.double(), dim=2).permute(2, 0, 1)  # (F, n, d_s)
    xt_hat = torch.fft.rfft(x_target.double(), dim=2).permute(2, 0, 1)  # (F, n, d_t)
    faces = []
    used_ridge: float | None = None
    for f in range(xs_hat.shape[0]):
        a, b = xs_hat[f], xt_hat[f]  # (n, d_s), (n, d_t)
        gram = a.mH @ a  # (d_s, d_s), Hermitian
        lam_all, v = torch.linalg.eigh(gram)  # squared singular values of a, ascending; (d_s,), (d_s, d_s)
        lam_all = lam_all.clamp(min=0.0)
        s2_max = float(lam_all[-1])
        if s2_max == 0.0:
            raise SingularSystemError(
                f"the source embeddings of every fitting word are zero in Fourier face {f} (k={k}): the system "
                "holds no information. Check the embedding matrix and the word list"
            )
        singular = n < d_s or float(lam_all[0]) < (rcond**2) * s2_max
        lam_rel = ridge if ridge is not None else (ridge_fallback if singular else None)
        shift = 0.0 if lam_rel is None else lam_rel * s2_max
        if lam_rel is not None:
            used_ridge = lam_rel
        rhs = v.mH @ (a.mH @ b)  # (d_s, d_t)
        faces.append(v @ (rhs / (lam_all + shift)[:, None].to(rhs.dtype)))  # (d_s, d_t)
    g = torch.fft.irfft(torch.stack(faces, dim=2), n=k, dim=2)  # (d_s, d_t, k)
    solver = "pinv" if used_ridge is None else f"ridge({used_ridge:.0e})"
    return g, solver


def _library_version() -> str:
    from tpv._version import __version__

    return __version__


def fit_map(
    source: EmbeddingSpace,
    target: EmbeddingSpace,
    *,
    words: str | os.PathLike[str] | Sequence[str] | WordList = "wordnet",
    max_subtokens: int = DEFAULT_MAX_SUBTOKENS,
    min_words: int = 32,
    max_words_per_k: int | None = 16384,
    few_words: FewWords = "error",
    rcond: float = 1e-6,
    ridge: float | None = None,
    ridge_fallback: float = 1e-3,
    seed: int = 0,
    word_prefix: str = " ",
) -> FuseMap:
    """Fit the maps ``G_1 .. G_K`` from ``source`` to ``target`` (no cache; see :func:`fit`).

    Args:
        source: the source space (the one prompts are optimized or tuned in).
        target: the target space.
        words: fitting words (see :func:`resolve_words`).
        max_subtokens: ``K``.
        min_words: the fewest words a group ``k`` may be fitted on.
        max_words_per_k: at most this many words per group (``None``: all).
        few_words: ``"error"`` or ``"positionwise"`` (see the module docs).
        rcond: singularity threshold of :func:`solve_map`.
        ridge: ridge for every face (``None``: pseudo-inverse, ridge only as the fallback).
        ridge_fallback: relative ridge of the fallback.
        seed: seed of the word draw.
        word_prefix: prepended to each word before tokenizing.

    Returns:
        The fitted :class:`FuseMap`.

    Raises:
        ConfigError: a bad option value.
        NotEnoughWordsError: a group with fewer than ``min_words`` words (``few_words="error"``, or ``k = 1``).
        SingularSystemError: a system without information.
    """
    _check_options(max_subtokens, min_words, max_words_per_k, few_words, rcond, ridge, ridge_fallback)
    start = time.perf_counter()
    wl = resolve_words(words)
    groups = group_words(
        wl, source, target, max_subtokens=max_subtokens, max_words_per_k=max_words_per_k, seed=seed,
        word_prefix=word_prefix,
    )  # fmt: skip
    counts = {k: len(g) for k, g in groups.items()}
    short = [k for k, n in counts.items() if n < min_words]
    if short and (few_words == "error" or 1 in short):
        shown = ", ".join(f"k={k}: {counts[k]}" for k in sorted(counts))
        fixes = "use a larger word list, lower max_subtokens, or min_words"
        if 1 not in short:
            fixes += ", or few_words='positionwise' (G_k built from G_1 for those k)"
        raise NotEnoughWordsError(
            f"too few fitting words for k = {', '.join(map(str, short))} (need min_words={min_words}; have "
            f"{shown}) from {wl.source}, mapping {source.name} -> {target.name}. Fix: {fixes}"
        )
    maps: dict[int, torch.Tensor] = {}
    solvers: dict[int, str] = {}
    for k in sorted(groups):
        if k in short:
            continue
        g = groups[k]
        xs = stack_embeddings(g.source_ids, source.embeddings)  # (n, d_s, k)
        xt = stack_embeddings(g.target_ids, target.embeddings)  # (n, d_t, k)
        gk, solvers[k] = solve_map(xs, xt, rcond=rcond, ridge=ridge, ridge_fallback=ridge_fallback)
        maps[k] = gk.float()  # (d_s, d_t, k)
    for k in short:
        pos = torch.zeros(source.dim, target.dim, k)  # (d_s, d_t, k)
        pos[:, :, 0] = maps[1][:, :, 0]
        maps[k] = pos
        solvers[k] = "positionwise(G_1)"
    settings = {
        "max_subtokens": max_subtokens,
        "min_words": min_words,
        "max_words_per_k": max_words_per_k,
        "few_words": few_words,
        "rcond": rcond,
        "ridge": ridge,
        "ridge_fallback": ridge_fallback,
        "seed": seed,
        "word_prefix": word_prefix,
        "words_sha256": wl.sha256,
    }
    return FuseMap(
        maps=maps,
        source=source.fingerprint(),
        target=target.fingerprint(),
        word_source=wl.source,
        words_per_k=counts,
        solvers=solvers,
        settings=settings,
        fit_seconds=time.perf_counter() - start,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        library_version=_library_version(),
    )


def _check_options(
    max_subtokens: object,
    min_words: object,
    max_words_per_k: object,
    few_words: object,
    rcond: object,
    ridge: object,
    ridge_fallback: object,
) -> None:
    def pos_int(v: object, name: str) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")

    pos_int(max_subtokens, "max_subtokens")
    pos_int(min_words, "min_words")
    if max_words_per_k is not None:
        pos_int(max_words_per_k, "max_words_per_k")
    if few_words not in ("error", "positionwise"):
        raise ConfigError(f"few_words must be 'error' or 'positionwise', got {few_words!r}")
    for name, v in (("rcond", rcond), ("ridge", ridge), ("ridge_fallback", ridge_fallback)):
        if v is None and name == "ridge":
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise ConfigError(f"{name} must be a positive number, got {v!r}")


def fit(
    source: str | EmbeddingSpace,
    target: str | EmbeddingSpace,
    *,
    words: str | os.PathLike[str] | Sequence[str] | WordList = "wordnet",
    max_subtokens: int = DEFAULT_MAX_SUBTOKENS,
    min_words: int = 32,
    max_words_per_k: int | None = 16384,
    few_words: FewWords = "error",
    rcond: float = 1e-6,
    ridge: float | None = None,
    ridge_fallback: float = 1e-3,
    seed: int = 0,
    word_prefix: str = " ",
    cache: CacheOption = True,
    refit: bool = False,
) -> FuseMap:
    """Fit (or load from the cache) the FUSE maps from ``source`` to ``target``.

    Example:
        >>> m = tpv.fuse.fit("smollm2-135m", "gemma3-270m")  # doctest: +SKIP
        >>> m.describe()  # doctest: +SKIP
        'FUSE map smollm2-135m (576) -> gemma3-270m (640), K=4, words k=1: 16384, ...'

    Args:
        source: model name (``smollm2-135m``...) or :class:`EmbeddingSpace` whose prompts will be moved or
            optimized.
        target: model name or :class:`EmbeddingSpace`.
        words: fitting words: ``"wordnet"`` (default), ``"dict"``, a file, or a list.
        max_subtokens: ``K``, the longest word (in target subtokens) a map is fitted for.
        min_words: the fewest words a group may be fitted on.
        max_words_per_k: cap on the words per group (``None``: all).
        few_words: ``"error"`` (default) or ``"positionwise"`` for groups below ``min_words``.
        rcond: singularity threshold (faces below it use the ridge fallback).
        ridge: ridge for every face instead of the pseudo-inverse.
        ridge_fallback: relative ridge of the fallback.
        seed: seed of the word draw.
        word_prefix: prepended to each word before tokenizing.
        cache: ``True`` (the default cache folder, ``$TPV_CACHE/fuse``), a folder, or ``False``.
        refit: fit again even when a cached map exists, and replace it.

    Returns:
        The :class:`FuseMap`.

    Raises:
        MapMismatchError: a cached map with the same key was fitted for other tokenizers or embeddings (a model
            package changed); pass ``refit=True``.
        NotEnoughWordsError, SingularSystemError, ConfigError: see :func:`fit_map`.
    """
    from tpv.fuse.cache import cache_path, load_map, save_map

    _check_options(max_subtokens, min_words, max_words_per_k, few_words, rcond, ridge, ridge_fallback)
    src = as_space(source, "source", cached=False)
    tgt = as_space(target, "target", cached=False)
    if src.name == tgt.name and src.fingerprint() == tgt.fingerprint():
        raise ConfigError(f"source and target are the same model ({src.name!r}): no map is needed")
    options: dict[str, Any] = {
        "words": words, "max_subtokens": max_subtokens, "min_words": min_words, "max_words_per_k": max_words_per_k,
        "few_words": few_words, "rcond": rcond, "ridge": ridge, "ridge_fallback": ridge_fallback, "seed": seed,
        "word_prefix": word_prefix,
    }  # fmt: skip
    path = None
    if cache is not False:
        wl = resolve_words(words)
        options["words"] = wl
        key_settings = {k: v for k, v in options.items() if k != "words"} | {"words_sha256": wl.sha256}
        path = cache_path(src.name, tgt.name, key_settings, root=None if cache is True else cache)
        if path.is_file() and not refit:
            fmap = load_map(path)
            fmap.check(src, tgt)
            return fmap
    fmap = fit_map(src, tgt, **options)
    if path is not None:
        save_map(fmap, path, overwrite=True)  # the cache entry is replaced on --refit
    return fmap
