"""Moving soft prompts, origins and task prompt vectors to another model with a fitted FUSE map.

A soft prompt is a sequence of virtual tokens with no text behind them, so there is no tokenization to follow.
Each virtual token is treated as a one-subtoken word and mapped by ``G_1`` (``word_length=1``, the default)::

    P_target = P_source @ G_1[:, :, 0]                  # (n, d_s) @ (d_s, d_t) -> (n, d_t)

or, with ``word_length=k``, consecutive groups of ``k`` virtual tokens are treated as ``k``-subtoken words and
mapped by ``G_k`` with the t-product (the row count must be a multiple of ``k``). The map is linear (no bias), so
moving commutes with the vector algebra: ``move(origin + tau) = move(origin) + move(tau)``; a moved vector
belongs to the *moved origin*, whose content hash becomes its ``origin_id``.
"""

from __future__ import annotations

from typing import overload

import torch

from tpv._tensor import check_prompt_tensor
from tpv.errors import ConfigError, IncompatibleVectorsError
from tpv.fuse.maps import FuseMap
from tpv.origin import Origin
from tpv.vector import TaskPromptVector

__all__ = ["apply", "map_prompt"]


def map_prompt(fmap: FuseMap, prompt: torch.Tensor, *, word_length: int = 1) -> torch.Tensor:
    """Map a soft prompt (or any rows of source embeddings) to the target space.

    Args:
        fmap: the map source -> target.
        prompt: ``(n, d_s)``.
        word_length: virtual tokens per mapped word (``1 .. K``).

    Returns:
        ``(n, d_t)`` in the prompt's dtype.

    Raises:
        ConfigError: wrong width, ``word_length`` outside ``1 .. K``, or ``n`` not a multiple of it.
    """
    p = check_prompt_tensor(prompt, what="prompt")
    if p.shape[1] != fmap.source_dim:
        raise ConfigError(
            f"the prompt has width {p.shape[1]} but {fmap.describe()} maps from width {fmap.source_dim}; "
            f"pass a prompt of {fmap.source_model}"
        )
    k = word_length
    if isinstance(k, bool) or not isinstance(k, int) or k not in fmap.maps:
        raise ConfigError(f"word_length must be an integer in 1 .. {fmap.max_subtokens}, got {word_length!r}")
    n = p.shape[0]
    if n % k:
        raise ConfigError(f"a prompt of {n} rows cannot be cut into words of {k} tokens; use a divisor of {n}")
    x = p.double().reshape(n // k, k, -1).permute(0, 2, 1)  # (n/k, d_s, k)
    y = fmap.map_words(x)  # (n/k, d_t, k)
    return y.permute(0, 2, 1).reshape(n, fmap.target_dim).to(p.dtype)  # (n, d_t)


def _provenance(fmap: FuseMap, word_length: int) -> dict[str, object]:
    return {
        "fuse": {
            "source_model": fmap.source_model,
            "target_model": fmap.target_model,
            "word_length": word_length,
            "max_subtokens": fmap.max_subtokens,
            "word_source": fmap.word_source,
        }
    }


@overload
def apply(fmap: FuseMap, item: torch.Tensor, *, origin: None = None, word_length: int = 1) -> torch.Tensor: ...
@overload
def apply(fmap: FuseMap, item: Origin, *, origin: None = None, word_length: int = 1) -> Origin: ...
@overload
def apply(fmap: FuseMap, item: TaskPromptVector, *, origin: Origin, word_length: int = 1) -> TaskPromptVector: ...


def apply(
    fmap: FuseMap,
    item: torch.Tensor | Origin | TaskPromptVector,
    *,
    origin: Origin | None = None,
    word_length: int = 1,
) -> torch.Tensor | Origin | TaskPromptVector:
    """Move a soft prompt, an origin or a task prompt vector from the map's source model to its target model.

    Example:
        >>> fmap = tpv.fuse.fit("smollm2-135m", "gemma3-270m")  # doctest: +SKIP
        >>> origin_g = tpv.fuse.apply(fmap, origin)  # doctest: +SKIP
        >>> tau_g = tpv.fuse.apply(fmap, tau, origin=origin)  # belongs to origin_g  # doctest: +SKIP
        >>> prompt_g = tau_g.apply_to(origin_g)  # a Gemma-3 soft prompt  # doctest: +SKIP

    Args:
        fmap: the fitted map.
        item: a prompt tensor ``(n, d_s)``, an :class:`~tpv.Origin`, or a :class:`~tpv.TaskPromptVector`.
        origin: for a vector, the origin it was tuned from (its moved copy becomes the new vector's origin).
        word_length: virtual tokens per mapped word (see the module docs).

    Returns:
        The same kind of object in the target model's space: a tensor ``(n, d_t)``; an origin with
        ``base_model`` the target and the move recorded in its params; a vector whose ``origin_id`` is the moved
        origin's id.

    Raises:
        ConfigError: a vector without its origin, or bad ``word_length``.
        IncompatibleVectorsError: the origin given is not the vector's, or an item of another source model.
    """
    if isinstance(item, TaskPromptVector):
        if origin is None:
            raise ConfigError(
                "moving a task prompt vector needs the origin it was tuned from: apply(fmap, vector, origin=origin); "
                "the moved vector belongs to apply(fmap, origin)"
            )
        if origin.id != item.origin_id:
            raise IncompatibleVectorsError(
                f"{item.describe()} was tuned from origin {item.origin_id}, but the origin given is {origin.id}"
            )
        _check_model(fmap, item.base_model)
        moved_origin = apply(fmap, origin, word_length=word_length)
        return TaskPromptVector(
            map_prompt(fmap, item.tensor, word_length=word_length),
            origin_id=moved_origin.id,
            terms=dict(item.terms),
            base_model=fmap.target_model,
            num_virtual_tokens=item.num_virtual_tokens,
            num_transformer_submodules=item.num_transformer_submodules,
        )
    if isinstance(item, Origin):
        _check_model(fmap, item.base_model)
        params = {**dict(item.params), **_provenance(fmap, word_length), "moved_from": item.id}
        return Origin(
            map_prompt(fmap, item.tensor, word_length=word_length),
            init="tensor",
            seed=item.seed,
            params=params,
            base_model=fmap.target_model,
            num_virtual_tokens=item.num_virtual_tokens,
            num_transformer_submodules=item.num_transformer_submodules,
        )
    if isinstance(item, torch.Tensor):
        return map_prompt(fmap, item, word_length=word_length)
    raise ConfigError(f"apply moves a tensor, an Origin or a TaskPromptVector, got {type(item).__name__}")


def _check_model(fmap: FuseMap, base_model: str) -> None:
    from tpv.vector import UNKNOWN_MODEL

    if base_model not in (UNKNOWN_MODEL, fmap.source_model):
        raise IncompatibleVectorsError(
            f"the item belongs to model {base_model!r}, but {fmap.describe()} maps from {fmap.source_model!r}. "
            f"Fix: fit a map from {base_model!r} (tpv.fuse.fit({base_model!r}, target))"
        )
