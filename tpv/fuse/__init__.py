"""FUSE: cross-tokenizer embedding maps and a gradient bridge (Williams & Kolter, arXiv 2408.04816).

Fit, per word length ``k`` (in target subtokens), a linear map ``G_k`` between two models' token embedding
spaces under the t-product, cache it, and use it to

* carry gradients from one model's embedding space to another's word by word, so that one discrete prompt can be
  optimized against several models with different tokenizers (:func:`optimize_prompt`), and
* move soft prompts, origins and task prompt vectors between models (:func:`apply`).

Example:
    >>> import tpv.fuse
    >>> fmap = tpv.fuse.fit("smollm2-135m", "gemma3-270m")  # doctest: +SKIP  (cached after the first fit)
    >>> origin_g = tpv.fuse.apply(fmap, origin)  # doctest: +SKIP
    >>> tau_g = tpv.fuse.apply(fmap, tau, origin=origin)  # doctest: +SKIP

Modules: :mod:`~tpv.fuse.tproduct` (the tensor algebra), :mod:`~tpv.fuse.words` (fitting words),
:mod:`~tpv.fuse.fit` (grouping and solving), :mod:`~tpv.fuse.maps` (the fitted map), :mod:`~tpv.fuse.cache`
(files), :mod:`~tpv.fuse.bridge` (gradient bridge and search), :mod:`~tpv.fuse.move` (soft prompts and vectors),
:mod:`~tpv.fuse.errors` (re-exported from :mod:`tpv.errors`). :class:`EmbeddingSpace` is
:class:`tpv.spaces.EmbeddingSpace` and :class:`LabelWordLoss` lives in :mod:`tpv.engine.prompt_scoring`. Note
that ``tpv.fuse.fit`` is the function; the module is reached as ``sys.modules["tpv.fuse.fit"]`` or with
``from tpv.fuse.fit import ...``.
"""

from __future__ import annotations

from tpv.fuse.bridge import (
    Alignment,
    BridgeFunction,
    BridgeResult,
    LabelWordLoss,
    Member,
    SearchResult,
    align_words,
    allowed_tokens,
    bridge_prompt,
    optimize_prompt,
    pull_back,
    push_forward,
    source_gradient,
)
from tpv.fuse.cache import cache_path, load_map, read_map_info, save_map
from tpv.fuse.errors import FuseError, MapMismatchError, NotEnoughWordsError, SingularSystemError
from tpv.fuse.fit import fit, fit_map
from tpv.fuse.maps import FuseMap
from tpv.fuse.move import apply, map_prompt
from tpv.fuse.words import WordList, resolve_words, wordnet_words
from tpv.spaces import EmbeddingSpace

__all__ = [
    "Alignment",
    "BridgeFunction",
    "BridgeResult",
    "EmbeddingSpace",
    "FuseError",
    "FuseMap",
    "LabelWordLoss",
    "MapMismatchError",
    "Member",
    "NotEnoughWordsError",
    "SearchResult",
    "SingularSystemError",
    "WordList",
    "align_words",
    "allowed_tokens",
    "apply",
    "bridge_prompt",
    "cache_path",
    "fit",
    "fit_map",
    "load_map",
    "map_prompt",
    "optimize_prompt",
    "pull_back",
    "push_forward",
    "read_map_info",
    "resolve_words",
    "save_map",
    "source_gradient",
    "wordnet_words",
]
