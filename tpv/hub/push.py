"""Uploading to the Hub: staging what is pushed, the generated model card, and the upload itself."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tpv._fs import atomic_write_text
from tpv.errors import ConfigError, FormatError, TPVError
from tpv.hub.refs import _CARD, _COMMIT, _LOGIN, _REPO_ID, TAGS, HubRef, _offline, _require_hub, is_hub_ref

if TYPE_CHECKING:
    from tpv.files import FileInfo
    from tpv.origin import Origin
    from tpv.vector import TaskPromptVector

__all__ = ["model_card", "push_to_hub"]


SourceKind = Literal["vector", "origin", "run", "adapter"]


# -- what is uploaded -----------------------------------------------------------------------------------------------


@dataclass
class _Staged:
    """What :func:`_stage` put in the upload folder, and what the model card says about it."""

    kind: SourceKind
    files: list[str] = field(default_factory=list)
    vector: FileInfo | None = None
    origin: FileInfo | None = None
    run: dict[str, Any] | None = None
    adapter: dict[str, Any] | None = None  # adapter_config.json
    adapter_path: str | None = None  # the adapter folder inside the upload ("" = its root)
    vector_file: str | None = None
    origin_file: str | None = None


def _copy_file(src: Path, dest: Path) -> None:
    if dest.exists():
        raise ConfigError(f"two files of the upload would be named {dest.name!r}; rename one of them")
    shutil.copyfile(src, dest)


def _origin_source(origin: Origin | str | os.PathLike[str]) -> Origin:
    from tpv.files import load_origin
    from tpv.origin import Origin

    return origin if isinstance(origin, Origin) else load_origin(origin)


def _add_origin_for(
    vector: FileInfo, origin: Origin | str | os.PathLike[str] | None, src: Path | None, out: Path
) -> FileInfo | None:
    """Stage the vector's origin: ``origin`` if given (checked), else a matching origin file beside ``src``."""
    from tpv.files import inspect, save

    if origin is not None:
        org = _origin_source(origin)
        if org.id != vector.origin_id:
            raise ConfigError(
                f"origin= is {org.id}, but the vector was tuned from {vector.origin_id}: pass the vector's origin"
            )
        save(org, out / "origin.safetensors")
        return inspect(out / "origin.safetensors")
    if src is None:
        return None
    for cand in (
        src.with_name(src.name.removesuffix(".safetensors") + ".origin.safetensors"),
        src.with_name("origin.safetensors"),
    ):
        if cand != src and cand.is_file():
            try:
                info = inspect(cand)
            except FormatError:
                continue
            if info.kind == "origin" and info.origin_id == vector.origin_id:
                _copy_file(cand, out / cand.name)
                return inspect(out / cand.name)
    return None


def _copy_tree(src: Path, out: Path) -> None:
    """Copy a source folder, leaving out hidden and temp files, checkpoints and its own card (a new one is made)."""
    from tpv.engine.checkpoint import CHECKPOINT_DIR

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n.startswith(".") or n in ("__pycache__", CHECKPOINT_DIR)}
        return skip | ({_CARD} if Path(folder) == src else set())

    shutil.copytree(src, out, ignore=ignore, dirs_exist_ok=True)


def _stage(
    source: TaskPromptVector | Origin | str | os.PathLike[str],
    out: Path,
    origin: Origin | str | os.PathLike[str] | None,
) -> _Staged:
    """Put the files to upload into ``out`` (an empty folder) and describe them."""
    from tpv.files import inspect, save
    from tpv.origin import Origin
    from tpv.vector import TaskPromptVector

    if isinstance(source, TaskPromptVector):
        info = inspect(save(source, out / "vector.safetensors"))
        staged = _Staged("vector", vector=info, vector_file="vector.safetensors")
        staged.origin = _add_origin_for(info, origin, None, out)
    elif isinstance(source, Origin):
        if origin is not None:
            raise ConfigError("origin= goes with a vector; an origin is pushed on its own")
        save(source, out / "origin.safetensors")
        staged = _Staged("origin", origin=inspect(out / "origin.safetensors"), origin_file="origin.safetensors")
    elif isinstance(source, str | os.PathLike):
        staged = _stage_path(Path(source), out, origin)
    else:
        raise ConfigError(
            "push_to_hub uploads a TaskPromptVector, an Origin, a tpv .safetensors file, a tpv train run folder or a "
            f"PEFT adapter folder; got {type(source).__name__}"
        )
    if staged.origin is not None and staged.origin_file is None:
        staged.origin_file = Path(staged.origin.path).name
    staged.files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return staged


def _stage_path(src: Path, out: Path, origin: Origin | str | os.PathLike[str] | None) -> _Staged:
    from tpv._adapter_files import ADAPTER_CONFIG, ORIGIN_FILE, VECTOR_FILE
    from tpv.adapter_io import read_adapter
    from tpv.engine.runfolder import ADAPTER_DIR, RUN_FILE, RUN_VECTOR_FILE, read_run
    from tpv.files import inspect

    if is_hub_ref(src):
        raise ConfigError(f"{src}: push_to_hub uploads local files; download it first (tpv.load) to push it again")
    if src.is_file():
        info = inspect(src)
        _copy_file(src, out / src.name)
        if info.kind == "origin":
            if origin is not None:
                raise ConfigError("origin= goes with a vector; an origin file is pushed on its own")
            return _Staged("origin", origin=inspect(out / src.name), origin_file=src.name)
        staged = _Staged("vector", vector=inspect(out / src.name), vector_file=src.name)
        staged.origin = _add_origin_for(info, origin, src, out)
        return staged
    if not src.is_dir():
        raise ConfigError(
            f"{str(src)!r}: no such file or folder; push_to_hub uploads a tpv .safetensors file, a tpv train run "
            "folder or a PEFT adapter folder"
        )
    if origin is not None:
        raise ConfigError("origin= goes with a vector; a folder carries its own origin.safetensors")
    if (src / RUN_FILE).is_file():
        run = read_run(src / RUN_FILE)
        if (src / ADAPTER_DIR / ADAPTER_CONFIG).is_file():
            read_adapter(src / ADAPTER_DIR)  # a prompt-tuning adapter with safetensors weights, or AdapterError
        _copy_tree(src, out)
        staged = _Staged("run", run=run)
        if (out / RUN_VECTOR_FILE).is_file():
            staged.vector, staged.vector_file = inspect(out / RUN_VECTOR_FILE), RUN_VECTOR_FILE
        if (out / ORIGIN_FILE).is_file():
            staged.origin, staged.origin_file = inspect(out / ORIGIN_FILE), ORIGIN_FILE
        if (out / ADAPTER_DIR / ADAPTER_CONFIG).is_file():
            staged.adapter = json.loads((out / ADAPTER_DIR / ADAPTER_CONFIG).read_text(encoding="utf-8"))
            staged.adapter_path = ADAPTER_DIR
        return staged
    if (src / ADAPTER_CONFIG).is_file():
        _prompt, config = read_adapter(src)  # AdapterError for LoRA, pickle weights, malformed files
        _copy_tree(src, out)
        staged = _Staged("adapter", adapter=config, adapter_path="")
        if (out / VECTOR_FILE).is_file():
            staged.vector, staged.vector_file = inspect(out / VECTOR_FILE), VECTOR_FILE
        if (out / ORIGIN_FILE).is_file():
            staged.origin, staged.origin_file = inspect(out / ORIGIN_FILE), ORIGIN_FILE
        return staged
    raise ConfigError(
        f"{str(src)!r} is neither a tpv train run folder (no {RUN_FILE}) nor a PEFT adapter folder (no "
        f"{ADAPTER_CONFIG}); push a tpv .safetensors file, a run folder or an adapter folder"
    )


# -- the model card -------------------------------------------------------------------------------------------------

_FILE_NOTES = {
    "vector.safetensors": "the task prompt vector (tuned prompt minus origin), a tpv file",
    "tpv_vector.safetensors": "the task prompt vector (tuned prompt minus origin), a tpv file",
    "origin.safetensors": "the origin: the random init the prompt was tuned from, a tpv file",
    "run.json": "the training record: config, data, learning rate, history, metrics, environment",
    "adapter_config.json": "PEFT PromptTuningConfig",
    "adapter_model.safetensors": "PEFT weights: prompt_embeddings (the tuned soft prompt)",
}


def _task(st: _Staged) -> str | None:
    if st.run is not None and isinstance(st.run.get("task"), str):
        return str(st.run["task"])
    for info in (st.vector, st.origin):
        if info is not None and len(info.terms) == 1:
            return next(iter(info.terms))
        if info is not None and isinstance(info.provenance.get("task"), str):
            return str(info.provenance["task"])
    return None


def _base_model(st: _Staged) -> str | None:
    from tpv.vector import UNKNOWN_MODEL

    candidates = [st.run.get("model") if st.run else None]
    candidates += [info.base_model for info in (st.vector, st.origin) if info is not None]
    candidates += [st.adapter.get("base_model_name_or_path") if st.adapter else None]
    for name in candidates:
        if isinstance(name, str) and name and name != UNKNOWN_MODEL:
            return name
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _title(st: _Staged, task: str | None, base: str | None) -> str:
    on = f" on {base}" if base else ""
    if st.kind == "origin" and st.origin is not None:
        return f"Prompt-tuning origin {st.origin.origin_id.removeprefix('sha256:')[:12]}{on}"
    if st.kind == "adapter":
        return f"Prompt-tuning adapter{f' for {task}' if task else ''}{on}"
    if st.kind == "run":
        return f"Task prompt vector{f' for {task}' if task else ''}{on} (tpv train run)"
    terms = ", ".join(st.vector.terms) if st.vector is not None else ""
    return f"Task prompt vector{f' for {task or terms}' if task or terms else ''}{on}"


def _rows(st: _Staged, task: str | None, base: str | None) -> list[tuple[str, str]]:
    from tpv._version import __version__

    info = st.vector or st.origin
    rows: list[tuple[str, str]] = [("base model", f"`{base}`" if base else "unknown")]
    if task:
        rows.append(("task", task))
    if st.vector is not None:
        rows.append(("terms (task: coefficient)", f"`{json.dumps(st.vector.terms, sort_keys=True)}`"))
    origin_id = st.origin.origin_id if st.origin is not None else st.vector.origin_id if st.vector else None
    if origin_id:
        rows.append(("origin id", f"`{origin_id}`"))
    if st.origin is not None:
        rows.append(("origin init", f"{st.origin.init} (seed {json.dumps(st.origin.seed)})"))
    if info is not None:
        subs = info.num_transformer_submodules
        layout = "2 submodules, encoder-decoder" if subs == 2 else f"{subs} submodule"
        rows.append(("prompt", f"{info.num_virtual_tokens} virtual tokens x {info.token_dim} ({layout})"))
    if st.adapter is not None:
        rows.append(("PEFT", f"{st.adapter.get('peft_type')} {st.adapter.get('task_type') or ''}".strip()))
    written = f" (files written by tpv {info.library_version})" if info is not None else ""
    rows.append(("tpv version", f"{__version__}{written}"))
    return rows


def _metrics(run: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    metric = run.get("metric")
    scalars = {k: v for k, v in (metrics or {}).items() if _is_number(v) and k != "step"}
    if metric in scalars and scalars.get("score") == scalars[metric]:
        scalars.pop("score")  # the selection score repeats the selected metric
    if not scalars:
        return lines
    lines += ["", "## Metrics", ""]
    best = run.get("best") if isinstance(run.get("best"), dict) else {}
    where = f" at step {best.get('step')}" if best and best.get("step") is not None else ""
    lines.append(f"Validation metrics of the kept prompt{where}" + (f" (selected on {metric})" if metric else "") + ":")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {_number(v)} |" for k, v in scalars.items()]
    extra = [(k, run.get(k)) for k in ("steps", "lr") if _is_number(run.get(k))]
    if extra:
        lines += ["", ", ".join(f"{k}: {v:.4g}" for k, v in extra)]
    return lines


def _usage(st: _Staged, hub: HubRef) -> list[str]:
    def ref(name: str) -> str:
        return str(HubRef(hub.repo_id, hub.revision, f"{hub.path}/{name}" if hub.path else name))

    code = ["import tpv", ""]
    if st.vector_file:
        code.append(f'vector = tpv.load_vector("{ref(st.vector_file)}")')
    if st.origin_file:
        code.append(f'origin = tpv.load_origin("{ref(st.origin_file)}")')
    if st.vector_file and st.origin_file:
        code += ["prompt = vector.apply_to(origin)  # the tuned soft prompt, (rows, dim)"]
    if st.adapter_path is not None:
        sub = "/".join(p for p in (hub.path, st.adapter_path) if p)
        if st.vector_file:
            code += ["", "# the same vector, read from the PEFT adapter (tuned prompt - origin)"]
        code.append(f'vector = tpv.from_adapter("{HubRef(hub.repo_id, hub.revision, sub)}")')
    lines = ["", "## Use", "", "With [tpv](https://pypi.org/project/tpv/) (`pip install 'tpv[peft]'`):", ""]
    lines += ["```python", *code, "```"]
    if st.vector_file and st.origin_file:
        lines += [
            "",
            "Vectors tuned from the same origin add and scale (`0.5 * vector + other`); start prompt tuning from "
            "`origin + vector` with `tpv.init_prompt_tuning(model, vector, origin=origin)`.",
        ]
    if st.adapter_path is not None:
        sub = "/".join(p for p in (hub.path, st.adapter_path) if p)
        args = [f'"{hub.repo_id}"'] + ([f'subfolder="{sub}"'] if sub else [])
        args += [f'revision="{hub.revision}"'] if hub.revision else []
        lines += ["", "With PEFT alone (no tpv needed):", "", "```python", "from peft import PeftModel", ""]
        lines += [f"model = PeftModel.from_pretrained(base_model, {', '.join(args)})", "```"]
    return lines


def _render(st: _Staged, hub: HubRef) -> str:
    """The model card (``README.md``) of a staged upload."""
    task, base = _task(st), _base_model(st)
    front = ["---"]
    if st.kind == "adapter":
        front.append("library_name: peft")
    if base and _REPO_ID.fullmatch(base) and not os.path.lexists(base):
        front.append(f"base_model: {json.dumps(base)}")
    front += ["tags:", *(f"- {t}" for t in TAGS), "---", ""]
    body = [f"# {_title(st, task, base)}", ""]
    body.append(
        "A task prompt vector is a tuned soft prompt minus the random init it was tuned from (its *origin*); "
        "vectors of one origin can be added, scaled and merged. Made with tpv."
    )
    body += ["", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in _rows(st, task, base))]
    if st.run is not None:
        body += _metrics(st.run)
    body += ["", "## Files", ""]
    for name in st.files:
        if name == _CARD:
            continue
        note = _FILE_NOTES.get(Path(name).name, "")
        if name.endswith(".origin.safetensors"):
            note = _FILE_NOTES["origin.safetensors"]
        body.append(f"- `{name}`" + (f": {note}" if note else ""))
    body += _usage(st, hub)
    return "\n".join(front + body) + "\n"


def _clean_path_in_repo(path_in_repo: str | None) -> str:
    if path_in_repo is None:
        return ""
    parts = [p for p in path_in_repo.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"path_in_repo={path_in_repo!r}: give a folder inside the repo, without '.' or '..'")
    return "/".join(parts)


def _hub_target(repo_id: str, revision: str | None, path_in_repo: str | None) -> HubRef:
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ConfigError(
            f"repo_id={repo_id!r}: give the repo as owner/name (your user or organization, then the repo's name; "
            "letters, digits, '-', '_', '.')"
        )
    if revision is not None and (not revision.strip() or _COMMIT.fullmatch(revision)):
        raise ConfigError(f"revision={revision!r}: push to a branch name (a commit hash cannot be pushed to)")
    return HubRef(repo_id=repo_id, revision=revision, path=_clean_path_in_repo(path_in_repo))


def model_card(
    obj_or_folder: TaskPromptVector | Origin | str | os.PathLike[str],
    repo_id: str = "owner/repo",
    *,
    path_in_repo: str | None = None,
    revision: str | None = None,
    origin: Origin | str | os.PathLike[str] | None = None,
) -> str:
    """The model card :func:`push_to_hub` would upload as ``README.md``, without uploading anything.

    Args:
        obj_or_folder: what :func:`push_to_hub` accepts.
        repo_id: the repo the card's loading examples name.
        path_in_repo: the folder inside the repo the files would go to.
        revision: the branch they would be pushed to.
        origin: a vector's origin (as in :func:`push_to_hub`).

    Returns:
        The card: YAML front matter (``tags``, ``base_model`` when it is a Hub id, ``library_name: peft`` for an
        adapter folder), a table of the metadata, metrics of a run, the files and how to load them.
    """
    hub = _hub_target(repo_id, revision, path_in_repo)
    with tempfile.TemporaryDirectory(prefix="tpv-card-") as tmp:
        staged = _stage(obj_or_folder, Path(tmp), origin)
    return _render(staged, hub)


# -- uploading ------------------------------------------------------------------------------------------------------


def _explain_push(exc: BaseException, hub: HubRef) -> str:
    from huggingface_hub.utils import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    head = f"cannot push to {hub.repo_id}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if type(exc).__name__ == "LocalTokenNotFoundError" or status == 401:
        return f"{head}: not logged in to the Hugging Face Hub. Fix: {_LOGIN}, or pass token="
    if isinstance(exc, RepositoryNotFoundError):
        return f"{head}: no such repository (or no access). Fix: check the name, pass create_repo=True, or {_LOGIN}"
    if isinstance(exc, RevisionNotFoundError):
        return f"{head}: no branch {hub.revision!r}. Fix: check the branch, or pass create_repo=True to create it"
    if status == 403:
        return f"{head}: the token cannot write there ({detail}). Fix: {_LOGIN} with a write token for that owner"
    if isinstance(exc, HfHubHTTPError):
        return f"{head}: the Hub answered with an error ({detail}). Fix: check the repo id, or retry later"
    return f"{head} ({type(exc).__name__}: {detail}). Fix: check your connection and the repo id, or retry later"


def _describe(st: _Staged, task: str | None) -> str:
    if st.kind == "origin" and st.origin is not None:
        return f"origin {st.origin.origin_id}"
    what = {"vector": "task prompt vector", "run": "tpv train run", "adapter": "prompt-tuning adapter"}[st.kind]
    return what + (f" ({task})" if task else "")


def push_to_hub(
    obj_or_folder: TaskPromptVector | Origin | str | os.PathLike[str],
    repo_id: str,
    *,
    path_in_repo: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    create_repo: bool = True,
    origin: Origin | str | os.PathLike[str] | None = None,
) -> str:
    """Upload a vector, an origin, a tpv file, a ``tpv train`` run or a PEFT adapter to the Hub, with a model card.

    Everything goes up in one commit: the files (a vector or origin object is written with :func:`tpv.save` first;
    a folder's hidden files, checkpoint and own ``README.md`` are left out) and a generated ``README.md`` (see
    :func:`model_card`). A vector file's origin is added when it lies beside it (``origin.safetensors`` or
    ``<name>.origin.safetensors`` with the vector's origin id), or when given as ``origin``. Read them back with
    ``tpv.load("hf://owner/repo/vector.safetensors")`` or ``tpv.from_adapter("owner/repo")``.

    Args:
        obj_or_folder: a :class:`~tpv.TaskPromptVector`, an :class:`~tpv.Origin`, a tpv ``.safetensors`` file, a
            ``tpv train`` run folder (``run.json``) or a PEFT prompt-tuning adapter folder (``adapter_config.json``,
            e.g. from :func:`tpv.save_adapter`).
        repo_id: ``owner/name`` of a model repo.
        path_in_repo: the folder inside the repo to put the files in (default: its root). The card goes there too,
            so a repo can hold several vectors, each with its own ``README.md``.
        revision: the branch to push to (created from the default branch when missing and ``create_repo``).
        private: make a newly created repo private (an existing repo keeps its visibility).
        token: a Hub token; default the one of ``huggingface-cli login`` / ``HF_TOKEN``.
        commit_message: default ``"Upload <what> with tpv <version>"``.
        create_repo: create the repo (and the branch) when missing; with ``False`` they must exist.
        origin: a vector's origin (an :class:`~tpv.Origin` or its file), uploaded as ``origin.safetensors``.

    Returns:
        The URL of the commit (or of the repo when the Hub returns none).

    Raises:
        ConfigError: a bad ``repo_id``/``path_in_repo``/``revision``, a source that is none of the above, an origin
            that is not the vector's, ``HF_HUB_OFFLINE`` set, not logged in, no write access or a failed upload.
        FormatError: a file that is not a tpv file.
        AdapterError: an adapter folder that is not prompt tuning or holds only pickle weights.
    """
    from tpv._version import __version__

    hub = _hub_target(repo_id, revision, path_in_repo)
    _require_hub("push_to_hub", ConfigError)
    from huggingface_hub import HfApi

    if _offline():
        raise ConfigError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set (no network). Fix: unset HF_HUB_OFFLINE")
    with tempfile.TemporaryDirectory(prefix="tpv-push-") as tmp:
        out = Path(tmp) / "upload"
        out.mkdir()
        staged = _stage(obj_or_folder, out, origin)
        atomic_write_text(out / _CARD, _render(staged, hub))
        message = commit_message or f"Upload {_describe(staged, _task(staged))} with tpv {__version__}"
        api = HfApi(token=token)
        url: Any = None
        try:
            if create_repo:
                url = api.create_repo(repo_id=repo_id, token=token, private=private, repo_type="model", exist_ok=True)
                if revision is not None and revision != "main":
                    api.create_branch(repo_id=repo_id, branch=revision, token=token, repo_type="model", exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=str(out),
                path_in_repo=hub.path or None,
                repo_type="model",
                revision=revision,
                commit_message=message,
                token=token,
            )
        except TPVError:
            raise
        except Exception as exc:  # huggingface_hub raises many kinds; each becomes one tpv error
            raise ConfigError(_explain_push(exc, hub)) from None
    return str(getattr(info, "commit_url", None) or url or hub.url)
