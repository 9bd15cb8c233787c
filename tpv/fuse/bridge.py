"""The gradient bridge and a multi-model discrete prompt search (FUSE, Williams & Kolter, arXiv 2408.04816).

A discrete prompt lives in the *source* model's vocabulary. Every other model reads the same text through its
own tokenizer, so there is no gradient from its loss back to the source tokens. FUSE supplies one word by word:

1. :func:`align_words` splits the prompt text into *segments* (whitespace-separated words, merged when a token of
   either tokenizer straddles two words) and records, for each segment, its source token span (``s`` tokens) and
   its target token span (``t`` tokens).
2. A segment is a ``t``-subtoken target word: its source embeddings, stacked as ``(1, d_s, t)`` exactly as in the
   fit (first ``min(s, t)`` source tokens, zero-padded), map to the target space by ``X *_t G_t``.
3. :class:`BridgeFunction` is the autograd function carrying that map: its backward sends a target-space gradient
   ``dL/dY`` (``(1, d_t, t)`` per segment) to the source space by the adjoint of the map,
   ``dL/dX = dL/dY *_t G_t^T`` (:func:`~tpv.fuse.tproduct.t_transpose`), and drops it on the segment's first
   ``min(s, t)`` source tokens. Its forward either returns the embeddings of the tokens the target model really
   reads (``target_embeds`` given: a straight-through estimator, the way FUSE uses it) or the linear map itself
   (``target_embeds=None``; then the backward is the exact gradient of the forward, which ``gradcheck``
   verifies).

   Stated fallback: a segment longer than ``K`` target subtokens has no map; it gets zero gradient (and zeros in
   the linear forward). Source tokens beyond the first ``t`` of a segment get zero gradient, as they were
   truncated in the fit.

4. :func:`optimize_prompt` searches for one discrete prompt against a weighted sum of losses of several models
   (:class:`Member`), the source model's own gradient taken directly and the others' carried through their maps:
   a greedy coordinate (GCG-style) search over single-token swaps ranked by the linearized objective
   ``-(grad . e_v)``, or a beam search over them (``beam_width > 1``). Swaps are scored exactly by evaluating
   the objective on every candidate; only candidates whose text re-tokenizes to the same source ids are kept.

:class:`LabelWordLoss` is the objective for classification by label words (rank classification at the last
position), used by the benchmark on Rotten Tomatoes; it is defined with the other rank-classification scorers in
:mod:`tpv.engine.prompt_scoring` and re-exported here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tpv.engine.prompt_scoring import LabelWordLoss
from tpv.errors import ConfigError
from tpv.fuse.maps import FuseMap
from tpv.fuse.tproduct import t_product, t_transpose
from tpv.spaces import EmbeddingSpace

__all__ = [
    "Alignment",
    "BridgeFunction",
    "BridgeResult",
    "LabelWordLoss",
    "Member",
    "PromptLoss",
    "SearchResult",
    "Segment",
    "align_words",
    "allowed_tokens",
    "bridge_prompt",
    "optimize_prompt",
    "pull_back",
    "push_forward",
    "source_gradient",
]


# -- word alignment -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A run of words and the token spans both tokenizers give it (``[start, end)`` into each id list)."""

    text: str
    source_start: int
    source_end: int
    target_start: int
    target_end: int

    @property
    def source_len(self) -> int:
        """``s``: source tokens of the segment."""
        return self.source_end - self.source_start

    @property
    def target_len(self) -> int:
        """``t``: target tokens of the segment (the ``k`` of the map used)."""
        return self.target_end - self.target_start


@dataclass(frozen=True)
class Alignment:
    """A text tokenized by two tokenizers, with its word segments.

    Attributes:
        text: the text.
        source_ids: source token ids (no special tokens).
        target_ids: target token ids (no special tokens).
        segments: the segments, in order, covering every token of both sides.
    """

    text: str
    source_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    segments: tuple[Segment, ...]


def _token_words(text: str, offsets: Sequence[tuple[int, int]], word_of: list[int]) -> list[tuple[int, int]]:
    """``(first word, last word)`` of each token by its non-space characters; ``(-1, -1)`` for blank tokens."""
    out = []
    for a, b in offsets:
        chars = [i for i in range(a, min(b, len(text))) if not text[i].isspace()]
        out.append((word_of[chars[0]], word_of[chars[-1]]) if chars else (-1, -1))
    return out


def _fill_blanks(spans: list[tuple[int, int]], n_words: int) -> list[tuple[int, int]]:
    """Blank tokens (whitespace, offset-less bytes) join the next token's word, else the previous one's."""
    out = list(spans)
    nxt = -1
    for i in range(len(out) - 1, -1, -1):
        if out[i][0] < 0:
            out[i] = (nxt, nxt)
        else:
            nxt = out[i][0]
    prev = n_words - 1
    for i, (a, b) in enumerate(out):
        if a < 0:
            out[i] = (prev, prev)
        else:
            prev = b
    return out


def _encode_offsets(tokenizer: Any, text: str, what: str) -> tuple[list[int], list[tuple[int, int]]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"the {what} tokenizer cannot return character offsets ({exc}); use a fast tokenizer"
        ) from None
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]  # type: ignore[misc]


def align_words(text: str, source_tokenizer: Any, target_tokenizer: Any) -> Alignment:
    """Tokenize ``text`` with both tokenizers and split it into word segments.

    A word is a maximal run of non-whitespace characters. A token belongs to the word holding its first
    non-space character (a whitespace-only token to the next word); a token whose characters reach into further
    words merges them into one segment, so every token of either side lies in exactly one segment.

    Args:
        text: the text (a prompt).
        source_tokenizer: fast tokenizer of the source model.
        target_tokenizer: fast tokenizer of the target model.

    Returns:
        The :class:`Alignment`.

    Raises:
        ConfigError: a tokenizer without offsets, or token spans that are not contiguous.
    """
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    word_of = [-1] * len(text)
    for w, (a, b) in enumerate(words):
        for i in range(a, b):
            word_of[i] = w
    s_ids, s_off = _encode_offsets(source_tokenizer, text, "source")
    t_ids, t_off = _encode_offsets(target_tokenizer, text, "target")
    if not words:
        return Alignment(text, tuple(s_ids), tuple(t_ids), ())
    s_span = _fill_blanks(_token_words(text, s_off, word_of), len(words))
    t_span = _fill_blanks(_token_words(text, t_off, word_of), len(words))
    # union of word ranges -> segment id per word
    reach = list(range(len(words)))  # reach[w]: the last word merged with w
    for a, b in (*s_span, *t_span):
        for w in range(a, b + 1):
            reach[w] = max(reach[w], b)
    seg_of = [0] * len(words)
    seg, end = 0, reach[0]
    for w in range(len(words)):
        if w > end:
            seg += 1
            end = reach[w]
        end = max(end, reach[w])
        seg_of[w] = seg
    n_seg = seg + 1

    def ranges(spans: list[tuple[int, int]], side: str) -> list[tuple[int, int]]:
        out = [(-1, -1)] * n_seg
        for i, (a, _) in enumerate(spans):
            g = seg_of[a]
            lo, hi = out[g]
            if lo >= 0 and hi != i:
                raise ConfigError(f"the {side} tokens of segment {g} of {text!r} are not contiguous")
            out[g] = (i if lo < 0 else lo, i + 1)
        return out

    s_rng, t_rng = ranges(s_span, "source"), ranges(t_span, "target")
    first_word = [seg_of.index(g) for g in range(n_seg)]
    last_word = [len(seg_of) - 1 - seg_of[::-1].index(g) for g in range(n_seg)]
    segments = []
    for g in range(n_seg):
        (sa, sb), (ta, tb) = s_rng[g], t_rng[g]
        seg_text = text[words[first_word[g]][0] : words[last_word[g]][1]]
        segments.append(Segment(seg_text, max(sa, 0), max(sb, 0), max(ta, 0), max(tb, 0)))
    return Alignment(text, tuple(s_ids), tuple(t_ids), tuple(segments))


# -- the bridge ---------------------------------------------------------------------------------------------------


def _groups(alignment: Alignment, k_max: int) -> dict[int, list[Segment]]:
    out: dict[int, list[Segment]] = {}
    for seg in alignment.segments:
        if seg.source_len >= 1 and 1 <= seg.target_len <= k_max:
            out.setdefault(seg.target_len, []).append(seg)
    return out


def push_forward(x_source: torch.Tensor, alignment: Alignment, fmap: FuseMap) -> torch.Tensor:
    """The linear FUSE map of a whole prompt, segment by segment: ``X_seg *_t G_t``.

    Args:
        x_source: source embeddings of the prompt, ``(n_s, d_s)`` with ``n_s = len(alignment.source_ids)``.
        alignment: from :func:`align_words`.
        fmap: the map source -> target.

    Returns:
        ``(n_t, d_t)``: predicted target embeddings (zeros for segments longer than ``K``).
    """
    n_t = len(alignment.target_ids)
    out = x_source.new_zeros(n_t, fmap.target_dim)  # (n_t, d_t)
    for k, segs in _groups(alignment, fmap.max_subtokens).items():
        xs = x_source.new_zeros(len(segs), fmap.source_dim, k)  # (m, d_s, k)
        for i, seg in enumerate(segs):
            m = min(seg.source_len, k)
            xs[i, :, :m] = x_source[seg.source_start : seg.source_start + m].T
        ys = t_product(xs, fmap.maps[k].to(x_source.dtype))  # (m, d_t, k)
        for i, seg in enumerate(segs):
            out[seg.target_start : seg.target_end] = ys[i].T
    return out


def pull_back(grad_target: torch.Tensor, alignment: Alignment, fmap: FuseMap) -> torch.Tensor:
    """Carry a target-space gradient to the source space: ``dL/dX_seg = dL/dY_seg *_t G_t^T`` per segment.

    This is the adjoint of :func:`push_forward`.

    Args:
        grad_target: ``(n_t, d_t)``, the gradient of a loss with respect to the target prompt embeddings.
        alignment: from :func:`align_words`.
        fmap: the map source -> target.

    Returns:
        ``(n_s, d_s)``: the bridged gradient (zeros where the fallback applies).
    """
    n_s = len(alignment.source_ids)
    out = grad_target.new_zeros(n_s, fmap.source_dim)  # (n_s, d_s)
    for k, segs in _groups(alignment, fmap.max_subtokens).items():
        gy = torch.stack([grad_target[s.target_start : s.target_end].T for s in segs])  # (m, d_t, k)
        gx = t_product(gy, t_transpose(fmap.maps[k].to(grad_target.dtype)))  # (m, d_s, k)
        for i, seg in enumerate(segs):
            m = min(seg.source_len, k)
            out[seg.source_start : seg.source_start + m] += gx[i, :, :m].T
    return out


class BridgeFunction(torch.autograd.Function):
    """Autograd function from source prompt embeddings to target prompt embeddings through the FUSE maps.

    ``BridgeFunction.apply(x_source, target_embeds, alignment, fmap)``:

    * ``x_source``: ``(n_s, d_s)``, requires grad.
    * ``target_embeds``: ``(n_t, d_t)`` embeddings of the tokens the target model reads (straight-through:
      returned as they are), or ``None`` to return :func:`push_forward` of ``x_source``.
    * returns ``(n_t, d_t)``; the backward is :func:`pull_back`.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x_source: torch.Tensor,
        target_embeds: torch.Tensor | None,
        alignment: Alignment,
        fmap: FuseMap,
    ) -> torch.Tensor:
        """Map (or pass through) the prompt; see the class docstring."""
        ctx.alignment = alignment
        ctx.fmap = fmap
        if target_embeds is None:
            return push_forward(x_source.detach(), alignment, fmap)
        return target_embeds.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        """The bridged gradient for ``x_source``; ``None`` for the other inputs."""
        return pull_back(grad_output, ctx.alignment, ctx.fmap), None, None, None


def bridge_prompt(
    x_source: torch.Tensor,
    alignment: Alignment,
    fmap: FuseMap,
    *,
    target_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply :class:`BridgeFunction` (see there).

    Args:
        x_source: ``(n_s, d_s)``.
        alignment: from :func:`align_words`; must hold ``n_s`` source and ``n_t`` target ids.
        fmap: the map source -> target.
        target_embeds: ``(n_t, d_t)`` true target embeddings (straight-through), or ``None`` (linear map).

    Returns:
        ``(n_t, d_t)``.

    Raises:
        ConfigError: shapes that do not fit the alignment or the map.
    """
    n_s, n_t = len(alignment.source_ids), len(alignment.target_ids)
    if x_source.ndim != 2 or tuple(x_source.shape) != (n_s, fmap.source_dim):
        raise ConfigError(f"x_source must have shape ({n_s}, {fmap.source_dim}), got {tuple(x_source.shape)}")
    if target_embeds is not None and tuple(target_embeds.shape) != (n_t, fmap.target_dim):
        raise ConfigError(f"target_embeds must have shape ({n_t}, {fmap.target_dim}), got {tuple(target_embeds.shape)}")
    out: torch.Tensor = BridgeFunction.apply(x_source, target_embeds, alignment, fmap)  # type: ignore[no-untyped-call]
    return out


# -- objectives ---------------------------------------------------------------------------------------------------


class PromptLoss(Protocol):
    """A loss of one model as a function of a prompt, by embeddings (differentiable) or by token ids."""

    def loss_from_embeds(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Scalar loss for prompt embeddings ``(P, d)`` (as the model's embedding layer outputs them)."""
        ...

    def losses(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Losses ``(C,)`` of ``C`` prompts given as token ids, without gradients."""
        ...


# -- the search ---------------------------------------------------------------------------------------------------


@dataclass
class Member:
    """One model of a multi-model objective.

    Attributes:
        name: label for results.
        space: its embedding space (tokenizer and input embeddings).
        loss: its :class:`PromptLoss`.
        weight: its weight in the objective.
        fmap: the FUSE map from the search's source space to this model's space; ``None`` for the source model
            itself (its gradient is taken directly).
    """

    name: str
    space: EmbeddingSpace
    loss: PromptLoss
    weight: float = 1.0
    fmap: FuseMap | None = None


@dataclass
class BridgeResult:
    """What :func:`optimize_prompt` found.

    Attributes:
        ids: the prompt's source token ids.
        text: its text.
        objective: its weighted objective.
        member_losses: each member's loss.
        history: one record per step (step, objective, member losses, candidates evaluated, seconds).
        seconds: total wall time.
    """

    ids: list[int]
    text: str
    objective: float
    member_losses: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


SearchResult = BridgeResult
"""The former name of :class:`BridgeResult` (kept for compatibility; :class:`tpv.search.SearchResult` is the
coefficient search's result)."""

_WORD_START = re.compile(r"^ [A-Za-z]{2,}$")
_BARE_WORD = re.compile(r"^[A-Za-z]{2,}$")


def allowed_tokens(tokenizer: Any, rows: int, *, pattern: re.Pattern[str] | None = None) -> torch.Tensor:
    """Source tokens a search may swap in: by default whole words.

    By default a token is allowed when it decodes to a space and two or more ASCII letters (a word-start piece of
    a BPE or SentencePiece vocabulary); for tokenizers whose tokens carry no space (word-level vocabularies) it is
    two or more letters. Special tokens are never allowed.

    Args:
        tokenizer: the source tokenizer.
        rows: rows of the source embedding matrix (ids beyond the tokenizer's vocabulary are excluded).
        pattern: a decoded-token pattern to allow instead of the default.

    Returns:
        Bool tensor ``(rows,)``.

    Raises:
        ConfigError: no token is allowed.
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    n = min(rows, len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    patterns = [pattern] if pattern is not None else [_WORD_START, _BARE_WORD]
    for pat in patterns:
        ok = torch.zeros(rows, dtype=torch.bool)
        for i, t in enumerate(texts):
            if i not in special and pat.match(t):
                ok[i] = True
        if bool(ok.any()):
            return ok
    raise ConfigError(f"no token of the source vocabulary matches {patterns[-1].pattern!r}; pass allowed= explicitly")


def _encode_plain(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _objective(members: Sequence[Member], texts: Sequence[str], source_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """Weighted objective ``(C,)`` and per-member losses of candidate prompts."""
    total = torch.zeros(len(texts), dtype=torch.float64)
    for m in members:
        prompts = source_ids if m.fmap is None else [_encode_plain(m.space.tokenizer, t) for t in texts]
        total += m.weight * m.loss.losses(prompts).double()
    return total


def _member_losses(members: Sequence[Member], text: str, ids: Sequence[int]) -> dict[str, float]:
    out = {}
    for m in members:
        prompt = list(ids) if m.fmap is None else _encode_plain(m.space.tokenizer, text)
        out[m.name] = float(m.loss.losses([prompt])[0])
    return out


def source_gradient(members: Sequence[Member], source: EmbeddingSpace, ids: Sequence[int]) -> torch.Tensor:
    """Gradient of the weighted objective with respect to the source prompt embeddings, ``(n_s, d_s)``.

    The source member's gradient is exact; every other member's is carried through :class:`BridgeFunction`
    (straight-through: its loss is evaluated on the tokens it really reads).
    """
    text = source.tokenizer.decode(list(ids))
    x = source.embeddings[torch.tensor(list(ids))].clone().requires_grad_(True)  # (n_s, d_s)
    total = x.new_zeros(())
    for m in members:
        if m.fmap is None:
            total = total + m.weight * m.loss.loss_from_embeds(x)
            continue
        al = align_words(text, source.tokenizer, m.space.tokenizer)
        if list(al.source_ids) != list(ids):
            raise ConfigError(f"the prompt ids do not round-trip through its text {text!r}; re-encode the prompt first")
        y_true = m.space.embeddings[torch.tensor(list(al.target_ids), dtype=torch.long)]  # (n_t, d_t)
        y = bridge_prompt(x, al, m.fmap, target_embeds=y_true)
        total = total + m.weight * m.loss.loss_from_embeds(y)
    (grad,) = torch.autograd.grad(total, x)
    return grad


def optimize_prompt(
    members: Sequence[Member],
    source: EmbeddingSpace,
    init: str,
    *,
    steps: int = 10,
    topk: int = 64,
    candidates: int = 32,
    beam_width: int = 1,
    allowed: torch.Tensor | None = None,
    seed: int = 0,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> BridgeResult:
    """Optimize one discrete prompt (in the source vocabulary) against a weighted sum of several models' losses.

    Each step, for every prompt in the beam: the objective's gradient in the source space
    (:func:`source_gradient`), the ``topk`` best swaps per position by ``-(grad . e_v)``, ``candidates`` swaps
    drawn from them (position uniform, token uniform among that position's top-k), candidates that do not
    re-tokenize to themselves dropped, all scored exactly; the beam becomes the ``beam_width`` best prompts seen
    this step (``beam_width=1``: greedy coordinate search). The best prompt ever seen is returned.

    Args:
        members: the models, with weights and maps (exactly one usually has ``fmap=None``: the source model;
            none is allowed, then every gradient is bridged).
        source: the source space whose tokens are swapped.
        init: the starting prompt text.
        steps: search steps.
        topk: swap candidates kept per position.
        candidates: swaps evaluated per beam element and step.
        beam_width: prompts kept between steps.
        allowed: bool ``(vocab_rows,)`` of swappable tokens (default :func:`allowed_tokens`).
        seed: seed of the draws.
        on_step: called with each step's record (progress reporting; the library never prints).

    Returns:
        The :class:`BridgeResult`.

    Raises:
        ConfigError: no members, a member whose map does not start from ``source``, bad options, or an ``init``
            that does not round-trip through the source tokenizer.
    """
    if not members:
        raise ConfigError("optimize_prompt needs at least one member")
    for name, v in (("steps", steps), ("topk", topk), ("candidates", candidates), ("beam_width", beam_width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    for m in members:
        if m.fmap is not None and m.fmap.source_dim != source.dim:
            raise ConfigError(
                f"member {m.name!r}: its map starts from width {m.fmap.source_dim}, the source space has {source.dim}"
            )
        if m.fmap is not None:
            m.fmap.check(source, m.space)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    ids0 = _encode_plain(source.tokenizer, init)
    if not ids0 or _encode_plain(source.tokenizer, source.tokenizer.decode(ids0)) != ids0:
        raise ConfigError(f"init {init!r} is empty or does not round-trip through the source tokenizer")
    mask = allowed if allowed is not None else allowed_tokens(source.tokenizer, source.embeddings.shape[0])
    emb = source.embeddings  # (V, d_s)
    text0 = source.tokenizer.decode(ids0)
    obj0 = float(_objective(members, [text0], [ids0])[0])
    beam: list[tuple[float, list[int]]] = [(obj0, ids0)]
    best = (obj0, ids0)
    history: list[dict[str, Any]] = [{"step": 0, "objective": obj0, "evaluated": 1, "seconds": 0.0}]
    for step in range(1, steps + 1):
        pool: dict[tuple[int, ...], None] = {}
        for _, ids in beam:
            grad = source_gradient(members, source, ids)  # (n_s, d_s)
            scores = -(grad @ emb.T)  # (n_s, V)
            scores[:, ~mask] = -torch.inf
            top = scores.topk(min(topk, int(mask.sum())), dim=1).indices  # (n_s, topk)
            for _ in range(candidates):
                pos = int(torch.randint(len(ids), (1,), generator=gen))
                tok = int(top[pos, int(torch.randint(top.shape[1], (1,), generator=gen))])
                cand = list(ids)
                cand[pos] = tok
                if cand != ids:
                    pool[tuple(cand)] = None
        cands = [list(c) for c in pool]
        texts = [source.tokenizer.decode(c) for c in cands]
        keep = [i for i, (c, t) in enumerate(zip(cands, texts)) if _encode_plain(source.tokenizer, t) == c]
        cands, texts = [cands[i] for i in keep], [texts[i] for i in keep]
        scored = list(zip(_objective(members, texts, cands).tolist(), cands)) if cands else []
        merged = sorted([*scored, *beam], key=lambda x: x[0])
        beam = []
        seen: set[tuple[int, ...]] = set()
        for obj, c in merged:
            if tuple(c) not in seen:
                seen.add(tuple(c))
                beam.append((obj, c))
            if len(beam) == beam_width:
                break
        if beam[0][0] < best[0]:
            best = beam[0]
        record = {
            "step": step,
            "objective": best[0],
            "text": source.tokenizer.decode(best[1]),
            "evaluated": len(cands),
            "seconds": round(time.perf_counter() - start, 2),
        }
        history.append(record)
        if on_step is not None:
            on_step(record)
    text = source.tokenizer.decode(best[1])
    return BridgeResult(
        ids=list(best[1]),
        text=text,
        objective=best[0],
        member_losses=_member_losses(members, text, best[1]),
        history=history,
        seconds=time.perf_counter() - start,
    )
