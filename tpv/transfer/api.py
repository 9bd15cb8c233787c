"""The public entry point: move a soft prompt, an origin or a task prompt vector from one model to another.

``transfer(x, source_model=..., target_model=..., method=...)`` returns the same kind of thing for the target
model: a prompt tensor for a prompt tensor, an :class:`~tpv.Origin` for an origin, a
:class:`~tpv.TaskPromptVector` for a vector. :func:`run_transfer` returns a :class:`TransferResult` with the
value, the target origin of a vector, the anchors, the search trace and the provenance record that
:meth:`TransferResult.save` writes into the files (``tpv.provenance``).

Methods (see ``docs/transfer.md``):

* ``relative`` (PTfer, Wu, Wu, Mou, ICLR 2024): encode the prompt by its cosines to the shared anchors' source
  embeddings, then search target rows with the same code against the anchors' target embeddings
  (:mod:`tpv.transfer.search`). With ``score_fn`` the candidates are scored on target validation data and the
  best is kept (PTfer's protocol; it uses target dev data).
* ``linear`` / ``procrustes``: a least-squares / orthogonal map fitted on the anchors' embeddings
  (:mod:`tpv.transfer.linear`).

Vectors (beyond PTfer), ``vector_mode=``:

* ``"prompts"`` (default): transfer the origin and the tuned prompt ``origin + tau``; the result is
  ``T(tuned) - T(origin)`` on the transferred origin ``T(origin)``. The origin's transfer is deterministic and
  uses no task data, so every vector tuned from one source origin lands on the same target origin and they can
  be added on the target. (For the linear maps ``T(tuned) - T(origin) = tau W`` exactly.)
* ``"difference"``: transfer the vector itself, the rows of ``tau`` relative to the origin, and place it on a
  target origin (``target_origin=``, else the transferred ``origin``): ``tau W`` for the linear maps; for
  ``relative``, rows whose code matches ``tau``'s, sized like ``tau``'s rows relative to each model's
  embedding norms.

Example:
    >>> import torch
    >>> from tpv.transfer import ModelSpace, transfer  # doctest: +SKIP
    >>> src = ModelSpace.load("smollm2-135m"); tgt = ModelSpace.load("gemma3-270m")  # doctest: +SKIP
    >>> prompt_t = transfer(prompt_s, source_model=src, target_model=tgt, method="relative")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import torch

from tpv._tensor import check_prompt_tensor
from tpv.errors import ConfigError, ModelError
from tpv.origin import Origin
from tpv.spaces import EmbeddingSpace, as_space
from tpv.transfer.anchors import SharedAnchors, find_shared_anchors
from tpv.transfer.linear import LinearMap, fit_linear_map
from tpv.transfer.result import Source, Transferable, TransferResult
from tpv.transfer.search import CodeSearchResult, Match, ScoreFn, SearchConfig, make_match, search_target_prompt
from tpv.vector import TaskPromptVector

__all__ = [
    "METHODS",
    "Method",
    "ModelSpace",
    "Source",
    "TransferResult",
    "VectorMode",
    "run_transfer",
    "transfer",
    "validation_scorer",
]

Method = Literal["relative", "linear", "procrustes"]
METHODS: tuple[str, ...] = get_args(Method)
VectorMode = Literal["prompts", "difference"]
VECTOR_MODES: tuple[str, ...] = get_args(VectorMode)


ModelSpace = EmbeddingSpace
"""What transfer needs of a model (its name, input embeddings and tokenizer): :class:`tpv.spaces.EmbeddingSpace`."""


# -- resolving inputs ---------------------------------------------------------------------------------------------


def _packaged_names() -> tuple[str, ...]:
    from tpv.models import PACKAGED

    return tuple(PACKAGED)


def _check_recorded_model(recorded: str, space: EmbeddingSpace, what: str) -> None:
    names = _packaged_names()
    if recorded in names and space.name in names and recorded != space.name:
        raise ModelError(
            f"{what} was tuned on {recorded!r}, but the source model is declared as {space.name!r}. "
            f"Fix: source_model={recorded!r}"
        )


def _check_width(prompt: torch.Tensor, space: EmbeddingSpace, what: str) -> torch.Tensor:
    t = check_prompt_tensor(prompt, what=what)
    if int(t.shape[1]) != space.dim:
        raise ModelError(
            f"{what} is {t.shape[1]} wide, but the source model {space.name!r} embeds tokens in {space.dim} "
            "dimensions: the prompt was tuned on another model. Fix: declare the model it was tuned on as the source"
        )
    return t.float()


def _source_prompt(
    x: torch.Tensor | TaskPromptVector, origin: Origin | None, space: EmbeddingSpace, what: str
) -> torch.Tensor:
    if isinstance(x, TaskPromptVector):
        if origin is None:
            raise ConfigError(f"{what} is a vector, a difference: pass its origin (origin=) so the prompt can be built")
        _check_recorded_model(x.base_model, space, what)
        return _check_width(x.apply_to(origin, strict=True), space, what)
    return _check_width(x, space, what)


def _anchors_for(
    src: EmbeddingSpace,
    tgt: EmbeddingSpace,
    given: SharedAnchors | None,
    anchor_words: Sequence[str] | None,
    anchor_weights: Mapping[str, float] | None,
    max_anchors: int | None,
    min_anchors: int | None,
) -> SharedAnchors:
    if given is not None:
        if given.num_tokenizers < 2:
            raise ConfigError("anchors= must hold the ids of two tokenizers (source first, target second)")
        return given
    return find_shared_anchors(
        src.tokenizer,
        tgt.tokenizer,
        only=anchor_words,
        weights=anchor_weights,
        max_anchors=max_anchors,
        min_anchors=min_anchors,
    )


# -- the two methods ----------------------------------------------------------------------------------------------


@dataclass
class _Pair:
    prompt: torch.Tensor  # (rows, d_s)
    space: EmbeddingSpace
    anchors: SharedAnchors

    def source_anchors(self) -> torch.Tensor:
        return self.anchors.embeddings(self.space.embeddings, 0)  # (n, d_s)


def _matches(pairs: Sequence[_Pair], tgt: EmbeddingSpace, cfg: SearchConfig) -> list[Match]:
    out = []
    for pair in pairs:
        out.append(
            make_match(
                pair.prompt,
                pair.source_anchors(),
                pair.anchors.embeddings(tgt.embeddings, 1),
                config=cfg,
                weights=pair.anchors.weight_tensor(),
                source_mean_norm=pair.space.mean_norm,
                target_mean_norm=tgt.mean_norm,
            )
        )
    return out


def _relative(
    pairs: Sequence[_Pair],
    tgt: EmbeddingSpace,
    cfg: SearchConfig,
    score_fn: ScoreFn | None,
    init: torch.Tensor | None = None,
) -> CodeSearchResult:
    return search_target_prompt(
        _matches(pairs, tgt, cfg), config=cfg, target_stats=tgt.stats, init=init, score_fn=score_fn
    )


def _fit(pair: _Pair, tgt: EmbeddingSpace, method: Method, ridge: float) -> LinearMap:
    return fit_linear_map(
        pair.source_anchors(),
        pair.anchors.embeddings(tgt.embeddings, 1),
        method="procrustes" if method == "procrustes" else "lstsq",
        weights=pair.anchors.weight_tensor(),
        ridge=ridge,
    )


def _origin_for(tensor: torch.Tensor, like: Origin, tgt: EmbeddingSpace, params: dict[str, Any]) -> Origin:
    return Origin(
        tensor.float(),
        init="tensor",
        params=params,
        base_model=tgt.name,
        num_virtual_tokens=like.num_virtual_tokens,
        num_transformer_submodules=like.num_transformer_submodules,
    )


def validation_scorer(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    label_words: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
) -> ScoreFn:
    """A ``score_fn`` for the target search: rank-classification accuracy of a prompt on validation examples.

    Uses :class:`tpv.engine.prompt_scoring.BatchedPromptScorer` (causal LMs). Passing it to :func:`transfer`
    makes the search choose its candidate on this *target* validation data (PTfer's protocol).

    Args:
        model: the target causal LM.
        tokenizer: its tokenizer.
        texts: validation inputs, rendered with the task's template.
        labels: their label indices.
        label_words: the task's label words.
        batch_size: examples per forward pass.
        max_length: keep only the last ``max_length`` tokens of each text.

    Returns:
        ``score_fn(prompt (rows, dim)) -> accuracy``.
    """
    from tpv.engine.prompt_scoring import BatchedPromptScorer

    scorer = BatchedPromptScorer(
        model, tokenizer, texts, labels, label_words, batch_size=batch_size, max_length=max_length
    )
    return scorer.score_prompt


def run_transfer(
    prompt_or_vector: Transferable,
    *,
    source_model: str | ModelSpace,
    target_model: str | ModelSpace,
    method: Method = "relative",
    origin: Origin | None = None,
    target_origin: Origin | None = None,
    vector_mode: VectorMode = "prompts",
    more_sources: Sequence[Source] = (),
    anchors: SharedAnchors | None = None,
    anchor_words: Sequence[str] | None = None,
    anchor_weights: Mapping[str, float] | None = None,
    max_anchors: int | None = None,
    min_anchors: int | None = None,
    config: SearchConfig | None = None,
    score_fn: ScoreFn | None = None,
    ridge: float = 0.0,
) -> TransferResult:
    """Transfer a prompt, an origin or a vector to another model, returning the value and its record.

    Args:
        prompt_or_vector: a soft prompt ``(rows, source_dim)``, an :class:`~tpv.Origin`, or a
            :class:`~tpv.TaskPromptVector` (then ``origin`` is required).
        source_model: the model the input was tuned on: a name (``smollm2-135m``, a folder, a Hub id) or a
            :class:`ModelSpace`.
        target_model: the model to move it to (same forms).
        method: ``"relative"`` (PTfer target search), ``"linear"`` (least squares on the anchors) or
            ``"procrustes"`` (orthogonal map on the anchors).
        origin: the origin a vector was tuned from.
        target_origin: ``vector_mode="difference"``: the target origin to place the vector on (default: the
            transferred ``origin``).
        vector_mode: ``"prompts"`` or ``"difference"`` (see the module docstring).
        more_sources: extra sources for multi-source transfer (prompt inputs only): the relative search
            minimizes the mean of the sources' losses; the linear maps average the mapped prompts.
        anchors: precomputed anchors of the source/target pair (source ids first); default: found from the
            tokenizers with the next options.
        anchor_words: restrict the anchors to these words (e.g. the task's label words).
        anchor_weights: weight some anchors (e.g. ``{"negative": 50, "positive": 50}``).
        max_anchors: at most this many anchors (seeded subset).
        min_anchors: refuse fewer shared anchors (default 32, see :func:`~tpv.transfer.anchors.find_shared_anchors`).
        config: the relative search's settings.
        score_fn: scores a target prompt on target validation data; the relative search keeps the best-scoring
            candidate (PTfer's protocol, uses target dev data). Not used for origins or the linear maps.
        ridge: ridge penalty of the ``linear`` fit.

    Returns:
        The :class:`TransferResult`.

    Raises:
        ModelError: an unknown model, or a prompt whose width does not match the declared source model.
        AnchorError: the tokenizers share too few anchors (or a requested anchor word is not shared).
        ConfigError: bad options (unknown method, a vector without its origin, multi-source vectors ...).
    """
    job = _Job.start(
        prompt_or_vector, source_model, target_model, method, vector_mode, more_sources, config, score_fn, ridge,
        anchors, anchor_words, anchor_weights, max_anchors, min_anchors,
    )  # fmt: skip
    if isinstance(prompt_or_vector, Origin):
        return _transfer_origin(job, prompt_or_vector)
    if isinstance(prompt_or_vector, TaskPromptVector):
        return _transfer_vector(job, prompt_or_vector, origin, target_origin, vector_mode)
    return _transfer_prompt(job, prompt_or_vector, more_sources)


@dataclass
class _Job:
    """One transfer's resolved settings: the two spaces, the method, the first pair's anchors and the record."""

    src: EmbeddingSpace
    tgt: EmbeddingSpace
    method: Method
    cfg: SearchConfig
    score_fn: ScoreFn | None
    ridge: float
    anchors: SharedAnchors
    anchor_options: tuple[Sequence[str] | None, Mapping[str, float] | None, int | None, int | None]
    record: dict[str, Any]

    @classmethod
    def start(
        cls,
        x: object,
        source_model: str | ModelSpace,
        target_model: str | ModelSpace,
        method: Method,
        vector_mode: VectorMode,
        more_sources: Sequence[Source],
        config: SearchConfig | None,
        score_fn: ScoreFn | None,
        ridge: float,
        anchors: SharedAnchors | None,
        anchor_words: Sequence[str] | None,
        anchor_weights: Mapping[str, float] | None,
        max_anchors: int | None,
        min_anchors: int | None,
    ) -> _Job:
        """Check the options, resolve the spaces and the anchors, and begin the provenance record."""
        if method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
        if vector_mode not in VECTOR_MODES:
            raise ConfigError(f"vector_mode must be one of {', '.join(VECTOR_MODES)}; got {vector_mode!r}")
        if not isinstance(x, torch.Tensor | TaskPromptVector | Origin):
            raise ConfigError(
                f"transfer takes a prompt tensor, an Origin or a TaskPromptVector; got {type(x).__name__}"
            )
        cfg = config or SearchConfig()
        src = as_space(source_model, "source_model")
        tgt = as_space(target_model, "target_model")
        if more_sources and not isinstance(x, torch.Tensor):
            raise ConfigError(
                "more_sources= (multi-source transfer) takes prompts: apply each vector to its origin first "
                "(vector.apply_to(origin)) and pass the tuned prompts"
            )
        options = (anchor_words, anchor_weights, max_anchors, min_anchors)
        pair_anchors = _anchors_for(src, tgt, anchors, *options)
        record: dict[str, Any] = {
            "kind": "transfer",
            "method": method,
            "source_model": src.name,
            "target_model": tgt.name,
            "anchors": pair_anchors.summary(),
            "paper": "Wu, Wu, Mou. Zero-Shot Continuous Prompt Transfer. ICLR 2024 (PTfer)"
            if method == "relative"
            else "linear map fitted on shared anchor embeddings (baseline)",
        }
        if method == "relative":
            record["search_config"] = cfg.to_dict()
        else:
            record["ridge"] = ridge
        return cls(src, tgt, method, cfg, score_fn, ridge, pair_anchors, options, record)

    def anchors_of(self, space: EmbeddingSpace) -> SharedAnchors:
        """The anchors another source space shares with the target (multi-source)."""
        return _anchors_for(space, self.tgt, None, *self.anchor_options)

    def move(self, pair: _Pair) -> tuple[torch.Tensor, CodeSearchResult | None, LinearMap | None]:
        """One prompt moved by the method without task data: ``(target prompt, search, linear map)``."""
        if self.method == "relative":
            search = _relative([pair], self.tgt, self.cfg, None)
            return search.prompt, search, None
        lin = _fit(pair, self.tgt, self.method, self.ridge)
        return lin(pair.prompt).float(), None, lin

    def finish(self, search: CodeSearchResult | None, lin: LinearMap | None) -> dict[str, Any]:
        """The record, with the search summary, the map summary and the library version added."""
        if search is not None:
            self.record["search"] = search.to_dict()
        if lin is not None:
            self.record["linear_map"] = lin.summary()
        from tpv._version import __version__

        self.record["tpv_version"] = __version__
        return self.record


def _transfer_origin(job: _Job, o: Origin) -> TransferResult:
    """An origin: no task data involved."""
    _check_recorded_model(o.base_model, job.src, o.describe())
    pair = _Pair(_check_width(o.tensor, job.src, o.describe()), job.src, job.anchors)
    tensor, search, lin = job.move(pair)
    job.record.update(input="origin", source_origin_id=o.id, uses_target_dev_data=False)
    record = job.finish(search, lin)
    params = {"transferred_from": o.id, "source_model": job.src.name, "method": job.method}
    return TransferResult(_origin_for(tensor, o, job.tgt, params), None, record, job.anchors, search, lin)


def _transfer_vector(
    job: _Job, vec: TaskPromptVector, origin: Origin | None, target_origin: Origin | None, vector_mode: VectorMode
) -> TransferResult:
    """A vector: its target origin (transferred, or given), then the vector by ``vector_mode``."""
    src, tgt, method = job.src, job.tgt, job.method
    if origin is None:
        raise ConfigError(
            f"{vec.describe()} is a difference: pass origin= (the Origin it was tuned from) to transfer it"
        )
    if origin.id != vec.origin_id:
        raise ConfigError(
            f"{vec.describe()} was tuned from origin {vec.origin_id}, but origin= is {origin.id}: pass its origin"
        )
    if target_origin is not None and vector_mode != "difference":
        raise ConfigError("target_origin= places a vector on a target origin: use it with vector_mode='difference'")
    _check_recorded_model(vec.base_model, src, vec.describe())
    origin_pair = _Pair(_check_width(origin.tensor, src, origin.describe()), src, job.anchors)
    job.record.update(input="vector", vector_mode=vector_mode, source_origin_id=origin.id, source_terms=dict(vec.terms))
    o_lin: LinearMap | None = None
    if vector_mode == "prompts" or target_origin is None:
        t_origin_tensor, o_search, o_lin = job.move(origin_pair)
        params = {"transferred_from": origin.id, "source_model": src.name, "method": method}
        t_origin = _origin_for(t_origin_tensor, origin, tgt, params)
        job.record["origin_search"] = None if o_search is None else o_search.to_dict()
    else:
        t_origin = target_origin
        if t_origin.shape != (origin.shape[0], tgt.dim):
            raise ModelError(
                f"target_origin has shape {t_origin.shape}, but the vector needs ({origin.shape[0]}, {tgt.dim}) "
                f"on {tgt.name!r}"
            )
    job.record["target_origin_id"] = t_origin.id
    search: CodeSearchResult | None = None
    lin: LinearMap | None = None
    if vector_mode == "prompts":
        pair = _Pair(_source_prompt(vec, origin, src, vec.describe()), src, job.anchors)
        if method == "relative":
            search = _relative([pair], tgt, job.cfg, job.score_fn, init=t_origin.tensor)
            diff = search.prompt.double() - t_origin.tensor.double()
        else:
            lin = o_lin or _fit(pair, tgt, method, job.ridge)
            diff = lin.apply_difference(vec.tensor.double())  # == T(tuned) - T(origin), exactly
    else:
        delta = _check_width(vec.tensor, src, vec.describe())
        if method == "relative":
            cfg_d = replace(job.cfg, norm="source-ratio")
            base = t_origin.tensor
            score_fn = job.score_fn
            wrapped = None if score_fn is None else (lambda d: score_fn(base + d))
            search = search_target_prompt(
                _matches([_Pair(delta, src, job.anchors)], tgt, cfg_d), config=cfg_d, score_fn=wrapped
            )
            diff = search.prompt.double()
        else:
            lin = o_lin or _fit(origin_pair, tgt, method, job.ridge)
            diff = lin.apply_difference(vec.tensor.double())
    job.record["uses_target_dev_data"] = bool(search is not None and search.used_target_data)
    record = job.finish(search, lin)
    out_vec = TaskPromptVector(
        diff.to(vec.dtype),
        origin_id=t_origin.id,
        terms=vec.terms,
        base_model=tgt.name,
        num_virtual_tokens=t_origin.num_virtual_tokens,
        num_transformer_submodules=t_origin.num_transformer_submodules,
    )
    return TransferResult(out_vec, t_origin, record, job.anchors, search, lin)


def _transfer_prompt(job: _Job, prompt: torch.Tensor, more_sources: Sequence[Source]) -> TransferResult:
    """A prompt tensor, maybe with more sources (the relative search averages their losses, the maps their outputs)."""
    pairs = [_Pair(_check_width(prompt, job.src, "the prompt"), job.src, job.anchors)]
    for i, extra in enumerate(more_sources):
        if not isinstance(extra, Source):
            raise ConfigError(f"more_sources[{i}] must be a tpv.transfer.Source, got {type(extra).__name__}")
        space = as_space(extra.model, f"more_sources[{i}].model")
        p = _source_prompt(extra.prompt, extra.origin, space, f"more_sources[{i}].prompt")
        if p.shape[0] != pairs[0].prompt.shape[0]:
            raise ConfigError(
                f"more_sources[{i}] has {p.shape[0]} rows but the prompt has {pairs[0].prompt.shape[0]}: "
                "multi-source transfer needs prompts of the same length"
            )
        pairs.append(_Pair(p, space, job.anchors_of(space)))
    job.record.update(input="prompt", sources=[{"model": p.space.name, "anchors": len(p.anchors)} for p in pairs])
    search: CodeSearchResult | None = None
    lin: LinearMap | None = None
    if job.method == "relative":
        search = _relative(pairs, job.tgt, job.cfg, job.score_fn)
        tensor = search.prompt
    else:
        maps = [_fit(p, job.tgt, job.method, job.ridge) for p in pairs]
        tensor = torch.stack([m(p.prompt) for m, p in zip(maps, pairs)]).mean(dim=0).float()  # (rows, d_t)
        lin = maps[0]
    job.record["uses_target_dev_data"] = bool(search is not None and search.used_target_data)
    record = job.finish(search, lin)
    return TransferResult(tensor, None, record, job.anchors, search, lin)


def transfer(
    prompt_or_vector: Transferable,
    *,
    source_model: str | ModelSpace,
    target_model: str | ModelSpace,
    method: Method = "relative",
    origin: Origin | None = None,
    **options: Any,
) -> Transferable:
    """Transfer a soft prompt, an origin or a task prompt vector from a source model to a target model.

    Zero-shot cross-model transfer (PTfer, Wu, Wu, Mou, ICLR 2024) through a relative space, or a linear map
    baseline. Returns the same kind as the input, for the target model. :func:`run_transfer` takes the same
    arguments and also returns the target origin of a vector, the anchors and the provenance record.

    Args:
        prompt_or_vector: a prompt ``(rows, source_dim)``, an :class:`~tpv.Origin` or a
            :class:`~tpv.TaskPromptVector`.
        source_model: the model it was tuned on (name or :class:`ModelSpace`).
        target_model: the model to move it to (name or :class:`ModelSpace`).
        method: ``"relative"``, ``"linear"`` or ``"procrustes"``.
        origin: a vector's origin (required for vectors).
        **options: the other keyword arguments of :func:`run_transfer` (``score_fn``, ``config``,
            ``anchor_words``, ``more_sources``, ``vector_mode``, ``target_origin`` ...).

    Returns:
        A prompt tensor ``(rows, target_dim)``, an Origin, or a TaskPromptVector whose origin is
        ``run_transfer(...).origin`` (for ``vector_mode="prompts"``: ``transfer(origin, ...)`` gives it too).

    Raises:
        ModelError: an unknown model, or a prompt whose width does not match the declared source model.
        AnchorError: the two tokenizers share too few anchors.
        ConfigError: bad options.
    """
    return run_transfer(
        prompt_or_vector, source_model=source_model, target_model=target_model, method=method, origin=origin, **options
    ).value
