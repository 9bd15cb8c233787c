"""tpv: task prompt vectors, soft prompts treated as vectors you can add, scale, compare, merge and move.

The core (vectors, origins, files, merging) is pure torch and imports no model library; the PEFT layer,
training, tasks and transfer are imported on first use, so ``import tpv`` stays light. Every public name except
the errors and the version is served on first use (PEP 562), so ``import tpv`` (and ``tpv --help``) does not even
import torch until a vector, a file or a model is touched.
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

# Names served on first use: name -> module.
_LAZY: dict[str, str] = {
    "FileInfo": "tpv.files",
    "inspect": "tpv.files",
    "load": "tpv.files",
    "load_origin": "tpv.files",
    "load_vector": "tpv.files",
    "save": "tpv.files",
    "MERGE_METHODS": "tpv.merge",
    "merge": "tpv.merge",
    "Origin": "tpv.origin",
    "PAPER_GRID": "tpv.search",
    "search_per_task": "tpv.search",
    "search_scalar": "tpv.search",
    "rank_sources": "tpv.select",
    "select_sources": "tpv.select",
    "similarity_table": "tpv.select",
    "TaskPromptVector": "tpv.vector",
    "cosine_matrix": "tpv.vector",
    "mean": "tpv.vector",
    "make_origin": "tpv.adapters",
    "init_prompt_tuning": "tpv.adapters",
    "prompt_of": "tpv.adapters",
    "from_adapter": "tpv.adapters",
    "save_adapter": "tpv.adapters",
    "origin_of": "tpv.adapters",
    "recover_origin": "tpv.adapter_io",
    "capture_origin": "tpv.peft_save",
    "save_pretrained": "tpv.peft_save",
    "OriginCallback": "tpv.peft_save",
    "load_model": "tpv.models",
    "load_tokenizer": "tpv.models",
    "train": "tpv.engine",
    "evaluate": "tpv.engine",
    "TrainConfig": "tpv.engine",
    "TrainResult": "tpv.engine",
    "Job": "tpv.engine",
    "train_many": "tpv.engine",
    "evaluate_many": "tpv.engine",
    "transfer": "tpv.transfer",
    "push_to_hub": "tpv.hub",
}

if TYPE_CHECKING:  # pragma: no cover
    from tpv.files import FileInfo as FileInfo
    from tpv.files import inspect as inspect
    from tpv.files import load as load
    from tpv.files import load_origin as load_origin
    from tpv.files import load_vector as load_vector
    from tpv.files import save as save
    from tpv.merge import MERGE_METHODS as MERGE_METHODS
    from tpv.merge import merge as merge
    from tpv.origin import Origin as Origin
    from tpv.search import PAPER_GRID as PAPER_GRID
    from tpv.search import search_per_task as search_per_task
    from tpv.search import search_scalar as search_scalar
    from tpv.select import rank_sources as rank_sources
    from tpv.select import select_sources as select_sources
    from tpv.select import similarity_table as similarity_table
    from tpv.transfer import transfer as transfer
    from tpv.vector import TaskPromptVector as TaskPromptVector
    from tpv.vector import cosine_matrix as cosine_matrix
    from tpv.vector import mean as mean

__all__ = [
    "AdapterError",
    "ConfigError",
    "FormatError",
    "IncompatibleVectorsError",
    "InvalidVectorError",
    "ModelError",
    "OutputExistsError",
    "TPVError",
    "TaskError",
    "TrainingError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        try:  # a submodule not imported yet (``tpv.vector`` after a bare ``import tpv``)
            return importlib.import_module(f"tpv.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tpv.{name}":
                raise  # the submodule exists but needs a package that is missing: say so
            raise AttributeError(f"module 'tpv' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
