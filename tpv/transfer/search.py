"""Target search: find a target-model prompt whose relative encoding matches a source prompt's (PTfer).

Given the relative code of a source prompt (its cosine similarities to the source model's anchor embeddings,
:mod:`tpv.transfer.relative`), the target prompt is found by gradient descent on the target's side: a free
candidate ``c`` of shape ``(rows, target_dim)`` is optimized with Adam so that its code against the *target*
anchor embeddings matches the source code, row by row, under a cosine loss::

    loss(c) = mean_i [ 1 - cos( rel_t(scale(c))_i * m_i * sqrt(w), rel_s(p)_i * sqrt(w) ) ]

where ``m`` is the top-k mask of the source code (when ``top_k`` is set) and ``w`` the anchor weights. With
several sources (multi-source transfer) the loss is the mean of each source's loss, each against its own anchor
set. ``scale`` fixes what the code cannot see, the rows' size:

* ``norm="standardize"`` (PTfer): the candidate is standardized to the target embedding matrix's global mean
  and standard deviation at every step (``(c - mean(c)) / std(c) * std_t + mean_t``), so the prompt looks like
  typical target embeddings;
* ``norm="source-ratio"``: each row keeps the direction of ``c`` and gets the size of the source row relative to
  the source embeddings, ``||p_i|| * mean_norm_t / mean_norm_s``; a prompt tuned far from the vocabulary stays
  as far from it on the target.

**Model selection uses target data.** PTfer's protocol scores the candidate every ``eval_every`` steps on the
*target model's validation set* (``score_fn``) and keeps the best-scoring candidate; the transfer is then
"zero-shot" in that no target gradient step is taken on task data, but the choice among candidates does use
labelled target dev examples. Without ``score_fn`` the last candidate is returned and no target data is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F  # noqa: N812

from tpv.errors import ConfigError, TrainingError
from tpv.transfer.relative import encode, get_projection, keep_top_k

__all__ = [
    "CodeSearchResult",
    "Match",
    "NormMode",
    "SearchConfig",
    "SearchResult",
    "SearchStep",
    "make_match",
    "search_target_prompt",
]

NormMode = Literal["standardize", "source-ratio"]
NORM_MODES: tuple[str, ...] = get_args(NormMode)

ScoreFn = Callable[[torch.Tensor], float]
"""``score_fn(prompt (rows, dim)) -> float``: higher is better (e.g. accuracy on the target's validation set)."""


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the target search (PTfer's defaults: 2000 steps, lr 5e-3, scored every 50 steps)."""

    steps: int = field(default=2000, metadata={"help": "Adam steps on the candidate."})
    lr: float = field(default=5e-3, metadata={"help": "Adam learning rate."})
    top_k: int | None = field(
        default=None, metadata={"help": "Match only each source row's k largest similarities (None: all)."}
    )
    absolute_top_k: bool = field(default=False, metadata={"help": "Rank similarities by absolute value for top_k."})
    projection: str = field(default="cosine", metadata={"help": "Relative projection name (see PROJECTIONS)."})
    norm: NormMode = field(
        default="standardize", metadata={"help": "'standardize' (PTfer) or 'source-ratio': how rows get their size."}
    )
    eval_every: int = field(default=50, metadata={"help": "Score the candidate every N steps (needs score_fn)."})
    seed: int = field(default=0, metadata={"help": "Seed of the candidate's random init."})

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SearchConfig.{name} must be a positive integer, got {value!r}")
        lr_ok = isinstance(self.lr, int | float) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
        if not (lr_ok and self.lr > 0):
            raise ConfigError(f"SearchConfig.lr must be a positive number, got {self.lr!r}")
        top_k_ok = isinstance(self.top_k, int) and not isinstance(self.top_k, bool) and self.top_k >= 1
        if self.top_k is not None and not top_k_ok:
            raise ConfigError(f"SearchConfig.top_k must be a positive integer or None, got {self.top_k!r}")
        if self.norm not in NORM_MODES:
            raise ConfigError(f"SearchConfig.norm must be one of {', '.join(NORM_MODES)}; got {self.norm!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"SearchConfig.seed must be a non-negative integer, got {self.seed!r}")
        get_projection(self.projection)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serializable dict."""
        return asdict(self)


@dataclass(frozen=True)
class Match:
    """One source to match: its relative code and the target anchors it is to be matched against.

    Attributes:
        code: the source prompt's relative code (top-k masked when asked), shape ``(rows, n_anchors)``.
        target_anchors: the same anchors' target embeddings, shape ``(n_anchors, target_dim)``.
        mask: top-k mask of ``code`` (1.0 kept), shape ``(rows, n_anchors)``; all ones without top-k.
        weights: anchor weights, shape ``(n_anchors,)``, or ``None``.
        row_norms: the size each target row should get under ``norm="source-ratio"``, shape ``(rows,)``.
    """

    code: torch.Tensor
    target_anchors: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor | None = None
    row_norms: torch.Tensor | None = None


def make_match(
    source_prompt: torch.Tensor,
    source_anchors: torch.Tensor,
    target_anchors: torch.Tensor,
    *,
    config: SearchConfig,
    weights: torch.Tensor | None = None,
    source_mean_norm: float | None = None,
    target_mean_norm: float | None = None,
) -> Match:
    """Encode a source prompt against its anchors and pair it with the target anchors.

    Args:
        source_prompt: shape ``(rows, source_dim)``.
        source_anchors: the anchors' source embeddings, shape ``(n_anchors, source_dim)``.
        target_anchors: the same anchors' target embeddings, shape ``(n_anchors, target_dim)``.
        config: the search settings (projection, top-k).
        weights: anchor weights, shape ``(n_anchors,)``.
        source_mean_norm: mean row norm of the source embedding matrix (for ``norm="source-ratio"``).
        target_mean_norm: mean row norm of the target embedding matrix (for ``norm="source-ratio"``).

    Returns:
        The :class:`Match`.
    """
    if source_anchors.shape[0] != target_anchors.shape[0]:
        raise ConfigError(
            f"{source_anchors.shape[0]} source anchors but {target_anchors.shape[0]} target anchors: they must be "
            "the same words"
        )
    x = source_prompt.detach().float()
    code = encode(x, anchors=source_anchors.float(), projection=config.projection)  # (rows, n)
    code, mask = keep_top_k(code, config.top_k, absolute=config.absolute_top_k)  # (rows, n), (rows, n)
    row_norms = None
    if source_mean_norm is not None and target_mean_norm is not None:
        row_norms = x.norm(dim=1) * (target_mean_norm / source_mean_norm)  # (rows,)
    w = None if weights is None else weights.float()
    return Match(code=code, target_anchors=target_anchors.detach().float(), mask=mask, weights=w, row_norms=row_norms)


@dataclass(frozen=True)
class SearchStep:
    """One scored checkpoint of the search."""

    step: int
    loss: float
    score: float | None


@dataclass(frozen=True)
class CodeSearchResult:
    """The outcome of :func:`search_target_prompt`.

    Attributes:
        prompt: the chosen target prompt, shape ``(rows, target_dim)``, float32.
        step: the step it was taken at.
        loss: its matching loss (0 = codes identical).
        score: its ``score_fn`` value (``None`` without ``score_fn``).
        history: every checkpoint (each ``eval_every`` steps and the last step).
        used_target_data: whether candidates were chosen by scores on target data.
    """

    prompt: torch.Tensor
    step: int
    loss: float
    score: float | None
    history: tuple[SearchStep, ...]
    used_target_data: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable summary (without the prompt)."""
        return {
            "step": self.step,
            "loss": self.loss,
            "score": self.score,
            "used_target_data": self.used_target_data,
            "history": [asdict(h) for h in self.history],
        }


SearchResult = CodeSearchResult
"""The former name of :class:`CodeSearchResult` (kept for compatibility; :class:`tpv.search.SearchResult` is the
coefficient search's result)."""


def _scaled(
    c: torch.Tensor, config: SearchConfig, stats: tuple[float, float] | None, norms: torch.Tensor | None
) -> torch.Tensor:
    if config.norm == "standardize":
        assert stats is not None
        mean, std = stats
        return (c - c.mean()) / c.std().clamp_min(1e-12) * std + mean  # (rows, dim)
    assert norms is not None
    return F.normalize(c, dim=-1) * norms[:, None]  # (rows, dim)


def _loss(x: torch.Tensor, matches: Sequence[Match], projection: str) -> torch.Tensor:
    total = x.new_zeros(())
    for m in matches:
        rel = encode(x, anchors=m.target_anchors, projection=projection) * m.mask  # (rows, n)
        want = m.code  # (rows, n)
        if m.weights is not None:
            root = m.weights.sqrt()[None, :]  # (1, n)
            rel, want = rel * root, want * root
        total = total + (1.0 - F.cosine_similarity(rel, want, dim=-1)).mean()
    return total / len(matches)


def search_target_prompt(
    matches: Sequence[Match],
    *,
    config: SearchConfig | None = None,
    target_stats: tuple[float, float] | None = None,
    init: torch.Tensor | None = None,
    score_fn: ScoreFn | None = None,
    on_checkpoint: Callable[[SearchStep], None] | None = None,
) -> CodeSearchResult:
    """Search a target prompt whose relative code matches every source's (mean of the per-source losses).

    Args:
        matches: one :class:`Match` per source prompt (several for multi-source transfer); all with the same
            number of rows and the same target width.
        config: the settings (default :class:`SearchConfig`).
        target_stats: ``(mean, std)`` of all entries of the target embedding matrix (``norm="standardize"``).
        init: a starting candidate, shape ``(rows, target_dim)`` (e.g. a target origin); default: Xavier-normal
            noise drawn with ``config.seed``.
        score_fn: scores a candidate prompt ``(rows, target_dim)`` on target data, higher is better; called every
            ``eval_every`` steps and at the end, and the best candidate is returned (PTfer's protocol: this uses
            target validation data). ``None``: return the last candidate.
        on_checkpoint: called with each :class:`SearchStep` (progress reporting).

    Returns:
        The :class:`CodeSearchResult`.

    Raises:
        ConfigError: no matches, inconsistent shapes, a missing ``target_stats`` / row norms for the norm mode.
        TrainingError: the loss became NaN.
    """
    cfg = config or SearchConfig()
    if not matches:
        raise ConfigError("search_target_prompt needs at least one source to match")
    rows = int(matches[0].code.shape[0])
    dim = int(matches[0].target_anchors.shape[1])
    for i, m in enumerate(matches):
        if int(m.code.shape[0]) != rows or int(m.target_anchors.shape[1]) != dim:
            raise ConfigError(
                f"source {i} has {m.code.shape[0]} rows against {m.target_anchors.shape[1]}-wide target anchors; "
                f"source 0 has {rows} rows and width {dim}: multi-source prompts need the same length and target"
            )
        if m.code.shape != m.mask.shape or m.code.shape[1] != m.target_anchors.shape[0]:
            raise ConfigError(f"source {i}: code, mask and target anchors disagree on the number of anchors")
    norms: torch.Tensor | None = None
    if cfg.norm == "standardize":
        if target_stats is None:
            raise ConfigError("norm='standardize' needs target_stats=(mean, std) of the target embedding matrix")
    else:
        given = [m.row_norms for m in matches]
        if any(n is None for n in given):
            raise ConfigError("norm='source-ratio' needs row_norms in every Match (give the mean embedding norms)")
        norms = torch.stack([n for n in given if n is not None]).mean(dim=0)  # (rows,)
    if init is not None:
        if tuple(init.shape) != (rows, dim):
            raise ConfigError(f"init has shape {tuple(init.shape)}; the search needs ({rows}, {dim})")
        start = init.detach().float().clone()
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        std = math.sqrt(2.0 / (rows + dim))  # Xavier normal
        start = torch.randn(rows, dim, generator=gen) * std  # (rows, dim)
    candidate = torch.nn.Parameter(start)
    optimizer = torch.optim.Adam([candidate], lr=cfg.lr)
    history: list[SearchStep] = []
    best: tuple[float, int, float, torch.Tensor] | None = None  # (score, step, loss, prompt)
    last: tuple[int, float, torch.Tensor] | None = None
    with torch.enable_grad():
        for step in range(1, cfg.steps + 1):
            x = _scaled(candidate, cfg, target_stats, norms)  # (rows, dim)
            loss = _loss(x, matches, cfg.projection)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(
                    f"the target search diverged at step {step} (loss {value}); lower lr (now {cfg.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                with torch.no_grad():
                    x_now = _scaled(candidate, cfg, target_stats, norms).detach().clone()  # (rows, dim)
                    loss_now = float(_loss(x_now, matches, cfg.projection))
                score = None if score_fn is None else float(score_fn(x_now))
                checkpoint = SearchStep(step=step, loss=loss_now, score=score)
                history.append(checkpoint)
                if on_checkpoint is not None:
                    on_checkpoint(checkpoint)
                last = (step, loss_now, x_now)
                if score is not None and (best is None or score > best[0]):
                    best = (score, step, loss_now, x_now)
    assert last is not None
    if best is not None:
        score_b, step_b, loss_b, prompt_b = best
        return CodeSearchResult(prompt_b, step_b, loss_b, score_b, tuple(history), used_target_data=True)
    step_l, loss_l, prompt_l = last
    return CodeSearchResult(prompt_l, step_l, loss_l, None, tuple(history), used_target_data=False)
