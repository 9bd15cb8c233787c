"""Anchors: words that every tokenizer involved maps to one token, the fixed points relative encodings share.

Two models with different tokenizers can only be compared through things both can represent. An *anchor* is a
word that each tokenizer turns into exactly one token when it follows a space (``" movie"``), so each model has
one embedding row for it. Tokenizers mark word starts differently, and vocabularies are compared after
normalizing those marks:

=======================  =====================  ==========================================================
tokenizer style          word-start piece       normalized
=======================  =====================  ==========================================================
byte-level BPE (GPT-2,   ``Ġmovie``             ``movie`` (pieces without ``Ġ`` continue a word: skipped)
Llama-3, SmolLM2)
SentencePiece (T5,       ``▁movie``             ``movie`` (pieces without ``▁`` continue a word: skipped)
Gemma, Llama-2)
WordPiece (BERT)         ``movie``              ``movie`` (pieces with ``##`` continue a word: skipped)
word-level / other       ``movie``              ``movie``
=======================  =====================  ==========================================================

The words present in every normalized vocabulary are then *checked* by running each tokenizer on ``" " + word``:
only words that come out as one (non-special, non-unknown) token in all of them are kept, with the id the
tokenizer really produces. So the anchors are exactly the words each model sees as one token in running text.

By default only alphabetic words are kept (punctuation and numbers are shared too, but carry little task
meaning). The set can be restricted to chosen words (``only=``, e.g. a task's label words) or weighted
(``weights=``); the PTfer maintainers recommend the label words for classification (PTfer issue 3: with generic
anchors only, a prompt did not transfer on SST-2).

Example:
    >>> from tpv.transfer.anchors import normalize_token
    >>> normalize_token("Ġmovie", "byte-bpe"), normalize_token("▁movie", "sentencepiece")
    ('movie', 'movie')
    >>> normalize_token("##ing", "wordpiece") is None
    True
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from tpv.errors import AnchorError, ConfigError, ModelError

__all__ = [
    "DEFAULT_MIN_ANCHORS",
    "AnchorError",
    "SharedAnchors",
    "TokenizerStyle",
    "count_shared_anchors",
    "detect_style",
    "find_shared_anchors",
    "normalize_token",
]

TokenizerStyle = Literal["byte-bpe", "sentencepiece", "wordpiece", "plain"]
"""How a tokenizer marks word boundaries: ``Ġ`` word starts, ``▁`` word starts, ``##`` continuations, or none."""

STYLES: tuple[str, ...] = get_args(TokenizerStyle)
DEFAULT_MIN_ANCHORS = 32
"""Fewest shared anchors accepted by default: a relative code over fewer words says little about a prompt row."""

_BPE_MARK = "Ġ"
_SP_MARK = "▁"
_WP_MARK = "##"


def detect_style(vocab: Iterable[str]) -> TokenizerStyle:
    """Guess a tokenizer's word-boundary style from its vocabulary.

    Args:
        vocab: the tokenizer's tokens (``tokenizer.get_vocab()``'s keys).

    Returns:
        ``"byte-bpe"`` when ``Ġ``-prefixed tokens are common, ``"sentencepiece"`` for ``▁``, ``"wordpiece"`` for
        ``##`` continuations, else ``"plain"``.
    """
    counts = {"byte-bpe": 0, "sentencepiece": 0, "wordpiece": 0}
    total = 0
    for token in vocab:
        total += 1
        if token.startswith(_BPE_MARK):
            counts["byte-bpe"] += 1
        elif token.startswith(_SP_MARK):
            counts["sentencepiece"] += 1
        elif token.startswith(_WP_MARK):
            counts["wordpiece"] += 1
    style, count = max(counts.items(), key=lambda kv: kv[1])
    if total == 0 or count < max(3, total // 50):  # markers on under 2 % of tokens: a word-level vocabulary
        return "plain"
    return style  # type: ignore[return-value]


def normalize_token(token: str, style: TokenizerStyle) -> str | None:
    """The word a vocabulary piece stands for when it starts a word, or ``None`` when it continues one.

    Args:
        token: a vocabulary entry, e.g. ``"Ġmovie"``, ``"▁movie"``, ``"##ing"``.
        style: the tokenizer's style (see :func:`detect_style`).

    Returns:
        The bare word (``"movie"``), or ``None`` for word-continuation pieces and empty words.

    Raises:
        ConfigError: unknown ``style``.
    """
    if style == "byte-bpe":
        word = token[len(_BPE_MARK) :] if token.startswith(_BPE_MARK) else None
    elif style == "sentencepiece":
        word = token[len(_SP_MARK) :] if token.startswith(_SP_MARK) else None
    elif style == "wordpiece":
        word = None if token.startswith(_WP_MARK) else token
    elif style == "plain":
        word = token
    else:
        raise ConfigError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
    return word or None


def _keep_word(word: str, alpha_only: bool, min_length: int) -> bool:
    if len(word) < min_length or word != word.strip():
        return False
    return word.isalpha() if alpha_only else any(ch.isalnum() for ch in word)


def _vocab(tokenizer: Any) -> dict[str, int]:
    get = getattr(tokenizer, "get_vocab", None)
    if not callable(get):
        raise ConfigError(
            f"a tokenizer needs get_vocab(); got {type(tokenizer).__name__}. Pass a transformers tokenizer or a "
            "tokenizers.Tokenizer"
        )
    vocab = get()
    return {str(k): int(v) for k, v in vocab.items()}


def _special_ids(tokenizer: Any) -> set[int]:
    ids = getattr(tokenizer, "all_special_ids", None)
    out = {int(i) for i in ids} if isinstance(ids, list | tuple) else set()
    unk = getattr(tokenizer, "unk_token_id", None)
    if isinstance(unk, int):
        out.add(unk)
    return out


def _encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (transformers tokenizers and raw ``tokenizers``)."""
    if not texts:
        return []
    if hasattr(tokenizer, "encode_batch") and not hasattr(tokenizer, "convert_tokens_to_ids"):
        return [list(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _tokenizer_name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


@dataclass(frozen=True)
class SharedAnchors:
    """Anchor words and, for each tokenizer, the one token id each word gets.

    Attributes:
        words: the anchor words (no leading space), sorted; ``len(anchors)`` of them.
        token_ids: one tuple per tokenizer, in the order the tokenizers were given, each holding one id per word.
        weights: one positive weight per word (``None``: all 1). Used by the target search and the linear fit.
        styles: the detected style of each tokenizer.
    """

    words: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]
    weights: tuple[float, ...] | None = None
    styles: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.words)
        if any(len(ids) != n for ids in self.token_ids):
            raise ConfigError(
                f"SharedAnchors: every tokenizer needs one id per word ({n} words), "
                f"got {[len(i) for i in self.token_ids]}"
            )
        if self.weights is not None and (len(self.weights) != n or any(not w > 0 for w in self.weights)):
            raise ConfigError(f"SharedAnchors: weights must be {n} positive numbers, one per word")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def num_tokenizers(self) -> int:
        """How many tokenizers the anchors are shared by."""
        return len(self.token_ids)

    def ids(self, which: int) -> torch.Tensor:
        """The anchor token ids of tokenizer ``which`` (its position in the call), shape ``(n_anchors,)``."""
        if not 0 <= which < len(self.token_ids):
            raise ConfigError(f"tokenizer index {which} is out of range: the anchors hold {len(self.token_ids)}")
        return torch.tensor(self.token_ids[which], dtype=torch.long)

    def embeddings(self, embeddings: torch.Tensor, which: int) -> torch.Tensor:
        """The anchor rows of a model's embedding matrix.

        Args:
            embeddings: the input embeddings of tokenizer ``which``'s model, shape ``(vocab, dim)``, as the model
                feeds them (:func:`tpv.models.input_embeddings`).
            which: the tokenizer's position.

        Returns:
            Float tensor of shape ``(n_anchors, dim)``.

        Raises:
            ModelError: an anchor id is outside the embedding matrix (the embeddings belong to another model).
        """
        ids = self.ids(which)  # (n,)
        if len(ids) and int(ids.max()) >= embeddings.shape[0]:
            raise ModelError(
                f"anchor id {int(ids.max())} is outside the embedding matrix of {embeddings.shape[0]} rows: the "
                "embeddings do not belong to the tokenizer the anchors were found with"
            )
        return embeddings[ids.to(embeddings.device)]  # (n, dim)

    def weight_tensor(self) -> torch.Tensor | None:
        """The weights as a float tensor of shape ``(n_anchors,)``, or ``None`` when unweighted."""
        return None if self.weights is None else torch.tensor(self.weights, dtype=torch.float32)

    def restrict(self, words: Iterable[str]) -> SharedAnchors:
        """Only the given words (each must be an anchor).

        Raises:
            AnchorError: a word is not among the anchors.
        """
        wanted = [_clean_word(w) for w in words]
        index = {w: i for i, w in enumerate(self.words)}
        missing = [w for w in wanted if w not in index]
        if missing:
            raise AnchorError(f"{missing} are not shared anchors (not one token in every tokenizer)")
        keep = sorted({index[w] for w in wanted})
        return SharedAnchors(
            words=tuple(self.words[i] for i in keep),
            token_ids=tuple(tuple(ids[i] for i in keep) for ids in self.token_ids),
            weights=None if self.weights is None else tuple(self.weights[i] for i in keep),
            styles=self.styles,
        )

    def weighted(self, weights: Mapping[str, float], *, default: float = 1.0) -> SharedAnchors:
        """The same anchors with weights: ``weights[word]`` where given, ``default`` elsewhere.

        Raises:
            AnchorError: a weighted word is not among the anchors.
            ConfigError: a weight is not positive.
        """
        clean = {_clean_word(w): float(v) for w, v in weights.items()}
        missing = sorted(set(clean) - set(self.words))
        if missing:
            raise AnchorError(f"cannot weight {missing}: not shared anchors (not one token in every tokenizer)")
        values = tuple(clean.get(w, default) for w in self.words)
        if any(not v > 0 for v in values):
            raise ConfigError(f"anchor weights must be positive; got default={default} and {dict(clean)}")
        return SharedAnchors(self.words, self.token_ids, values, self.styles)

    def summary(self, *, examples: int = 12) -> dict[str, Any]:
        """A JSON-serializable description (count, styles, a few words, weighting), for provenance records."""
        return {
            "count": len(self.words),
            "styles": list(self.styles),
            "examples": list(self.words[:examples]),
            "weighted": self.weights is not None,
        }


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _clean_word(word: str) -> str:
    if not isinstance(word, str) or not word.strip():
        raise ConfigError(f"an anchor word must be a non-empty string, got {word!r}")
    return word.strip()


def _candidates(tokenizer: Any, alpha_only: bool, min_length: int) -> tuple[set[str], str]:
    vocab = _vocab(tokenizer)
    style = detect_style(vocab)
    words = set()
    for token in vocab:
        word = normalize_token(token, style)
        if word is not None and _keep_word(word, alpha_only, min_length):
            words.add(word)
    return words, style


def _single_token_ids(tokenizer: Any, words: list[str]) -> dict[str, int]:
    """``word -> id`` for the words the tokenizer encodes as one non-special token after a space."""
    specials = _special_ids(tokenizer)
    out: dict[str, int] = {}
    for word, ids in zip(words, _encode_many(tokenizer, [" " + w for w in words])):
        if len(ids) == 1 and ids[0] not in specials:
            out[word] = int(ids[0])
    return out


def find_shared_anchors(
    *tokenizers: Any,
    only: Iterable[str] | None = None,
    weights: Mapping[str, float] | None = None,
    max_anchors: int | None = None,
    min_anchors: int | None = None,
    seed: int = 0,
    alpha_only: bool = True,
    min_length: int = 1,
) -> SharedAnchors:
    """The words every tokenizer maps to a single token, with their ids in each.

    Args:
        *tokenizers: two or more tokenizers (``transformers`` tokenizers or ``tokenizers.Tokenizer``).
        only: keep only these words (e.g. a task's label words ``(" negative", " positive")``; surrounding spaces
            are stripped). Each must be shared.
        weights: per-word weights (e.g. ``{"negative": 20, "positive": 20}``), 1 for other words. Each weighted
            word must be shared.
        max_anchors: keep at most this many, a seeded random subset that always holds the weighted words.
        min_anchors: refuse fewer shared anchors than this; default :data:`DEFAULT_MIN_ANCHORS`, or the number of
            ``only`` words when given.
        seed: seed of the ``max_anchors`` subset.
        alpha_only: keep only alphabetic words (else any word with a letter or digit).
        min_length: shortest word kept.

    Returns:
        The :class:`SharedAnchors`, words sorted.

    Raises:
        AnchorError: fewer than ``min_anchors`` shared words, or an ``only``/``weights`` word that is not shared.
        ConfigError: fewer than two tokenizers, or bad numbers.
    """
    if len(tokenizers) < 2:
        raise ConfigError(f"find_shared_anchors needs two or more tokenizers, got {len(tokenizers)}")
    if max_anchors is not None and not _is_positive_int(max_anchors):
        raise ConfigError(f"max_anchors must be a positive integer or None, got {max_anchors!r}")
    if not _is_positive_int(min_length):
        raise ConfigError(f"min_length must be a positive integer, got {min_length!r}")
    wanted = None if only is None else list(dict.fromkeys(_clean_word(w) for w in only))
    if wanted is not None and not wanted:
        raise ConfigError("only= is empty: give the words to keep, or None for all shared words")
    weight_map = {_clean_word(w): float(v) for w, v in (weights or {}).items()}
    if any(not v > 0 for v in weight_map.values()):
        raise ConfigError(f"anchor weights must be positive numbers, got {weight_map}")

    styles: list[str] = []
    if wanted is not None:
        common = set(wanted)
        for tok in tokenizers:
            styles.append(detect_style(_vocab(tok)))
    else:
        common_opt: set[str] | None = None
        for tok in tokenizers:
            words, style = _candidates(tok, alpha_only, min_length)
            styles.append(style)
            common_opt = words if common_opt is None else common_opt & words
        common = common_opt or set()
    common |= set(weight_map)
    ordered = sorted(common)
    per_tok = [_single_token_ids(tok, ordered) for tok in tokenizers]
    kept = [w for w in ordered if all(w in ids for ids in per_tok)]
    # Two words sharing an id in one tokenizer (e.g. case folding) would make one anchor count twice: keep the first.
    seen: list[set[int]] = [set() for _ in tokenizers]
    unique = []
    for w in kept:
        ids = [m[w] for m in per_tok]
        if any(i in s for i, s in zip(ids, seen)):
            continue
        for i, s in zip(ids, seen):
            s.add(i)
        unique.append(w)
    names = ", ".join(_tokenizer_name(t) for t in tokenizers)
    for label, must in (("only", wanted or []), ("weights", list(weight_map))):
        missing = [w for w in must if w not in unique]
        if missing:
            raise AnchorError(
                f"{label}= names {missing}, which are not one token in every tokenizer ({names}) after a space. "
                "Fix: choose words each tokenizer keeps whole (check with tokenizer.tokenize(' word'))"
            )
    if max_anchors is not None and len(unique) > max_anchors:
        must_keep = [w for w in unique if w in weight_map]
        rest = [w for w in unique if w not in weight_map]
        rng = random.Random(seed)
        chosen = set(must_keep[:max_anchors]) | set(rng.sample(rest, max(0, max_anchors - len(must_keep))))
        unique = [w for w in unique if w in chosen]
    floor = (len(wanted) if wanted is not None else DEFAULT_MIN_ANCHORS) if min_anchors is None else min_anchors
    if len(unique) < floor:
        raise AnchorError(
            f"the tokenizers ({names}; styles {', '.join(styles)}) share only {len(unique)} single-token words, "
            f"fewer than the {floor} anchors needed to encode a prompt relative to them. Transfer needs models "
            "whose vocabularies overlap (natural-language subword tokenizers do by thousands); lower min_anchors= "
            "only if you accept a coarse encoding"
        )
    weight_values = None if not weight_map else tuple(weight_map.get(w, 1.0) for w in unique)
    return SharedAnchors(
        words=tuple(unique),
        token_ids=tuple(tuple(m[w] for w in unique) for m in per_tok),
        weights=weight_values,
        styles=tuple(styles),
    )


def count_shared_anchors(tok_a: Any, tok_b: Any, *, alpha_only: bool = True, min_length: int = 1) -> int:
    """How many words two tokenizers both keep as one token (the size of :func:`find_shared_anchors`' set).

    Args:
        tok_a: a tokenizer.
        tok_b: another tokenizer.
        alpha_only: count only alphabetic words.
        min_length: shortest word counted.

    Returns:
        The number of shared anchors (never raises for too few).
    """
    return len(find_shared_anchors(tok_a, tok_b, min_anchors=0, alpha_only=alpha_only, min_length=min_length))
