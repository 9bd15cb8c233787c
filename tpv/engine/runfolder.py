"""The run folder of :func:`tpv.engine.train`: its file names, ``run.json``, and the rules for reusing a folder.

A finished run folder holds ``adapter/`` (a standard PEFT adapter), ``origin.safetensors``, ``vector.safetensors``
and ``run.json`` (config, history, environment), each written atomically; an unfinished one holds the checkpoint
folder instead (:mod:`tpv.engine.checkpoint`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tpv._fs import atomic_write_text
from tpv.engine.checkpoint import CHECKPOINT_DIR, CheckpointState, read_checkpoint
from tpv.engine.env import environment
from tpv.errors import ConfigError, TrainingError

if TYPE_CHECKING:
    from tpv.engine.records import TrainResult
    from tpv.engine.setup import _Setup

__all__ = ["ADAPTER_DIR", "ORIGIN_FILE", "RUN_FILE", "RUN_VECTOR_FILE", "read_run", "run_record", "write_run"]

RUN_FILE = "run.json"
"""The run's record: config, data, learning rate, history, metrics and environment."""
ADAPTER_DIR = "adapter"
"""The run's PEFT adapter folder."""
ORIGIN_FILE = "origin.safetensors"
"""The origin the run's prompt was tuned from."""
RUN_VECTOR_FILE = "vector.safetensors"
"""The run's task prompt vector (not :data:`tpv.adapters.VECTOR_FILE`, the vector saved inside an adapter folder)."""
_RUN_FORMAT = "tpv-run"


def _check_out_dir(out: Path, *, resume: bool, overwrite: bool) -> CheckpointState | None:
    if resume and overwrite:
        raise ConfigError("resume=True and overwrite=True contradict each other: pass one (resume continues the run "
                          "in out_dir, overwrite replaces it)")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} is a file, not a folder; pass a folder path")
    ckpt = read_checkpoint(out) if resume else None
    if ckpt is not None:
        return ckpt
    finished = (out / RUN_FILE).is_file()
    if resume and finished:
        raise TrainingError(
            f"{str(out)!r} holds a finished run ({RUN_FILE}) and no checkpoint, so there is nothing to resume. "
            "Fix: pick a new out_dir, or pass overwrite=True to train again"
        )
    if resume:
        raise TrainingError(
            f"{str(out)!r} holds no checkpoint to resume from. Fix: drop resume=True (--resume) to start a new run "
            "there, or point out_dir at the run to continue"
        )
    if not overwrite and (finished or (out / CHECKPOINT_DIR).exists()):
        raise ConfigError(
            f"out_dir {str(out)!r} already holds a run; pass resume=True to continue it, overwrite=True to replace "
            "it, or another out_dir"
        )
    if overwrite and (out / CHECKPOINT_DIR).is_dir():
        shutil.rmtree(out / CHECKPOINT_DIR)
    return None


def run_record(setup: _Setup, result: TrainResult, *, seconds: float, world: int) -> dict[str, Any]:
    """The JSON object written to ``run.json`` for a finished run.

    Args:
        setup: the run's resolved setup (model, task, data, origin, config).
        result: what :func:`tpv.engine.train` returns.
        seconds: wall time of all of the run's sessions (a resumed run adds the earlier ones).
        world: the number of processes that trained it.

    Returns:
        The record (``format``, ``version``, identity, metric, origin, vector, data, learning rate, history, ...).
    """
    s = setup
    return {
        "format": _RUN_FORMAT,
        "version": 1,
        **{k: s.identity[k] for k in ("model", "task", "kind", "label_words", "config", "world_size")},
        "metric": s.metric,
        "origin": {"id": s.origin.id, "init": s.origin.init, "seed": s.origin.seed, "file": ORIGIN_FILE},
        "vector": {"file": RUN_VECTOR_FILE, "norm": result.vector.norm(), "terms": dict(result.vector.terms)},
        "start": s.start,
        "adapter": ADAPTER_DIR,
        "data": {
            "train_examples": len(s.encoded),
            "validation_examples": len(s.val_encoded),
            "train_fingerprint": s.identity["train_data"],
            "validation_fingerprint": s.identity["validation_data"],
            "max_length": s.max_length,
        },
        "lr": result.lr,
        "lr_choice": result.lr_choice,
        "norm_ratio": result.norm_ratio,
        "warnings": result.warnings,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "best": {"step": result.best_step, "score": result.best_score},
        "metrics": result.metrics,
        "seconds": round(seconds, 3),
        "steps_per_second": result.steps_per_second,
        "resumed_from": result.resumed_from,
        "history": {"train": result.history, "eval": result.evals},
        "environment": environment(s.device, s.precision, world_size=world),
    }


def write_run(out: Path, setup: _Setup, result: TrainResult, *, seconds: float, world: int) -> None:
    """Write a finished run into ``out``: adapter, origin, vector, then ``run.json``; drop the checkpoint.

    Args:
        out: the run folder.
        setup: the run's resolved setup.
        result: what :func:`tpv.engine.train` returns.
        seconds: wall time of all of the run's sessions.
        world: the number of processes that trained it.
    """
    from tpv.adapter_io import save_adapter
    from tpv.files import save

    s = setup
    run = run_record(s, result, seconds=seconds, world=world)
    extra = _head_tensors(s.peft_model) if s.kind == "seq-cls" else None
    save_adapter(
        result.prompt,
        out / ADAPTER_DIR,
        origin=s.origin,
        base_model=s.model_name,
        task_type=s.kind,
        extra_tensors=extra,
        overwrite=True,
    )
    provenance = {"task": s.task, "model": s.model_name, "steps": result.steps, "run": RUN_FILE, "start": s.start}
    save(s.origin, out / ORIGIN_FILE, provenance=provenance, overwrite=True)  # the run folder's rule applies
    save(result.vector, out / RUN_VECTOR_FILE, provenance=provenance, overwrite=True)
    atomic_write_text(out / RUN_FILE, json.dumps(run, indent=1, default=_json_default) + "\n")
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)


def read_run(path: Path) -> dict[str, Any]:
    """A run's ``run.json``, checked: a JSON object whose task, model and kind are strings and label words a list.

    Args:
        path: the ``run.json`` file.

    Returns:
        The record.

    Raises:
        ConfigError: the file is not JSON, not an object, or has fields of the wrong type.
    """
    from tpv._fs import open_regular

    try:
        with open_regular(path) as fh:
            recorded = json.loads(fh.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path}: not a readable run record ({exc}); re-run `tpv train` or pass --task/--model"
        ) from None
    problems = []
    if not isinstance(recorded, dict):
        problems.append(f"it is a JSON {type(recorded).__name__}, not an object")
    else:
        for key in ("task", "model", "kind"):
            if key in recorded and not isinstance(recorded[key], str):
                problems.append(f"{key!r} is not a string")
        words = recorded.get("label_words")
        if words is not None and not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
            problems.append("'label_words' is not a list of strings")
    if problems:
        raise ConfigError(f"{path}: not a valid run record: {'; '.join(problems)}; re-run `tpv train`")
    return recorded  # type: ignore[no-any-return]


def _head_tensors(peft_model: Any) -> dict[str, torch.Tensor]:
    """PEFT's saved tensors beside the prompt (a sequence-classification head copy), in PEFT's key format."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    return {k: v.detach().to("cpu").clone() for k, v in state.items() if k != "prompt_embeddings"}


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")
