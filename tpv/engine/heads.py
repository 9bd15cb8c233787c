"""The classification head of a sequence-classification model, and a slot of its own for each run (internal).

With a sequence-classification prompt, PEFT trains a copy of the model's head (its ``modules_to_save``, the
modules named :data:`HEAD_NAMES`): it wraps the head **in place**, in a ``ModulesToSaveWrapper`` holding the
original module and the trainable copy. A second PEFT model built on the same model object finds that wrapper and
reuses its copy, so a second run would start from the first run's trained head and go on changing the head of the
first run's result. :func:`with_own_head` gives every run (a :func:`tpv.train` call, a job of
:func:`tpv.train_many`) a view of the model that shares every module, and so every weight, but holds the head in a
slot of its own: PEFT wraps the view's slot, each run trains its own copy of the model's original head, and the
model passed in is never wrapped.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from tpv.engine.scoring import infer_kind
from tpv.errors import ConfigError
from tpv.models import unwrap_model

__all__ = ["HEAD_NAMES", "head_path", "head_paths", "with_own_head"]

HEAD_NAMES = ("classifier", "score")
"""The module names PEFT trains a copy of with a sequence-classification prompt (its ``modules_to_save``; PEFT
matches module paths ending in one of them)."""


def head_paths(model: Any) -> list[str]:
    """The module paths of the heads PEFT trains a copy of, outermost only (in module order).

    Args:
        model: a ``transformers`` sequence classifier, or a PEFT model wrapping one.

    Returns:
        E.g. ``["classifier"]`` (BERT, RoBERTa), ``["score"]`` (decoder classifiers), ``["pre_classifier",
        "classifier"]`` (DistilBERT: PEFT matches both); empty when the model has none.
    """
    base = unwrap_model(model)
    found = [name for name, _ in base.named_modules() if name.endswith(HEAD_NAMES)]
    return [name for name in found if not any(name.startswith(f"{other}.") for other in found)]


def head_path(model: Any) -> str:
    """Where a sequence-classification model keeps the one head a pack can route: a ``classifier``.

    Args:
        model: a ``transformers`` sequence classifier, or a PEFT model wrapping one.

    Returns:
        The head's module path, e.g. ``"classifier"`` (BERT, RoBERTa).

    Raises:
        ConfigError: no such head, several, or a head named ``score`` (a decoder classifier, which reads the last
            position: in a pack, padding moves it).
    """
    found = head_paths(model)
    what = f"{type(unwrap_model(model)).__name__} (seq-cls)"
    if len(found) != 1:
        raise ConfigError(
            f"cannot pack prompts of this {what}: PEFT trains the head named {' or '.join(HEAD_NAMES)}, and the model "
            f"has {len(found)} such modules ({', '.join(found) or 'none'}). Fix: train its prompts one at a time "
            "with tpv.train"
        )
    if not found[0].endswith("classifier"):
        raise ConfigError(
            f"cannot pack prompts of this {what}: its head {found[0]!r} reads each row's last position, which a pack's "
            "padding moves (packed rows would not score as alone). Fix: train its prompts one at a time with tpv.train"
        )
    return found[0]


def _replaced(model: nn.Module, path: str, module: nn.Module) -> nn.Module:
    """A shallow copy of ``model`` whose submodule at ``path`` is ``module``; every other module is shared.

    Args:
        model: any module.
        path: a submodule's dotted path, e.g. ``"classifier"``.
        module: what the copy holds there.

    Returns:
        The copy: the modules along ``path`` are shallow copies with children of their own; ``model`` is unchanged.
    """
    name, _, rest = path.partition(".")
    view = copy.copy(model)
    view._modules = dict(model._modules)  # its own children, the same modules
    child = model._modules[name]
    assert child is not None
    view._modules[name] = _replaced(child, rest, module) if rest else module
    return view


def with_own_head(model: Any) -> Any:
    """``model`` for one run: a seq-cls model's view with its head slots of its own; other kinds as they are.

    The view shares every module (and so all weights) but holds the model's own head in a slot of its own, so the
    run's PEFT model trains its own copy of it, starting from the model's head; a head PEFT already wrapped (e.g.
    by ``peft.get_peft_model`` on this model) gives its original module.

    Args:
        model: a plain ``transformers`` model.

    Returns:
        The view (seq-cls with a head named as in :data:`HEAD_NAMES`), else ``model`` itself.
    """
    if infer_kind(model) != "seq-cls":
        return model
    view = model
    for path in head_paths(model):
        head = model.get_submodule(path)
        view = _replaced(view, path, getattr(head, "original_module", head))
    return view
