"""Share vectors, origins, run folders and adapters on the Hugging Face Hub, and read them back by reference.

Writing: :func:`push_to_hub` uploads a :class:`~tpv.TaskPromptVector`, an :class:`~tpv.Origin`, a tpv
``.safetensors`` file, a ``tpv train`` run folder or a PEFT prompt-tuning adapter folder in one commit, with a
generated model card (``README.md``, see :func:`model_card`). ``tpv push SOURCE REPO_ID`` does the same.

Reading: every function that reads a tpv file (:func:`tpv.load`, :func:`tpv.load_vector`, :func:`tpv.load_origin`,
:func:`tpv.inspect`, and so every CLI command that takes files) accepts a Hub reference::

    hf://owner/repo/path/in/repo.safetensors          # the default branch
    hf://owner/repo@v1/path/in/repo.safetensors       # a branch, a tag or a commit hash (``refs%2Fpr%2F1`` for PRs)

and :func:`tpv.from_adapter` accepts ``"owner/repo"`` (when no local folder has that name) or
``hf://owner/repo[@rev][/subfolder]``. References are resolved with ``huggingface_hub.hf_hub_download`` /
``snapshot_download``, so the Hugging Face cache, revisions, tokens (``huggingface-cli login``, ``HF_TOKEN``) and
``HF_HUB_OFFLINE=1`` work as with any other Hub library; the downloaded file is then read by the local loader.
A missing repo, revision or file, or a file not cached while offline, is one tpv error naming the reference and
the fix (:class:`~tpv.FormatError` for files, :class:`~tpv.AdapterError` for adapters, :class:`~tpv.ConfigError`
for uploads), never a traceback from ``huggingface_hub``.

``huggingface_hub`` (installed with ``tpv[peft]``) is imported only when a reference is resolved or a push runs.
"""

import importlib
from typing import TYPE_CHECKING, Any

from tpv.hub.refs import HF_SCHEME, TAGS, HubRef, is_hub_ref, parse_ref, resolve_adapter_dir, resolve_file

if TYPE_CHECKING:  # pragma: no cover
    from tpv.hub.push import model_card as model_card
    from tpv.hub.push import push_to_hub as push_to_hub

__all__ = [
    "HF_SCHEME",
    "TAGS",
    "HubRef",
    "is_hub_ref",
    "model_card",
    "parse_ref",
    "push_to_hub",
    "resolve_adapter_dir",
    "resolve_file",
]


def __getattr__(name: str) -> Any:
    """``push_to_hub`` and ``model_card`` on first use (the upload side reads files, runs and adapters)."""
    if name in ("push_to_hub", "model_card"):
        return getattr(importlib.import_module("tpv.hub.push"), name)
    raise AttributeError(f"module 'tpv.hub' has no attribute {name!r}")
