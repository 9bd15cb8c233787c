"""tpv: task prompt vectors, soft prompts treated as vectors you can add, scale, compare, merge and move.

The core (vectors, origins, files, merging) is pure torch and imports no model library; the PEFT layer,
training, tasks and transfer are imported on first use, so ``import tpv`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tpv._version import __version__
from tpv.errors import (
    AdapterError,
    ConfigError,
    FormatError,
    IncompatibleVectorsError,
    InvalidVectorError,
    ModelError,
    OutputExistsError,
    TaskError,
    TPVError,
    TrainingError,
)
from tpv.files import FileInfo, inspect, load, load_origin, load_vector, save
from tpv.merge import MERGE_METHODS, merge
from tpv.origin import Origin
from tpv.search import PAPER_GRID, search_per_task, search_scalar
from tpv.select import rank_sources, select_sources, similarity_table
from tpv.vector import TaskPromptVector, cosine_matrix, mean

# Names served lazily from heavier modules: name -> module.
_LAZY: dict[str, str] = {
    "make_origin": "tpv.adapters",
    "init_prompt_tuning": "tpv.adapters",
    "prompt_of": "tpv.adapters",
    "from_adapter": "tpv.adapters",
    "save_adapter": "tpv.adapters",
    "origin_of": "tpv.adapters",
    "recover_origin": "tpv.adapter_origin",
    "capture_origin": "tpv.peft_save",
    "save_pretrained": "tpv.peft_save",
    "OriginCallback": "tpv.peft_save",
    "load_model": "tpv.models",
    "load_tokenizer": "tpv.models",
    "train": "tpv.engine",
    "evaluate": "tpv.engine",
    "TrainConfig": "tpv.engine",
    "TrainResult": "tpv.engine",
    "transfer": "tpv.transfer",
    "push_to_hub": "tpv.hub",
}

if TYPE_CHECKING:  # pragma: no cover
    from tpv.transfer import transfer as transfer

__all__ = [
    "MERGE_METHODS",
    "PAPER_GRID",
    "AdapterError",
    "ConfigError",
    "FileInfo",
    "FormatError",
    "IncompatibleVectorsError",
    "InvalidVectorError",
    "ModelError",
    "OutputExistsError",
    "Origin",
    "TPVError",
    "TaskError",
    "TaskPromptVector",
    "TrainingError",
    "__version__",
    "cosine_matrix",
    "inspect",
    "load",
    "load_origin",
    "load_vector",
    "mean",
    "merge",
    "rank_sources",
    "save",
    "search_per_task",
    "search_scalar",
    "select_sources",
    "similarity_table",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tpv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
