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

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from tpv._tensor import check_prompt_tensor
from tpv.errors import ConfigError, ModelError
from tpv.origin import Origin
from tpv.transfer.anchors import SharedAnchors, find_shared_anchors
from tpv.transfer.linear import LinearMap, fit_linear_map
from tpv.transfer.search import Match, ScoreFn, SearchConfig, SearchResult, make_match, search_target_prompt
from tpv.vector import UNKNOWN_MODEL, TaskPromptVector

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
Transferable = torch.Tensor | TaskPromptVector | Origin


@dataclass(frozen=True, eq=False)
class ModelSpace:
    """What transfer needs of a model: its name, its input embeddings (as fed) and its tokenizer.

    Attributes:
        name: the model id recorded in results (a packaged name such as ``smollm2-135m``, a path or a Hub id).
        embeddings: the input embedding matrix as the model feeds it (Gemma's ``sqrt(hidden)`` scale applied),
            shape ``(vocab, dim)``, float32.
        tokenizer: the model's tokenizer.
    """

    name: str
    embeddings: torch.Tensor
    tokenizer: Any = field(repr=False)

    @property
    def dim(self) -> int:
        """The embedding width (a prompt row's width)."""
        return int(self.embeddings.shape[1])

    @functools.cached_property
    def stats(self) -> tuple[float, float]:
        """``(mean, std)`` of all entries of the embedding matrix (PTfer's standardization target)."""
        e = self.embeddings.double()
        return float(e.mean()), float(e.std())

    @functools.cached_property
    def mean_norm(self) -> float:
        """Mean row norm of the embedding matrix."""
        return float(self.embeddings.double().norm(dim=1).mean())

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str | None = None) -> ModelSpace:
        """Take the space of a loaded ``transformers`` model (or a PEFT model wrapping one).

        Args:
            model: the model.
            tokenizer: its tokenizer.
            name: id to record; default :func:`tpv.models.model_name`.
        """
        from tpv.models import input_embeddings, model_name

        return cls(name=name or model_name(model), embeddings=input_embeddings(model), tokenizer=tokenizer)

    @classmethod
    def load(cls, name: str) -> ModelSpace:
        """Load a model's space by tpv name, folder or Hub id (cached per process).

        Raises:
            ModelError: unknown name or missing package (the message holds the install command).
        """
        return _load_space(name)


@functools.lru_cache(maxsize=4)
def _load_space(name: str) -> ModelSpace:
    from tpv.models import input_embeddings, load_model, load_tokenizer

    model = load_model(name)
    try:
        emb = input_embeddings(model)
    finally:
        del model
    return ModelSpace(name=name, embeddings=emb, tokenizer=load_tokenizer(name))


@dataclass(frozen=True)
class Source:
    """One more source for multi-source transfer: a prompt (or vector with its origin) and its model.

    Attributes:
        prompt: a prompt ``(rows, dim)``, or a vector (then ``origin`` is needed: the prompt is ``origin + vector``).
        model: the model it was tuned on (a name or a :class:`ModelSpace`).
        origin: the vector's origin.
    """

    prompt: torch.Tensor | TaskPromptVector
    model: str | ModelSpace
    origin: Origin | None = None


@dataclass(frozen=True, eq=False)
class TransferResult:
    """Everything a transfer produced.

    Attributes:
        value: the transferred prompt tensor ``(rows, target_dim)``, :class:`~tpv.Origin` or
            :class:`~tpv.TaskPromptVector`.
        origin: for a vector, the target origin it applies to (``value.apply_to(origin)`` is the prompt).
        provenance: JSON-serializable record of the source, method, anchors and search; written to files.
        anchors: the anchors of the (first) source/target pair.
        search: the relative search of the (tuned) prompt, or ``None`` for the linear maps.
        linear_map: the fitted map, or ``None`` for ``relative``.
    """

    value: Transferable
    origin: Origin | None
    provenance: dict[str, Any]
    anchors: SharedAnchors
    search: SearchResult | None = None
    linear_map: LinearMap | None = None

    @property
    def prompt(self) -> torch.Tensor:
        """The target prompt: the tensor, the origin's values, or ``origin + vector``, shape ``(rows, dim)``."""
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            return self.value.apply_to(self.origin).float()
        if isinstance(self.value, Origin):
            return self.value.tensor
        return self.value.clone()

    def as_origin(self) -> Origin:
        """A prompt tensor result as an :class:`~tpv.Origin` of init ``"tensor"`` (the tpv file form of a prompt)."""
        if isinstance(self.value, Origin):
            return self.value
        if isinstance(self.value, TaskPromptVector):
            raise ConfigError("this result is a vector: its origin is .origin, its prompt .prompt")
        return Origin(
            self.value,
            init="tensor",
            params={"transferred_prompt": True},
            base_model=str(self.provenance.get("target_model", UNKNOWN_MODEL)),
        )

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        origin_path: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
    ) -> list[Path]:
        """Write the result as tpv file(s), the provenance under ``tpv.provenance``, atomically.

        A vector is written to ``path`` and its target origin to ``origin_path`` (default: ``<stem>.origin.safetensors``
        beside it); an origin to ``path``; a prompt tensor to ``path`` as an origin-kind file (init ``"tensor"``).

        Args:
            path: the output file.
            origin_path: where a vector's origin goes.
            overwrite: replace existing files (without it, an existing output is refused before anything is written).

        Returns:
            The paths written.
        """
        from tpv._fs import check_output
        from tpv.files import save

        p = Path(path)
        record = _file_provenance(self.provenance)
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            o_path = Path(origin_path) if origin_path is not None else p.with_name(_stem(p) + ".origin.safetensors")
            check_output(p, overwrite=overwrite)
            check_output(o_path, overwrite=overwrite, inputs=[p])
            return [
                save(self.value, p, provenance=record, overwrite=overwrite),
                save(self.origin, o_path, provenance=record, overwrite=overwrite),
            ]
        return [save(self.as_origin(), p, provenance=record, overwrite=overwrite)]

    def save_adapter(self, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a PEFT prompt-tuning adapter for the target model, with the provenance recorded.

        The folder gets PEFT's two files, ``origin.safetensors`` (and ``tpv_vector.safetensors`` for a vector) with
        ``tpv.provenance`` in their metadata, and ``tpv_transfer.json`` with the full record (search trace included).

        Returns:
            The folder.
        """
        import json

        from tpv._fs import atomic_write_text
        from tpv.adapters import ORIGIN_FILE, VECTOR_FILE, save_adapter
        from tpv.files import save

        target = str(self.provenance.get("target_model", UNKNOWN_MODEL))
        base = None if target == UNKNOWN_MODEL else target
        record = _file_provenance(self.provenance)
        if isinstance(self.value, TaskPromptVector):
            assert self.origin is not None
            out = save_adapter(self.value, out_dir, origin=self.origin, base_model=base, overwrite=overwrite)
            save(self.origin, out / ORIGIN_FILE, provenance=record, overwrite=True)
            save(self.value, out / VECTOR_FILE, provenance=record, overwrite=True)
        else:
            origin = self.as_origin()
            out = save_adapter(origin, out_dir, base_model=base, overwrite=overwrite)
            save(origin, out / ORIGIN_FILE, provenance=record, overwrite=True)
        atomic_write_text(out / "tpv_transfer.json", json.dumps(self.provenance, indent=2, sort_keys=True) + "\n")
        return out


def _stem(p: Path) -> str:
    name = p.name
    return name[: -len(".safetensors")] if name.endswith(".safetensors") else p.stem


def _file_provenance(record: Mapping[str, Any]) -> dict[str, Any]:
    """The provenance without the search trace (file metadata stays small)."""
    out = dict(record)
    search = out.get("search")
    if isinstance(search, dict):
        out["search"] = {k: v for k, v in search.items() if k != "history"}
    return out


# -- resolving inputs ---------------------------------------------------------------------------------------------


def _space(model: str | ModelSpace, role: str) -> ModelSpace:
    if isinstance(model, ModelSpace):
        return model
    if isinstance(model, str):
        return ModelSpace.load(model)
    raise ConfigError(
        f"{role} must be a model name (e.g. 'smollm2-135m') or a tpv.transfer.ModelSpace; got "
        f"{type(model).__name__}. For a loaded model use ModelSpace.from_model(model, tokenizer)"
    )


def _packaged_names() -> tuple[str, ...]:
    from tpv.models import PACKAGED

    return tuple(PACKAGED)


def _check_recorded_model(recorded: str, space: ModelSpace, what: str) -> None:
    names = _packaged_names()
    if recorded in names and space.name in names and recorded != space.name:
        raise ModelError(
            f"{what} was tuned on {recorded!r}, but the source model is declared as {space.name!r}. "
            f"Fix: source_model={recorded!r}"
        )


def _check_width(prompt: torch.Tensor, space: ModelSpace, what: str) -> torch.Tensor:
    t = check_prompt_tensor(prompt, what=what)
    if int(t.shape[1]) != space.dim:
        raise ModelError(
            f"{what} is {t.shape[1]} wide, but the source model {space.name!r} embeds tokens in {space.dim} "
            "dimensions: the prompt was tuned on another model. Fix: declare the model it was tuned on as the source"
        )
    return t.float()


def _source_prompt(
    x: torch.Tensor | TaskPromptVector, origin: Origin | None, space: ModelSpace, what: str
) -> torch.Tensor:
    if isinstance(x, TaskPromptVector):
        if origin is None:
            raise ConfigError(f"{what} is a vector, a difference: pass its origin (origin=) so the prompt can be built")
        _check_recorded_model(x.base_model, space, what)
        return _check_width(x.apply_to(origin, strict=True), space, what)
    return _check_width(x, space, what)


def _anchors_for(
    src: ModelSpace,
    tgt: ModelSpace,
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
    space: ModelSpace
    anchors: SharedAnchors

    def source_anchors(self) -> torch.Tensor:
        return self.anchors.embeddings(self.space.embeddings, 0)  # (n, d_s)


def _matches(pairs: Sequence[_Pair], tgt: ModelSpace, cfg: SearchConfig) -> list[Match]:
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
    tgt: ModelSpace,
    cfg: SearchConfig,
    score_fn: ScoreFn | None,
    init: torch.Tensor | None = None,
) -> SearchResult:
    return search_target_prompt(
        _matches(pairs, tgt, cfg), config=cfg, target_stats=tgt.stats, init=init, score_fn=score_fn
    )


def _fit(pair: _Pair, tgt: ModelSpace, method: Method, ridge: float) -> LinearMap:
    return fit_linear_map(
        pair.source_anchors(),
        pair.anchors.embeddings(tgt.embeddings, 1),
        method="procrustes" if method == "procrustes" else "lstsq",
        weights=pair.anchors.weight_tensor(),
        ridge=ridge,
    )


def _origin_for(tensor: torch.Tensor, like: Origin, tgt: ModelSpace, params: dict[str, Any]) -> Origin:
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

    Uses :class:`tpv.search.BatchedPromptScorer` (causal LMs). Passing it to :func:`transfer` makes the search
    choose its candidate on this *target* validation data (PTfer's protocol).

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
    from tpv.search import BatchedPromptScorer

    scorer = BatchedPromptScorer(
        model, tokenizer, texts, labels, label_words, batch_size=batch_size, max_length=max_length
    )

    def score(prompt: torch.Tensor) -> float:
        return float(scorer(prompt[None])[0])

    return score


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
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if vector_mode not in VECTOR_MODES:
        raise ConfigError(f"vector_mode must be one of {', '.join(VECTOR_MODES)}; got {vector_mode!r}")
    if not isinstance(prompt_or_vector, torch.Tensor | TaskPromptVector | Origin):
        raise ConfigError(
            f"transfer takes a prompt tensor, an Origin or a TaskPromptVector; got {type(prompt_or_vector).__name__}"
        )
    cfg = config or SearchConfig()
    src = _space(source_model, "source_model")
    tgt = _space(target_model, "target_model")
    if more_sources and not isinstance(prompt_or_vector, torch.Tensor):
        raise ConfigError(
            "more_sources= (multi-source transfer) takes prompts: apply each vector to its origin first "
            "(vector.apply_to(origin)) and pass the tuned prompts"
        )
    pair_anchors = _anchors_for(src, tgt, anchors, anchor_words, anchor_weights, max_anchors, min_anchors)

    def anchors_of(space: ModelSpace) -> SharedAnchors:
        return _anchors_for(space, tgt, None, anchor_words, anchor_weights, max_anchors, min_anchors)

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

    # -- an origin: no task data involved -----------------------------------------------------------------------
    if isinstance(prompt_or_vector, Origin):
        o = prompt_or_vector
        _check_recorded_model(o.base_model, src, o.describe())
        pair = _Pair(_check_width(o.tensor, src, o.describe()), src, pair_anchors)
        tensor, search, lin = _move(pair, tgt, method, cfg, None, ridge)
        record.update(input="origin", source_origin_id=o.id, uses_target_dev_data=False)
        _add_details(record, search, lin)
        moved = _origin_for(tensor, o, tgt, {"transferred_from": o.id, "source_model": src.name, "method": method})
        return TransferResult(moved, None, record, pair_anchors, search, lin)

    # -- a vector ---------------------------------------------------------------------------------------------
    if isinstance(prompt_or_vector, TaskPromptVector):
        vec = prompt_or_vector
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
        origin_pair = _Pair(_check_width(origin.tensor, src, origin.describe()), src, pair_anchors)
        record.update(
            input="vector",
            vector_mode=vector_mode,
            source_origin_id=origin.id,
            source_terms=dict(vec.terms),
        )
        if vector_mode == "prompts" or target_origin is None:
            t_origin_tensor, o_search, o_lin = _move(origin_pair, tgt, method, cfg, None, ridge)
            params = {"transferred_from": origin.id, "source_model": src.name, "method": method}
            t_origin = _origin_for(t_origin_tensor, origin, tgt, params)
            record["origin_search"] = None if o_search is None else _search_summary(o_search)
        else:
            t_origin = target_origin
            if t_origin.shape != (origin.shape[0], tgt.dim):
                raise ModelError(
                    f"target_origin has shape {t_origin.shape}, but the vector needs ({origin.shape[0]}, {tgt.dim}) "
                    f"on {tgt.name!r}"
                )
            o_lin = None
        record["target_origin_id"] = t_origin.id
        if vector_mode == "prompts":
            tuned = _source_prompt(vec, origin, src, vec.describe())
            pair = _Pair(tuned, src, pair_anchors)
            if method == "relative":
                search = _relative([pair], tgt, cfg, score_fn, init=t_origin.tensor)
                diff = search.prompt.double() - t_origin.tensor.double()
                lin = None
            else:
                lin = o_lin or _fit(pair, tgt, method, ridge)
                diff = lin.apply_difference(vec.tensor.double())  # == T(tuned) - T(origin), exactly
                search = None
        else:
            delta = _check_width(vec.tensor, src, vec.describe())
            if method == "relative":
                cfg_d = replace(cfg, norm="source-ratio")
                base = t_origin.tensor
                wrapped = None if score_fn is None else (lambda d: score_fn(base + d))
                search = search_target_prompt(
                    _matches([_Pair(delta, src, pair_anchors)], tgt, cfg_d),
                    config=cfg_d,
                    score_fn=wrapped,
                )
                diff = search.prompt.double()
                lin = None
            else:
                lin = o_lin or _fit(origin_pair, tgt, method, ridge)
                diff = lin.apply_difference(vec.tensor.double())
                search = None
        record["uses_target_dev_data"] = bool(search is not None and search.used_target_data)
        _add_details(record, search, lin)
        out_vec = TaskPromptVector(
            diff.to(vec.dtype),
            origin_id=t_origin.id,
            terms=vec.terms,
            base_model=tgt.name,
            num_virtual_tokens=t_origin.num_virtual_tokens,
            num_transformer_submodules=t_origin.num_transformer_submodules,
        )
        return TransferResult(out_vec, t_origin, record, pair_anchors, search, lin)

    # -- a prompt tensor, maybe with more sources --------------------------------------------------------------
    pairs = [_Pair(_check_width(prompt_or_vector, src, "the prompt"), src, pair_anchors)]
    for i, extra in enumerate(more_sources):
        if not isinstance(extra, Source):
            raise ConfigError(f"more_sources[{i}] must be a tpv.transfer.Source, got {type(extra).__name__}")
        space = _space(extra.model, f"more_sources[{i}].model")
        p = _source_prompt(extra.prompt, extra.origin, space, f"more_sources[{i}].prompt")
        if p.shape[0] != pairs[0].prompt.shape[0]:
            raise ConfigError(
                f"more_sources[{i}] has {p.shape[0]} rows but the prompt has {pairs[0].prompt.shape[0]}: "
                "multi-source transfer needs prompts of the same length"
            )
        pairs.append(_Pair(p, space, anchors_of(space)))
    record.update(input="prompt", sources=[{"model": p.space.name, "anchors": len(p.anchors)} for p in pairs])
    if method == "relative":
        search = _relative(pairs, tgt, cfg, score_fn)
        tensor, lin = search.prompt, None
    else:
        maps = [_fit(p, tgt, method, ridge) for p in pairs]
        tensor = torch.stack([m(p.prompt) for m, p in zip(maps, pairs)]).mean(dim=0).float()  # (rows, d_t)
        search, lin = None, maps[0]
    record["uses_target_dev_data"] = bool(search is not None and search.used_target_data)
    _add_details(record, search, lin)
    return TransferResult(tensor, None, record, pair_anchors, search, lin)


def _move(
    pair: _Pair, tgt: ModelSpace, method: Method, cfg: SearchConfig, score_fn: ScoreFn | None, ridge: float
) -> tuple[torch.Tensor, SearchResult | None, LinearMap | None]:
    if method == "relative":
        search = _relative([pair], tgt, cfg, score_fn)
        return search.prompt, search, None
    lin = _fit(pair, tgt, method, ridge)
    return lin(pair.prompt).float(), None, lin


def _search_summary(search: SearchResult) -> dict[str, Any]:
    return search.to_dict()


def _add_details(record: dict[str, Any], search: SearchResult | None, lin: LinearMap | None) -> None:
    if search is not None:
        record["search"] = _search_summary(search)
    if lin is not None:
        record["linear_map"] = lin.summary()
    from tpv._version import __version__

    record["tpv_version"] = __version__


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
