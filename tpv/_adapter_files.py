"""Names of the files in a PEFT prompt-tuning adapter folder and PEFT's task types (internal, import-light).

Shared by :mod:`tpv.adapters` (origins, PEFT models), :mod:`tpv.adapter_io` (adapter folders),
:mod:`tpv.adapter_origin` (origins of adapters made without tpv) and :mod:`tpv.peft_save` (saving with the origin).
"""

from __future__ import annotations

from tpv.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ORIGIN_FILE = "origin.safetensors"
VECTOR_FILE = "tpv_vector.safetensors"
PROMPT_KEY = "prompt_embeddings"
PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth", "pytorch_model.bin")

# tpv task types -> PEFT TaskType values; PEFT's own values are accepted too.
PEFT_TASK: dict[str, str] = {"causal-lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "seq-cls": "SEQ_CLS"}
PEFT_TASKS = ("CAUSAL_LM", "SEQ_2_SEQ_LM", "SEQ_CLS", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
TPV_TASK: dict[str, str] = {peft: tpv for tpv, peft in PEFT_TASK.items()}
"""PEFT TaskType values -> tpv task types (for loading a model the way an adapter needs it)."""


def peft_task_name(task_type: str) -> str:
    """The PEFT TaskType value of a tpv task type (``"causal-lm"``...) or of a PEFT TaskType in any case.

    Raises:
        ConfigError: neither.
    """
    if task_type in PEFT_TASK:
        return PEFT_TASK[task_type]
    if isinstance(task_type, str) and task_type.upper() in PEFT_TASKS:
        return task_type.upper()
    raise ConfigError(
        f"task_type must be one of {', '.join(PEFT_TASK)} or a PEFT TaskType ({', '.join(PEFT_TASKS)}); "
        f"got {task_type!r}"
    )
