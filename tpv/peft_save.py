"""Keep the origin with every save of a PEFT prompt-tuning model: your own loop, or Hugging Face ``Trainer``.

PEFT never saves the init a prompt was tuned from, so ``peft_model.save_pretrained(dir)`` writes a folder whose
vector cannot be computed unless the origin is kept elsewhere. tpv records the origin on the PEFT model
(:func:`tpv.init_prompt_tuning` does it; :func:`capture_origin` does it for a model made with ``get_peft_model``),
and then:

* :func:`save_pretrained` writes PEFT's files (through ``peft_model.save_pretrained``) plus ``origin.safetensors``
  (and ``tpv_vector.safetensors`` when ``task=`` is given), atomically;
* :class:`OriginCallback`, passed to ``transformers.Trainer(callbacks=[...])``, writes ``origin.safetensors`` (and
  the vector) into every checkpoint Trainer saves (``output_dir/checkpoint-<step>``, or its ``<adapter_name>/``
  subfolder for an adapter not named ``default``, where PEFT puts it).

Either folder then reads back with ``tpv.from_adapter(folder, task=...)``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tpv._adapter_files import ADAPTER_CONFIG, ORIGIN_FILE, VECTOR_FILE
from tpv._fs import atomic_dir, check_output
from tpv.adapters import _attach_origin, _prompt_encoder, origin_of, prompt_of
from tpv.errors import AdapterError
from tpv.files import save
from tpv.models import model_name
from tpv.origin import Origin

__all__ = ["OriginCallback", "capture_origin", "save_pretrained"]

logger = logging.getLogger("tpv.adapters")

_NO_ORIGIN = (
    "no origin is recorded on this PEFT model (adapter {name!r}), and PEFT never saves the init. Fix: build it with "
    "tpv.init_prompt_tuning(model, origin), or call tpv.capture_origin(peft_model) right after get_peft_model "
    "(before training), or pass origin="
)


def capture_origin(peft_model: Any, *, adapter_name: str | None = None) -> Origin:
    """Record the current prompt of a PEFT model as its origin; call it right after ``get_peft_model``.

    A model made by :func:`tpv.init_prompt_tuning` already has its origin: it is returned unchanged. Otherwise the
    current prompt becomes the origin (``init="text"`` with ``params["text"]`` for PEFT's ``TEXT`` init, else
    ``init="tensor"``; ``params["peft_init"]`` names PEFT's init), recorded on the model for
    :func:`save_pretrained` and :class:`OriginCallback`. Called after training it would record the tuned prompt,
    and every vector would be zero: capture before the first step.

    Args:
        peft_model: a ``peft.PeftModel`` with a prompt-tuning adapter.
        adapter_name: which adapter (default: the active one).

    Returns:
        The origin, shape ``(num_virtual_tokens * num_transformer_submodules, token_dim)``.

    Raises:
        AdapterError: not a PEFT prompt-tuning model.
    """
    _, name = _prompt_encoder(peft_model, adapter_name)
    known = origin_of(peft_model, adapter_name=name)
    if known is not None:
        return known
    config = peft_model.peft_config[name]
    peft_init = str(getattr(config.prompt_tuning_init, "value", config.prompt_tuning_init)).upper()
    params: dict[str, Any] = {"peft_init": peft_init}
    text = getattr(config, "prompt_tuning_init_text", None)
    if peft_init == "TEXT" and isinstance(text, str):
        params["text"] = text
    origin = Origin(
        prompt_of(peft_model, adapter_name=name),
        init="text" if "text" in params else "tensor",
        params=params,
        base_model=model_name(peft_model),
        num_virtual_tokens=int(config.num_virtual_tokens),
        num_transformer_submodules=int(config.num_transformer_submodules or 1),
    )
    _attach_origin(peft_model, origin, name)
    return origin


def _origin_for(peft_model: Any, origin: Origin | None, adapter_name: str | None) -> tuple[Origin, str]:
    """``(origin, adapter name)``: the given origin or the one recorded on the model, checked against the prompt."""
    _, name = _prompt_encoder(peft_model, adapter_name)
    found = origin if origin is not None else origin_of(peft_model, adapter_name=name)
    if found is None:
        raise AdapterError(_NO_ORIGIN.format(name=name))
    if not isinstance(found, Origin):
        raise AdapterError(f"origin= must be a tpv.Origin, got {type(found).__name__}")
    shape = tuple(prompt_of(peft_model, adapter_name=name).shape)
    if shape != found.shape:
        raise AdapterError(
            f"the model's prompt (adapter {name!r}) has shape {shape} but {found.describe()} has shape {found.shape}: "
            "pass the origin this prompt was tuned from"
        )
    return found, name


def _write_beside(folder: Path, origin: Origin, task: str | None) -> None:
    """Write ``origin.safetensors`` (and the vector of ``task``) into a PEFT adapter folder."""
    save(origin, folder / ORIGIN_FILE, overwrite=True)
    if task is not None:
        from tpv.adapter_io import from_adapter

        vector = from_adapter(folder, origin=origin, task=task)
        save(vector, folder / VECTOR_FILE, overwrite=True)


def save_pretrained(
    peft_model: Any,
    save_directory: str | os.PathLike[str],
    *,
    origin: Origin | None = None,
    task: str | None = None,
    adapter_name: str | None = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """``peft_model.save_pretrained(save_directory)`` that keeps the origin: PEFT's files plus ``origin.safetensors``.

    The folder is built in a temp sibling and moved into place complete. ``tpv.from_adapter(folder, task=...)``
    reads it back (with ``task=`` given here, ``tpv.from_adapter(folder)`` alone).

    Args:
        peft_model: a ``peft.PeftModel`` with a prompt-tuning adapter.
        save_directory: the folder to write.
        origin: the origin the prompt was tuned from; default the one recorded on the model by
            :func:`tpv.init_prompt_tuning` or :func:`capture_origin`.
        task: also write ``tpv_vector.safetensors``, the vector ``prompt - origin`` with terms ``{task: 1.0}``.
        adapter_name: which adapter (default: the active one). PEFT writes an adapter not named ``default`` into
            ``save_directory/<adapter_name>``; the origin goes beside it.
        overwrite: replace an existing non-empty ``save_directory``.
        **kwargs: passed to ``peft_model.save_pretrained`` (``save_embedding_layers`` defaults to ``False``).

    Returns:
        The adapter folder (``save_directory``, or its ``<adapter_name>`` subfolder).

    Raises:
        AdapterError: no origin recorded or given, an origin of another shape, not a prompt-tuning model.
        OutputExistsError: ``save_directory`` exists, is not empty, and ``overwrite`` is false.
    """
    found, name = _origin_for(peft_model, origin, adapter_name)
    out = check_output(save_directory, overwrite=overwrite, folder=True)
    kwargs.setdefault("save_embedding_layers", False)
    kwargs.setdefault("selected_adapters", [name])
    with atomic_dir(out) as tmp:
        peft_model.save_pretrained(str(tmp), **kwargs)
        _write_beside(tmp if name == "default" else tmp / name, found, task)
    return out if name == "default" else out / name


class OriginCallback(TrainerCallback):  # type: ignore[misc]
    """A ``transformers.TrainerCallback`` writing ``origin.safetensors`` into every checkpoint Trainer saves.

    Example::

        peft_model = tpv.init_prompt_tuning(model, origin)     # records the origin on the model
        trainer = Trainer(model=peft_model, args=args, train_dataset=data, callbacks=[tpv.OriginCallback()])
        trainer.train()                                       # checkpoint-*/ hold origin.safetensors
        tau = tpv.from_adapter("out/checkpoint-500", task="sst2")

    The origin is checked when training begins, so a missing one fails before the first step. Only the main
    process writes. Trainer's final ``trainer.save_model(dir)`` is not a checkpoint: use
    ``tpv.save_pretrained(trainer.model, dir)`` for it.

    Args:
        origin: the origin; default the one recorded on the trained model (by :func:`tpv.init_prompt_tuning` or
            :func:`capture_origin`).
        task: also write ``tpv_vector.safetensors`` (terms ``{task: 1.0}``) into each checkpoint.
        adapter_name: which adapter (default: the model's active one).
    """

    def __init__(self, origin: Origin | None = None, *, task: str | None = None, adapter_name: str | None = None):
        """Keep the arguments; the origin is resolved against the model when training begins."""
        if origin is not None and not isinstance(origin, Origin):
            raise AdapterError(f"OriginCallback(origin=) must be a tpv.Origin, got {type(origin).__name__}")
        self.origin = origin
        self.task = task
        self.adapter_name = adapter_name
        self._resolved: tuple[Origin, str] | None = None

    def _resolve(self, model: Any) -> tuple[Origin, str]:
        if self._resolved is None:
            if model is None:
                raise AdapterError("OriginCallback got no model from Trainer; pass it the PEFT model it trains")
            from peft import PeftModel

            inner = getattr(model, "module", None)  # accelerate/DDP wrap the model in .module
            if not isinstance(model, PeftModel) and isinstance(inner, PeftModel):
                model = inner
            self._resolved = _origin_for(model, self.origin, self.adapter_name)
        return self._resolved

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Find (and check) the origin before the first step."""
        self._resolved = None
        self._resolve(model)

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Write the origin (and the vector) beside the adapter of the checkpoint Trainer just saved."""
        if not getattr(state, "is_world_process_zero", True):
            return
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        origin, name = self._resolve(model)
        checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        folder = checkpoint if name == "default" else checkpoint / name
        if not (folder / ADAPTER_CONFIG).is_file():
            logger.warning("OriginCallback: no %s in %s; the origin was not written there", ADAPTER_CONFIG, folder)
            return
        _write_beside(folder, origin, self.task)
