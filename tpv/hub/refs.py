"""Hub references (``hf://owner/repo[@revision]/path``) and their resolution into the Hugging Face cache."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, unquote

from tpv.errors import AdapterError, ConfigError, FormatError, TPVError

if TYPE_CHECKING:
    pass

__all__ = ["HF_SCHEME", "TAGS", "HubRef", "is_hub_ref", "parse_ref", "resolve_adapter_dir", "resolve_file"]

HF_SCHEME = "hf://"
"""The prefix of a Hub reference."""
TAGS = ("tpv", "prompt-tuning", "task-prompt-vector")
"""The tags of every model card :func:`push_to_hub` writes."""

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_NAME}/{_NAME}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CARD = "README.md"
_LOGIN = "run `huggingface-cli login` (or set HF_TOKEN)"

SourceKind = Literal["vector", "origin", "run", "adapter"]


# -- references -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubRef:
    """A parsed Hub reference ``hf://[models/]owner/repo[@revision][/path]``.

    Attributes:
        repo_id: ``owner/repo``.
        revision: a branch, tag or commit hash; ``None`` for the default branch.
        path: the file or folder inside the repo (``""`` for the repo's root).
        repo_type: ``"model"`` (default), ``"dataset"`` or ``"space"``.
    """

    repo_id: str
    revision: str | None = None
    path: str = ""
    repo_type: str = "model"

    def __str__(self) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        rev = "" if self.revision is None else "@" + quote(self.revision, safe="")
        return f"{HF_SCHEME}{kind}{self.repo_id}{rev}" + (f"/{self.path}" if self.path else "")

    @property
    def url(self) -> str:
        """The repo's page (at the revision) on huggingface.co."""
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        tree = f"/tree/{quote(self.revision, safe='')}" if self.revision else ""
        return f"https://huggingface.co/{kind}{self.repo_id}{tree}"


def is_hub_ref(value: object) -> bool:
    """Whether ``value`` is an ``hf://`` reference (a string or path starting with ``hf:/``, not a local path).

    A ``Path`` collapses ``hf://x`` to ``hf:/x``; both spellings count. A local file or folder of that name wins.
    """
    if not isinstance(value, str | os.PathLike):
        return False
    text = os.fspath(value)
    return isinstance(text, str) and text.startswith("hf:/") and not os.path.lexists(text)


def parse_ref(ref: str | os.PathLike[str]) -> HubRef:
    """Parse ``hf://[models/|datasets/|spaces/]owner/repo[@revision][/path]``.

    Args:
        ref: the reference (a ``Path`` that collapsed ``hf://`` to ``hf:/`` is accepted).

    Returns:
        The :class:`HubRef`.

    Raises:
        ConfigError: not an ``hf://`` reference, or a malformed one (no ``owner/repo``, empty revision, ``..``).
    """
    text = os.fspath(ref)
    if not text.startswith("hf:/"):
        raise ConfigError(f"{text!r} is not a Hub reference; write hf://owner/repo[@revision]/path")
    parts = [p for p in text[len("hf:/") :].split("/") if p]
    repo_type = "model"
    if len(parts) >= 3 and parts[0] in _REPO_TYPES:
        repo_type = _REPO_TYPES[parts.pop(0)]
    if len(parts) < 2:
        raise ConfigError(
            f"{text!r}: a Hub reference names the repo as owner/repo: hf://owner/repo[@revision]/path/file.safetensors"
        )
    owner, name = parts[0], parts[1]
    name, at, revision = name.partition("@")
    repo_id = f"{owner}/{name}"
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ConfigError(
            f"{text!r}: {repo_id!r} is not a valid repo id (letters, digits, '-', '_', '.'; as owner/repo)"
        )
    if at and not revision:
        raise ConfigError(f"{text!r}: empty revision after '@'; give a branch, tag or commit hash, or drop the '@'")
    path = "/".join(parts[2:])
    if any(seg in (".", "..") for seg in parts[2:]):
        raise ConfigError(f"{text!r}: the path inside the repo may not contain '.' or '..' segments")
    return HubRef(repo_id=repo_id, revision=unquote(revision) if at else None, path=path, repo_type=repo_type)


def _offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is on (the environment now, or as huggingface_hub read it at import)."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or flag.strip().upper() in ("1", "ON", "YES", "TRUE")


def _require_hub(what: str, error: type[TPVError]) -> None:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise error(f"{what} needs huggingface_hub: pip install 'tpv[peft]' (or pip install huggingface_hub)") from None


def _explain(exc: BaseException, ref: HubRef, what: str, *, offline: bool) -> str:
    """One message for a failed Hub call: what was asked, what went wrong, and the fix."""
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {ref.revision!r}" if ref.revision else ""
    if isinstance(exc, LocalEntryNotFoundError | OfflineModeIsEnabled) and offline:
        return (
            f"{ref}: {what} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be "
            "downloaded. Fix: unset HF_HUB_OFFLINE (or download it once online), or check the repo, revision and path"
        )
    if isinstance(exc, GatedRepoError):
        return f"{ref}: {ref.repo_id} is a gated repo. Fix: request access on {ref.url} and {_LOGIN}"
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{ref}: no repository {ref.repo_id!r} on the Hub (or it is private and you are not logged in). Fix: check "
            f"the name, or {_LOGIN}"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"{ref}: {ref.repo_id} has no revision {ref.revision!r}. Fix: check the branch, tag or commit hash"
    if isinstance(exc, LocalEntryNotFoundError):
        return (
            f"{ref}: cannot reach the Hub and {what} is not in the local Hugging Face cache. Fix: check your "
            "connection, or set HF_HUB_OFFLINE=1 to use cached files only"
        )
    if isinstance(exc, EntryNotFoundError):
        return f"{ref}: {ref.repo_id}{at} holds no {ref.path!r}. Fix: check the path (the repo's files: {ref.url})"
    if isinstance(exc, HFValidationError):
        return f"{ref}: not a valid Hub reference: {exc}"
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if status in (401, 403):
            return f"{ref}: the Hub refused access ({first}). Fix: {_LOGIN} with a token that can read {ref.repo_id}"
        return f"{ref}: the Hub answered with an error ({first}). Fix: check the reference, or retry later"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{ref}: cannot fetch {what} ({type(exc).__name__}: {detail}). Fix: check the reference and your connection"


def resolve_file(ref: str | os.PathLike[str]) -> Path:
    """The local (cached) path of the file an ``hf://`` reference names, downloaded when needed.

    Args:
        ref: ``hf://owner/repo[@revision]/path/file``.

    Returns:
        The file in the Hugging Face cache.

    Raises:
        FormatError: a malformed reference or one that names no file, or the repo, revision or file is missing
            (or not cached while ``HF_HUB_OFFLINE`` is set); the message names the reference and the fix.
    """
    try:
        hub = parse_ref(ref)
    except ConfigError as exc:
        raise FormatError(str(exc)) from None
    if not hub.path:
        raise FormatError(
            f"{hub}: names a repo, not a file; add the file's path: {hub}/vector.safetensors (tpv train runs hold "
            "vector.safetensors and origin.safetensors)"
        )
    _require_hub(f"reading {hub}", FormatError)
    from huggingface_hub import hf_hub_download

    offline = _offline()
    try:
        local = hf_hub_download(
            repo_id=hub.repo_id,
            filename=hub.path,
            revision=hub.revision,
            repo_type=hub.repo_type,
            local_files_only=offline,
        )
    except Exception as exc:  # huggingface_hub raises many kinds; each becomes one tpv error
        raise FormatError(_explain(exc, hub, f"the file {hub.path!r}", offline=offline)) from None
    return Path(local)


def resolve_adapter_dir(adapter_dir: str | os.PathLike[str]) -> Path:
    """The local folder to read an adapter from: ``adapter_dir`` itself, or the downloaded snapshot of a Hub one.

    A Hub adapter is ``hf://owner/repo[@revision][/subfolder]``, or a string ``owner/repo`` when no local file or
    folder has that name. Only the adapter's files are downloaded (``adapter_config.json``,
    ``adapter_model.safetensors``, and tpv's ``origin.safetensors`` / ``tpv_vector.safetensors`` when present).

    Args:
        adapter_dir: a local folder, a repo id or an ``hf://`` reference.

    Returns:
        The folder (for a Hub adapter, inside the Hugging Face cache).

    Raises:
        AdapterError: the repo, revision or subfolder is missing, or not cached while ``HF_HUB_OFFLINE`` is set.
    """
    if is_hub_ref(adapter_dir):
        try:
            hub = parse_ref(adapter_dir)
        except ConfigError as exc:
            raise AdapterError(str(exc)) from None
    elif isinstance(adapter_dir, str) and _REPO_ID.fullmatch(adapter_dir) and not os.path.lexists(adapter_dir):
        hub = HubRef(repo_id=adapter_dir)
    else:
        return Path(adapter_dir)
    _require_hub(f"reading the adapter {hub}", AdapterError)
    from huggingface_hub import snapshot_download

    from tpv._adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, ORIGIN_FILE, VECTOR_FILE

    prefix = f"{hub.path}/" if hub.path else ""
    wanted = [prefix + name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ORIGIN_FILE, VECTOR_FILE)]
    offline = _offline()
    what = "the adapter" + (f" folder {hub.path!r}" if hub.path else "")
    local_note = "" if str(adapter_dir).startswith("hf:") else f"no local folder {str(adapter_dir)!r}, and "
    try:
        snapshot = snapshot_download(
            repo_id=hub.repo_id,
            revision=hub.revision,
            repo_type=hub.repo_type,
            allow_patterns=wanted,
            local_files_only=offline,
        )
    except Exception as exc:  # huggingface_hub raises many kinds; each becomes one tpv error
        raise AdapterError(local_note + _explain(exc, hub, what, offline=offline)) from None
    folder = Path(snapshot, *hub.path.split("/")) if hub.path else Path(snapshot)
    if not (folder / ADAPTER_CONFIG).is_file():
        at = f" at revision {hub.revision!r}" if hub.revision else ""
        cached = " in the local cache (HF_HUB_OFFLINE is set: it may not be downloaded yet)" if offline else ""
        raise AdapterError(
            f"{hub}: {hub.repo_id}{at} holds no {prefix}{ADAPTER_CONFIG}{cached}: not a PEFT adapter. Fix: check the "
            "repo name and subfolder (hf://owner/repo[@revision]/subfolder)"
            + (", or unset HF_HUB_OFFLINE to download it" if offline else "")
        )
    return folder
