"""Zero-shot cross-model transfer of soft prompts, origins and task prompt vectors (PTfer and linear baselines).

A prompt tuned on one model (the *source*) is moved to another model (the *target*) with a different embedding
space, width and tokenizer, without training on the target:

* :mod:`tpv.transfer.anchors`: words both tokenizers keep as one token, the shared fixed points;
* :mod:`tpv.transfer.relative`: a prompt encoded by its cosines to the anchors (pure, registered projections);
* :mod:`tpv.transfer.search`: the target search that finds target rows with the same relative code (PTfer,
  Wu, Wu, Mou, ICLR 2024), optionally choosing its candidate on target validation data;
* :mod:`tpv.transfer.linear`: the least-squares / orthogonal-Procrustes baseline fitted on the anchors;
* :func:`transfer` / :func:`run_transfer`: the entry point (prompts, origins and vectors; multi-source), returning
  a :class:`TransferResult` (:mod:`tpv.transfer.result`). ``ModelSpace`` is :class:`tpv.spaces.EmbeddingSpace` and
  ``AnchorError`` is defined in :mod:`tpv.errors`.

The package itself is callable: ``tpv.transfer(prompt, source_model=..., target_model=...)`` is
:func:`tpv.transfer.transfer`, whichever of ``tpv.transfer`` (the package) or the function a caller reaches. This
package imports ``transformers`` only when a model is loaded by name.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from tpv.transfer.anchors import (
    AnchorError,
    SharedAnchors,
    count_shared_anchors,
    find_shared_anchors,
    normalize_token,
)
from tpv.transfer.api import (
    METHODS,
    Method,
    ModelSpace,
    Source,
    TransferResult,
    VectorMode,
    run_transfer,
    transfer,
    validation_scorer,
)
from tpv.transfer.linear import LinearMap, fit_linear_map
from tpv.transfer.relative import PROJECTIONS, encode, keep_top_k, register_projection
from tpv.transfer.search import CodeSearchResult, SearchConfig, SearchResult, search_target_prompt

__all__ = [
    "METHODS",
    "PROJECTIONS",
    "AnchorError",
    "CodeSearchResult",
    "LinearMap",
    "Method",
    "ModelSpace",
    "SearchConfig",
    "SearchResult",
    "SharedAnchors",
    "Source",
    "TransferResult",
    "VectorMode",
    "count_shared_anchors",
    "encode",
    "find_shared_anchors",
    "fit_linear_map",
    "keep_top_k",
    "normalize_token",
    "register_projection",
    "run_transfer",
    "search_target_prompt",
    "transfer",
    "validation_scorer",
]


class _CallableModule(types.ModuleType):
    """The ``tpv.transfer`` package, callable as :func:`transfer` (the issue's ``tpv.transfer(...)``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return transfer(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
