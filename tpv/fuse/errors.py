"""Errors raised by :mod:`tpv.fuse`; all derive from :class:`tpv.TPVError`.

The hierarchy::

    TPVError
    └── FuseError                    base of everything tpv.fuse raises on purpose
        ├── NotEnoughWordsError      a word group k holds fewer fitting words than asked (also a ValueError)
        ├── SingularSystemError      a map cannot be solved even with the regularized fallback (also a ValueError)
        └── MapMismatchError         a fitted or cached map does not belong to the models given (also a ModelError)
"""

from __future__ import annotations

from tpv.errors import ModelError, TPVError

__all__ = ["FuseError", "MapMismatchError", "NotEnoughWordsError", "SingularSystemError"]


class FuseError(TPVError):
    """Base class of the errors raised by :mod:`tpv.fuse`."""


class NotEnoughWordsError(FuseError, ValueError):
    """Some k (number of target subtokens) has fewer fitting words than ``min_words``."""


class SingularSystemError(FuseError, ValueError):
    """A map cannot be solved: the source side holds no information (all-zero or non-finite embeddings)."""


class MapMismatchError(FuseError, ModelError):
    """A fitted map (from the cache or a file) was fitted for other models, tokenizers or settings."""
