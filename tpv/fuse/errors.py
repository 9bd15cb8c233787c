"""Errors raised by :mod:`tpv.fuse`, re-exported from :mod:`tpv.errors` where they are defined.

The hierarchy (see :mod:`tpv.errors` for the whole tree)::

    TPVError
    └── FuseError                    base of everything tpv.fuse raises on purpose
        ├── NotEnoughWordsError      a word group k holds fewer fitting words than asked (also a ValueError)
        ├── SingularSystemError      a map cannot be solved even with the regularized fallback (also a ValueError)
        └── MapMismatchError         a fitted or cached map does not belong to the models given (also a ModelError)
"""

from __future__ import annotations

from tpv.errors import FuseError, MapMismatchError, NotEnoughWordsError, SingularSystemError

__all__ = ["FuseError", "MapMismatchError", "NotEnoughWordsError", "SingularSystemError"]
