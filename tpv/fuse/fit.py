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

import hashlib
import json
import os
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from tpv._tensor import content_hash
from tpv.errors import ConfigError
from tpv.fuse.errors import MapMismatchError, NotEnoughWordsError, SingularSystemError
from tpv.fuse.tproduct import t_product
from tpv.tasks.offline import WORDNET_DIRS, find_wordnet_dir

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
DICT_WORDS = "/usr/share/dict/words"
_WORD = re.compile(r"^[a-z]+(?:['-][a-z]+)*$")
_FINGERPRINT_ROWS = 4096


# -- word lists ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WordList:
    """Words to fit on, with where they came from.

    Attributes:
        words: distinct words, sorted.
        source: human-readable provenance (recorded in every fitted map).
    """

    words: tuple[str, ...]
    source: str

    @property
    def sha256(self) -> str:
        """Hash of the words (first 16 hex digits), part of the cache key."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()[:16]


def wordnet_words(folder: str | os.PathLike[str] | None = None) -> WordList:
    """The single-word lemmas of WordNet 3.0 (all four parts of speech).

    Args:
        folder: the WordNet database folder; default ``$WNSEARCHDIR`` or ``/usr/share/wordnet``.

    Returns:
        Lower-case lemmas made of letters with inner hyphens or apostrophes (multi-word lemmas, numbers and
        abbreviations with dots are left out), sorted.

    Raises:
        ConfigError: WordNet is not installed (the message holds the install command).
    """
    where = Path(folder) if folder is not None else find_wordnet_dir()
    if where is None or not Path(where, "index.noun").is_file():
        raise ConfigError(
            f"no WordNet database found (looked in {folder or ', '.join(['$WNSEARCHDIR', *WORDNET_DIRS])}). "
            "Fix: sudo apt-get install wordnet-base, or pass words='dict' or a word-list file"
        )
    words: set[str] = set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(Path(where, f"index.{pos}"), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" "):  # the licence header
                    continue
                lemma = line.split(" ", 1)[0]
                if _WORD.match(lemma):
                    words.add(lemma)
    return WordList(tuple(sorted(words)), f"WordNet 3.0 lemmas ({where}/index.*, Princeton University)")


def read_word_list(path: str | os.PathLike[str]) -> WordList:
    """Words from a text file, one a line (blank lines and lines with spaces skipped).

    Raises:
        ConfigError: the file does not exist or holds no word.
    """
    p = Path(path)
    if not p.is_file():
        hint = " Fix: sudo apt-get install wamerican" if str(p) == DICT_WORDS else ""
        raise ConfigError(f"word list {str(p)!r} does not exist.{hint}")
    words = {w.strip() for w in p.read_text(encoding="utf-8", errors="replace").splitlines()}
    words = {w for w in words if w and not any(c.isspace() for c in w)}
    if not words:
        raise ConfigError(f"word list {str(p)!r} holds no word (one word a line expected)")
    return WordList(tuple(sorted(words)), f"word list {p}")


def resolve_words(words: str | os.PathLike[str] | Sequence[str] | WordList) -> WordList:
    """Turn a ``words=`` option into a :class:`WordList`.

    Args:
        words: ``"wordnet"``, ``"dict"`` (``/usr/share/dict/words``), a path to a one-word-a-line file, a
            sequence of words, or a :class:`WordList`.

    Returns:
        The word list.

    Raises:
        ConfigError: unknown source, missing file, or no words.
    """
    if isinstance(words, WordList):
        return words
    if isinstance(words, str) and words == "wordnet":
        return wordnet_words()
    if isinstance(words, str) and words == "dict":
        return read_word_list(DICT_WORDS)
    if isinstance(words, str | os.PathLike):
        return read_word_list(words)
    if isinstance(words, Sequence):
        items = sorted({w for w in words if isinstance(w, str) and w.strip()})
        if not items:
            raise ConfigError("words= holds no word")
        return WordList(tuple(items), f"given list of {len(items)} words")
    raise ConfigError(f"words must be 'wordnet', 'dict', a path or a list of words, got {type(words).__name__}")


# -- model embedding spaces ---------------------------------------------------------------------------------------


def _tokenizer_hash(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    payload = json.dumps(sorted(vocab.items()), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(f"{type(tokenizer).__name__}|{payload}".encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class EmbeddingSpace:
    """A model's token space: its id, its tokenizer and the input embedding matrix it feeds its first layer.

    Attributes:
        name: model id recorded in maps (a tpv packaged name such as ``smollm2-135m``, a folder, a hub id).
        tokenizer: a fast ``transformers`` tokenizer (offsets are needed by the bridge).
        embeddings: float tensor of shape ``(vocab_rows, dim)``.
    """

    name: str
    tokenizer: Any
    embeddings: torch.Tensor
    _fingerprint: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"an embedding space needs a non-empty model name, got {self.name!r}")
        e = self.embeddings
        if not isinstance(e, torch.Tensor) or e.ndim != 2 or not e.is_floating_point():
            shape = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
            raise ConfigError(f"embeddings of {self.name!r} must be a float tensor (vocab, dim), got {shape}")
        if not callable(getattr(self.tokenizer, "get_vocab", None)):
            raise ConfigError(f"the tokenizer of {self.name!r} must be a transformers tokenizer (get_vocab missing)")

    @classmethod
    def from_name(cls, name: str) -> EmbeddingSpace:
        """Load a model's tokenizer and input embeddings by tpv name, folder or hub id (see :mod:`tpv.models`)."""
        from tpv.models import load_embeddings, load_tokenizer

        return cls(name, load_tokenizer(name), load_embeddings(name))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str | None = None) -> EmbeddingSpace:
        """Wrap a loaded model and its tokenizer (the embeddings as the model feeds them, Gemma's scale applied).

        Args:
            model: a ``transformers`` model (or PEFT model).
            tokenizer: its tokenizer.
            name: id to record; default :func:`tpv.models.model_name`.
        """
        from tpv.models import input_embeddings, model_name

        return cls(name or model_name(model), tokenizer, input_embeddings(model))

    @property
    def dim(self) -> int:
        """Embedding width."""
        return int(self.embeddings.shape[1])

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this space in a fitted map: name, tokenizer hash and size, embedding shape and hash.

        The embedding hash covers 4,096 rows spread evenly over the matrix (hashing all of Gemma's 262k x 640
        matrix would cost seconds on every cache lookup).
        """
        if not self._fingerprint:
            rows = self.embeddings.shape[0]
            idx = torch.linspace(0, rows - 1, min(rows, _FINGERPRINT_ROWS)).round().long()
            fp = {
                "model": self.name,
                "tokenizer_sha256": _tokenizer_hash(self.tokenizer),
                "vocab_size": len(self.tokenizer),
                "embedding_shape": [int(rows), self.dim],
                "embedding_sha256": content_hash(self.embeddings[idx].float()),
            }
            self._fingerprint.update(fp)
        return dict(self._fingerprint)


def _space(x: str | EmbeddingSpace, what: str) -> EmbeddingSpace:
    if isinstance(x, EmbeddingSpace):
        return x
    if isinstance(x, str):
        return EmbeddingSpace.from_name(x)
    raise ConfigError(f"{what} must be a model name or a tpv.fuse.EmbeddingSpace, got {type(x).__name__}")


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


# -- the fitted map -----------------------------------------------------------------------------------------------


def _library_version() -> str:
    from tpv._version import __version__

    return __version__


@dataclass(frozen=True, eq=False)
class FuseMap:
    """Fitted FUSE maps from a source model's embedding space to a target model's, one per word length.

    Attributes:
        maps: ``{k: G_k}``, each float32 of shape ``(d_s, d_t, k)``, for ``k = 1 .. max_subtokens``.
        source: fingerprint of the source space (:meth:`EmbeddingSpace.fingerprint`).
        target: fingerprint of the target space.
        word_source: where the fitting words came from.
        words_per_k: number of fitting words per ``k``.
        solvers: ``"pinv"``, ``"ridge(<lambda>)"`` or ``"positionwise(G_1)"`` per ``k``.
        settings: the fit's options (max_subtokens, min_words, max_words_per_k, seed, rcond, ridge,
            ridge_fallback, few_words, word_prefix, words_sha256).
        fit_seconds: wall time of the fit (tokenizing, stacking, solving).
        created: UTC time of the fit, ISO 8601.
        library_version: the tpv version that fitted it.
    """

    maps: Mapping[int, torch.Tensor]
    source: Mapping[str, Any]
    target: Mapping[str, Any]
    word_source: str
    words_per_k: Mapping[int, int]
    solvers: Mapping[int, str]
    settings: Mapping[str, Any]
    fit_seconds: float = 0.0
    created: str = ""
    library_version: str = ""

    def __post_init__(self) -> None:
        ks = sorted(self.maps)
        if not ks or ks != list(range(1, len(ks) + 1)):
            raise ConfigError(f"a FuseMap needs maps for k = 1 .. K, got k = {ks}")
        d = None
        for k in ks:
            g = self.maps[k]
            if g.ndim != 3 or g.shape[2] != k or (d is not None and tuple(g.shape[:2]) != d):
                raise ConfigError(f"map G_{k} must have shape (d_s, d_t, {k}), got {tuple(g.shape)}")
            d = tuple(g.shape[:2])

    @property
    def max_subtokens(self) -> int:
        """``K``: the longest word (in target subtokens) a map exists for."""
        return max(self.maps)

    @property
    def source_dim(self) -> int:
        """Source embedding width ``d_s``."""
        return int(self.maps[1].shape[0])

    @property
    def target_dim(self) -> int:
        """Target embedding width ``d_t``."""
        return int(self.maps[1].shape[1])

    @property
    def source_model(self) -> str:
        """Source model id."""
        return str(self.source.get("model", "unknown"))

    @property
    def target_model(self) -> str:
        """Target model id."""
        return str(self.target.get("model", "unknown"))

    def describe(self) -> str:
        """One line: direction, widths, K and words."""
        counts = ", ".join(f"k={k}: {n}" for k, n in sorted(self.words_per_k.items()))
        return (
            f"FUSE map {self.source_model} ({self.source_dim}) -> {self.target_model} ({self.target_dim}), "
            f"K={self.max_subtokens}, words {counts}"
        )

    def __repr__(self) -> str:
        return f"<{self.describe()}>"

    def map_words(self, x: torch.Tensor) -> torch.Tensor:
        """Map source words of ``k`` subtokens to the target space: ``x *_t G_k``.

        Args:
            x: ``(n, d_s, k)``, each word stacked and padded as in the fit (zeros after its source subtokens).

        Returns:
            ``(n, d_t, k)`` in the dtype of ``x``.

        Raises:
            ConfigError: wrong width, or ``k`` outside ``1 .. K``.
        """
        if x.ndim != 3 or x.shape[1] != self.source_dim:
            raise ConfigError(f"map_words needs (n, {self.source_dim}, k), got {tuple(x.shape)}")
        k = int(x.shape[2])
        if k not in self.maps:
            raise ConfigError(f"no map for words of {k} subtokens: this map has k = 1 .. {self.max_subtokens}")
        return t_product(x, self.maps[k].to(x.dtype))

    def check(self, source: EmbeddingSpace | Mapping[str, Any], target: EmbeddingSpace | Mapping[str, Any]) -> None:
        """Raise unless this map was fitted for exactly these source and target spaces.

        Args:
            source: the source space or its fingerprint.
            target: the target space or its fingerprint.

        Raises:
            MapMismatchError: naming each differing field (model, tokenizer hash, vocab size, embeddings).
        """
        problems: list[str] = []
        for side, mine, given in (("source", self.source, source), ("target", self.target, target)):
            fp = given.fingerprint() if isinstance(given, EmbeddingSpace) else dict(given)
            for key in ("model", "tokenizer_sha256", "vocab_size", "embedding_shape", "embedding_sha256"):
                if key in fp and key in mine and _norm(fp[key]) != _norm(mine[key]):
                    problems.append(f"{side} {key}: map has {mine[key]!r}, given {fp[key]!r}")
        if problems:
            raise MapMismatchError(
                f"{self.describe()} does not match the models given: " + "; ".join(problems) + ". Fix: fit a map "
                "for these models (tpv.fuse.fit(source, target, refit=True), or `tpv fuse fit --refit`)"
            )


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, tuple | list) else v


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
    src = _space(source, "source")
    tgt = _space(target, "target")
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
