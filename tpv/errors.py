"""Errors raised by tpv.

Every error a user can cause derives from one base class, so ``except tpv.TPVError`` catches them all,
and each message names what was wrong and how to fix it. The hierarchy::

    TPVError                         base of everything tpv raises on purpose
    ├── InvalidVectorError           a tensor that cannot be a vector or origin (shape, NaN/inf, dtype)
    ├── IncompatibleVectorsError     two vectors that cannot be combined (origin, shape, dtype, model)
    ├── FormatError                  a file that is not a valid tpv file (version, kind, truncated, pickle)
    ├── ModelError                   a model that cannot be resolved, loaded or does not fit a prompt
    │   └── AnchorError              two tokenizers share too few anchors, or an anchor word is not shared
    ├── AdapterError                 a PEFT adapter folder that is not prompt tuning or does not fit
    ├── TaskError                    an unknown task, or a task whose data is missing or malformed
    ├── TrainingError                training that cannot start or diverged (empty data, NaN loss)
    ├── OutputExistsError            an output path that exists (pass overwrite) or is one of the inputs
    ├── ConfigError                  an invalid option value (names the option, the value, the rule)
    └── FuseError                    base of everything tpv.fuse raises on purpose
        ├── NotEnoughWordsError      a word group k holds fewer fitting words than asked (also a ValueError)
        ├── SingularSystemError      a map cannot be solved even with the regularized fallback (also a ValueError)
        └── MapMismatchError         a fitted or cached map does not belong to the models given (also a ModelError)

All subclasses also derive from ``ValueError`` (except ``ModelError``/``TaskError`` which are lookup-like and
derive from ``LookupError``, ``OutputExistsError`` which derives from ``FileExistsError``, and ``FuseError`` whose
subclasses add ``ValueError`` or ``ModelError`` themselves), so code written against plain Python exceptions keeps
working. ``AnchorError`` is also importable from :mod:`tpv.transfer`, the ``FuseError`` family from
:mod:`tpv.fuse` and :mod:`tpv.fuse.errors`.
"""

from __future__ import annotations

__all__ = [
    "AdapterError",
    "AnchorError",
    "ConfigError",
    "FormatError",
    "FuseError",
    "IncompatibleVectorsError",
    "InvalidVectorError",
    "MapMismatchError",
    "ModelError",
    "NotEnoughWordsError",
    "OutputExistsError",
    "SingularSystemError",
    "TPVError",
    "TaskError",
    "TrainingError",
]


class TPVError(Exception):
    """Base class of every error tpv raises on purpose."""


class InvalidVectorError(TPVError, ValueError):
    """A tensor cannot be a task prompt vector or origin (wrong rank, non-finite values, bad metadata)."""


class IncompatibleVectorsError(TPVError, ValueError):
    """Two vectors (or a vector and an origin) cannot be combined: different origins, shapes, dtypes or models."""


class FormatError(TPVError, ValueError):
    """A file is not a valid tpv file: newer format version, missing key, wrong kind, truncated, or pickle."""


class ModelError(TPVError, LookupError):
    """A model name cannot be resolved or loaded, or the model does not fit the prompt (embedding width)."""


class AdapterError(TPVError, ValueError):
    """A PEFT adapter folder is not a prompt-tuning adapter, or does not fit the given origin or model."""


class TaskError(TPVError, LookupError):
    """An unknown task, or a task whose data is missing on this machine or malformed."""


class TrainingError(TPVError, RuntimeError):
    """Training cannot start (empty dataset, labels missing from the verbalizer) or diverged (NaN loss)."""


class OutputExistsError(TPVError, FileExistsError):
    """An output path already exists (pass ``overwrite=True`` / ``--overwrite``) or is one of the command's inputs."""


class ConfigError(TPVError, ValueError):
    """An option has an invalid value; the message names the option, the value and the rule it broke."""


class AnchorError(ModelError):
    """Two (or more) tokenizers share too few anchors, or a requested anchor word is not shared.

    A :class:`ModelError` (the models do not fit each other), so ``except tpv.TPVError`` catches it. Raised by
    :mod:`tpv.transfer`.
    """


class FuseError(TPVError):
    """Base class of the errors raised by :mod:`tpv.fuse`."""


class NotEnoughWordsError(FuseError, ValueError):
    """Some k (number of target subtokens) has fewer fitting words than ``min_words``."""


class SingularSystemError(FuseError, ValueError):
    """A map cannot be solved: the source side holds no information (all-zero or non-finite embeddings)."""


class MapMismatchError(FuseError, ModelError):
    """A fitted map (from the cache or a file) was fitted for other models, tokenizers or settings."""
