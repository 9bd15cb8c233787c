"""A model's identity: the name a vector or origin records for the model it lives in (internal).

The same packaged model reached two ways (``load_model("smollm2-135m")``, or ``from_pretrained`` on its converted
folder in tpv's cache) must give vectors that combine. A converted folder holds ``tpv_source.json`` naming the
packaged model it was made from; :func:`canonical_model_id` maps such a folder back to that name. Anything else is
kept as given (a Hub id, another local folder), so two records of one model agree when they name it the same way;
``TaskPromptVector.with_base_model`` / ``Origin.with_base_model`` relabel explicitly when they do not.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

MARKER = "tpv_source.json"
"""The file a converted packaged model's folder holds: ``{"source": {"name": ..., ...}, ...}``."""


@functools.lru_cache(maxsize=256)
def _marker_name(folder: str) -> str | None:
    try:
        record = json.loads(Path(folder, MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = record.get("source") if isinstance(record, dict) else None
    name = source.get("name") if isinstance(source, dict) else None
    return name if isinstance(name, str) and name else None


def canonical_model_id(name: str) -> str:
    """The id to record for a model named ``name``: a converted packaged folder becomes the packaged name.

    Args:
        name: a tpv model name, a Hub id or a local folder.

    Returns:
        The packaged model's name when ``name`` is the folder tpv converted it into (it holds ``tpv_source.json``),
        else ``name`` unchanged.
    """
    if not name or ("/" not in name and os.sep not in name):
        return name
    try:
        folder = os.path.realpath(os.path.expanduser(name))
    except (OSError, ValueError):
        return name
    return _marker_name(folder) or name
