"""NLU tasks: a registry of declarative task specs, loaders (hub, local files, offline suite), few-shot sampling.

Importing this package is light: ``datasets`` is imported only when a hub task is loaded.

Example:
    >>> from tpv.tasks import get_task, load_task, few_shot
    >>> get_task("rotten_tomatoes").label_words
    (' negative', ' positive')
    >>> data = load_task("rotten_tomatoes", seed=0)  # doctest: +SKIP
    >>> shots = few_shot(data.train, k=16, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from tpv.tasks.loaders import (
    carve_held_out,
    dedupe,
    examples_from_rows,
    load_task,
    read_rows,
    split_like_paper,
)
from tpv.tasks.offline import missing_requirement
from tpv.tasks.registry import get_group, get_task, list_groups, list_tasks, register_group, register_task
from tpv.tasks.sampling import SHOTS, few_shot, stratified_cap
from tpv.tasks.spec import METRIC_NAMES, Example, MetricName, SourceKind, TaskData, TaskGroup, TaskSpec

__all__ = [
    "METRIC_NAMES",
    "SHOTS",
    "Example",
    "MetricName",
    "SourceKind",
    "TaskData",
    "TaskGroup",
    "TaskSpec",
    "availability",
    "carve_held_out",
    "dedupe",
    "examples_from_rows",
    "few_shot",
    "get_group",
    "get_task",
    "list_groups",
    "list_tasks",
    "load_task",
    "read_rows",
    "register_group",
    "register_task",
    "split_like_paper",
    "stratified_cap",
]


def availability(spec: TaskSpec) -> tuple[bool | None, str]:
    """Whether a task's data can be loaded on this machine, without loading it.

    Args:
        spec: the task.

    Returns:
        ``(True, where)`` when it is here; ``(False, reason with the install command)`` when it is not;
        ``(None, reason)`` for hub tasks with ``datasets`` installed, which load only with internet access.
    """
    import importlib.util
    from pathlib import Path

    if spec.source == "offline":
        missing = missing_requirement(spec.name)
        return (False, missing) if missing else (True, "installed")
    if spec.source == "local":
        absent = [path for _, path in spec.local_files if not Path(path).is_file()]
        if not spec.local_files or absent:
            return False, f"missing file(s): {', '.join(absent) or 'none named'}"
        return True, "local files present"
    if importlib.util.find_spec("datasets") is None:
        return False, "needs the datasets package and internet: pip install datasets"
    return None, "needs internet (Hugging Face hub), or data_files=..."
