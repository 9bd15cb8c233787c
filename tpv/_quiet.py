"""Quiet model loading: hide the noise ``transformers`` and PEFT print while tpv loads or wraps a model (internal)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["quiet_loading"]

_QUIETED_WARNINGS = (
    # PEFT's get_peft_model reads the deprecated alias (getattr(model, "is_gradient_checkpointing")) of every model
    # it wraps (peft 0.17-0.21 with transformers 5); tpv cannot avoid the read, and the user can do nothing about it.
    r"`is_gradient_checkpointing` is deprecated",
)


def _no_bar(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A ``transformers`` tqdm hook that builds every bar disabled (it still iterates)."""
    return factory(*args, **{**kwargs, "disable": True})


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide the noise ``transformers`` and PEFT print while a model is loaded or wrapped, for this block only.

    Inside the block, ``transformers``' own progress bars ("Loading weights", "Loading checkpoint shards") are
    off and the FutureWarnings in :data:`_QUIETED_WARNINGS` (deprecated names that library internals use, not
    tpv) are ignored. Everything else stays: Hub download bars, tpv's progress bars and every other warning.
    :func:`load_model` loads inside it; callers of PEFT's ``get_peft_model`` wrap that call in it too.

    Example:
        >>> with quiet_loading():  # doctest: +SKIP
        ...     peft_model = get_peft_model(model, config)
    """
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings():
        for message in _QUIETED_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5: affects its own bars only
        if set_hook is not None:
            previous = set_hook(_no_bar)
            try:
                yield
            finally:
                set_hook(previous)
            return
        enabled = hf_logging.is_progress_bar_enabled()  # older releases: the global switch, restored after
        hf_logging.disable_progress_bar()
        try:
            yield
        finally:
            if enabled:
                hf_logging.enable_progress_bar()
