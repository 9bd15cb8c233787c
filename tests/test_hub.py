"""Tests of tpv.hub: hf:// references read through huggingface_hub's own cache, and push_to_hub up to the upload.

Nothing reaches the network. Loading runs huggingface_hub for real, offline (``HF_HUB_OFFLINE=1``), against a cache
folder populated here in the layout huggingface_hub writes (``models--owner--repo/refs/<ref>`` holding a commit
hash, ``snapshots/<hash>/<file>`` symlinks into ``blobs/``). Pushing runs for real up to the upload: the ``HfApi``
methods that would talk to the Hub are replaced on the class by a recorder that keeps their arguments and the
uploaded folder's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed (pip install 'tpv[peft]')")

from huggingface_hub import HfApi, constants

import tpv
from tpv.cli import main
from tpv.errors import AdapterError, ConfigError, FormatError
from tpv.hub import HubRef, is_hub_ref, model_card, parse_ref, push_to_hub

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
ORIGIN = tpv.Origin.gaussian(4, 8, seed=3, base_model="HuggingFaceTB/SmolLM2-135M")


def vector(task: str = "sst2", scale: float = 1.0) -> tpv.TaskPromptVector:
    tuned = ORIGIN.tensor + scale * torch.linspace(-1, 1, 32).reshape(4, 8)
    return tpv.TaskPromptVector.from_prompts(tuned, ORIGIN, task=task, base_model="HuggingFaceTB/SmolLM2-135M")


# -- a real huggingface_hub cache, offline --------------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: both the environment and huggingface_hub's constants point at it."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def populate(
    cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str, refs: tuple[str, ...] = ("main",)
) -> Path:
    """Put ``files`` into the cache as huggingface_hub does: blobs by hash, snapshot symlinks, refs to the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def file_bytes(obj: tpv.TaskPromptVector | tpv.Origin, tmp_path: Path, name: str) -> bytes:
    return tpv.save(obj, tmp_path / "src" / name).read_bytes()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_load_inspect_by_reference_from_the_cache(hf_cache: Path, tmp_path: Path) -> None:
    """tpv.load / load_vector / load_origin / inspect read hf://owner/repo/file from the cache, bit for bit."""
    v = vector()
    populate(
        hf_cache,
        "me/tpv-sst2",
        {
            "vector.safetensors": file_bytes(v, tmp_path, "v.safetensors"),
            "runs/origin.safetensors": file_bytes(ORIGIN, tmp_path, "o.safetensors"),
        },
        commit=COMMIT_A,
    )
    back = tpv.load("hf://me/tpv-sst2/vector.safetensors")
    assert isinstance(back, tpv.TaskPromptVector) and back == v
    assert tpv.load_vector("hf://me/tpv-sst2/vector.safetensors") == v
    org = tpv.load_origin("hf://me/tpv-sst2/runs/origin.safetensors")
    assert org == ORIGIN and org.id == ORIGIN.id
    info = tpv.inspect("hf://me/tpv-sst2/vector.safetensors")
    assert info.kind == "vector" and info.terms == {"sst2": 1.0} and str(hf_cache) in info.path
    # a Path collapses hf:// to hf:/ (the CLI's file arguments are Paths): the same reference
    assert tpv.load(Path("hf://me/tpv-sst2/vector.safetensors")) == v
    with pytest.raises(FormatError, match="expected a tpv vector file"):
        tpv.load_vector("hf://me/tpv-sst2/runs/origin.safetensors")


def test_a_revision_pins_a_commit_branch_or_tag(hf_cache: Path, tmp_path: Path) -> None:
    """@<commit hash> reads that snapshot even after main moved on; @<tag> follows refs/<tag>."""
    old, new = vector(scale=1.0), vector(scale=2.0)
    populate(hf_cache, "me/tpv", {"vector.safetensors": file_bytes(old, tmp_path, "a")}, commit=COMMIT_A, refs=("v1",))
    populate(hf_cache, "me/tpv", {"vector.safetensors": file_bytes(new, tmp_path, "b")}, commit=COMMIT_B)
    assert tpv.load("hf://me/tpv/vector.safetensors") == new
    assert tpv.load(f"hf://me/tpv@{COMMIT_A}/vector.safetensors") == old
    assert tpv.load(f"hf://me/tpv@{COMMIT_B}/vector.safetensors") == new
    assert tpv.load("hf://me/tpv@v1/vector.safetensors") == old
    assert tpv.load("hf://models/me/tpv@main/vector.safetensors") == new


def test_from_adapter_by_repo_id_and_subfolder(hf_cache: Path, tmp_path: Path) -> None:
    """from_adapter("owner/repo") and hf://owner/repo@rev/subfolder read an adapter from the cache snapshot."""
    pytest.importorskip("peft")
    v = vector()
    adapter = tpv.save_adapter(v, tmp_path / "adapter", origin=ORIGIN)
    populate(hf_cache, "me/adapter", folder_bytes(adapter), commit=COMMIT_A)
    populate(hf_cache, "me/runs", {f"sst2/{k}": b for k, b in folder_bytes(adapter).items()}, commit=COMMIT_B)
    assert tpv.from_adapter("me/adapter") == v
    assert tpv.from_adapter("hf://me/adapter") == v
    assert tpv.from_adapter(f"hf://me/runs@{COMMIT_B}/sst2") == v
    by_ref = tpv.from_adapter("hf://me/runs/sst2", origin="hf://me/runs/sst2/origin.safetensors", task="x")
    assert dict(by_ref.terms) == {"x": 1.0} and torch.equal(by_ref.apply_to(ORIGIN), v.apply_to(ORIGIN))
    prompt, config = tpv.adapters.read_adapter("me/adapter")
    assert config["peft_type"] == "PROMPT_TUNING" and torch.equal(prompt, v.apply_to(ORIGIN))


def test_a_local_folder_wins_over_a_repo_id(hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """from_adapter("me/adapter") reads ./me/adapter when it exists, and never asks the Hub."""
    (tmp_path / "me" / "adapter").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AdapterError, match="not a PEFT adapter folder"):
        tpv.from_adapter("me/adapter")


def test_missing_repo_file_or_subfolder_offline_is_one_clear_error(hf_cache: Path, tmp_path: Path) -> None:
    """A miss while offline: FormatError / AdapterError naming the reference and the fix, no hub traceback."""
    populate(hf_cache, "me/tpv", {"vector.safetensors": file_bytes(vector(), tmp_path, "v")}, commit=COMMIT_A)
    cases = [
        (lambda: tpv.load("hf://me/tpv/nope.safetensors"), FormatError, "hf://me/tpv/nope.safetensors"),
        (lambda: tpv.inspect("hf://me/none/vector.safetensors"), FormatError, "hf://me/none/vector.safetensors"),
        (lambda: tpv.load("hf://me/tpv@v9/vector.safetensors"), FormatError, "hf://me/tpv@v9/vector.safetensors"),
        (lambda: tpv.from_adapter("me/none"), AdapterError, "hf://me/none"),
        (lambda: tpv.from_adapter("hf://me/tpv/sub"), AdapterError, "hf://me/tpv/sub"),
    ]
    for call, error, ref in cases:
        with pytest.raises(error) as info:
            call()
        message = str(info.value)
        assert ref in message and "HF_HUB_OFFLINE" in message, message
        assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    with pytest.raises(FormatError, match="names a repo, not a file"):
        tpv.load("hf://me/tpv")
    with pytest.raises(FormatError, match="owner/repo"):
        tpv.load("hf://justone")
    with pytest.raises(AdapterError, match="no local folder 'me/none'"):
        tpv.from_adapter("me/none")


def test_cli_commands_take_references(hf_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tpv inspect hf://...` works (the loader resolves it); a miss is one line on stderr, exit status 2."""
    populate(hf_cache, "me/tpv", {"vector.safetensors": file_bytes(vector(), tmp_path, "v")}, commit=COMMIT_A)
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "hf://me/tpv/vector.safetensors", "--json"])
    assert exc.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["terms"] == {"sst2": 1.0}
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "hf://me/tpv/other.safetensors"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error (FormatError): hf://me/tpv/other.safetensors")
    assert len(err.strip().splitlines()) == 1


def test_references_parse() -> None:
    """parse_ref splits repo, revision (percent-decoded) and path; malformed ones are refused."""
    assert parse_ref("hf://o/r@refs%2Fpr%2F3/a/b.safetensors") == HubRef("o/r", "refs/pr/3", "a/b.safetensors")
    assert parse_ref("hf://datasets/o/r/f") == HubRef("o/r", None, "f", "dataset")
    assert str(HubRef("o/r", "refs/pr/3", "f")) == "hf://o/r@refs%2Fpr%2F3/f"
    assert is_hub_ref("hf://o/r/f") and is_hub_ref(Path("hf://o/r/f")) and not is_hub_ref("o/r")
    for bad in ("hf://o", "hf://o/r@/f", "hf://o/r/../f", "hf://o/-r/f", "o/r/f"):
        with pytest.raises(ConfigError):
            parse_ref(bad)


# -- push_to_hub, up to the upload ----------------------------------------------------------------------------------


class Recorder:
    """Stands in for the HfApi methods that talk to the Hub; keeps their arguments and the uploaded files."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}
        self.fail: BaseException | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        recorder = self

        def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
            recorder.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def create_branch(self: HfApi, repo_id: str, **kwargs: Any) -> None:
            recorder.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

        def upload_folder(self: HfApi, **kwargs: Any) -> Any:
            recorder.calls.append(("upload_folder", kwargs))
            if recorder.fail is not None:
                raise recorder.fail
            recorder.files = folder_bytes(Path(kwargs["folder_path"]))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/{COMMIT_A}"})()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def call(self, name: str) -> dict[str, Any]:
        found = [kw for n, kw in self.calls if n == name]
        assert len(found) == 1, self.calls
        return found[0]

    @property
    def card(self) -> str:
        return self.files["README.md"].decode("utf-8")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Online (the recorder answers instead of the Hub)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    recorder = Recorder()
    recorder.install(monkeypatch)
    return recorder


def test_push_a_vector_with_its_origin(hub: Recorder, hf_cache_online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vector object goes up as vector.safetensors + origin.safetensors + a card; it loads back by reference."""
    v = vector()
    url = push_to_hub(v, "me/tpv-sst2", origin=ORIGIN, private=True)
    assert url == f"https://huggingface.co/me/tpv-sst2/commit/{COMMIT_A}"
    assert hub.call("create_repo") == {
        "repo_id": "me/tpv-sst2",
        "token": None,
        "private": True,
        "repo_type": "model",
        "exist_ok": True,
    }
    upload = hub.call("upload_folder")
    assert upload["repo_id"] == "me/tpv-sst2" and upload["repo_type"] == "model"
    assert upload["revision"] is None and upload["path_in_repo"] is None
    assert upload["commit_message"] == f"Upload task prompt vector (sst2) with tpv {tpv.__version__}"
    assert sorted(hub.files) == ["README.md", "origin.safetensors", "vector.safetensors"]
    card = hub.card
    front = card.split("---\n")[1]
    assert "library_name" not in front  # a vector file is not a PEFT adapter
    assert 'base_model: "HuggingFaceTB/SmolLM2-135M"' in front
    assert "tags:\n- tpv\n- prompt-tuning\n- task-prompt-vector\n" in front
    for needle in (ORIGIN.id, "gaussian (seed 3)", '`{"sst2": 1.0}`', "| task | sst2 |", tpv.__version__):
        assert needle in card, needle
    assert 'tpv.load_vector("hf://me/tpv-sst2/vector.safetensors")' in card
    # what was uploaded loads back through the Hub cache
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    populate(hf_cache_online, "me/tpv-sst2", hub.files, commit=COMMIT_A)
    assert tpv.load_vector("hf://me/tpv-sst2/vector.safetensors") == v
    assert tpv.load_origin("hf://me/tpv-sst2/origin.safetensors") == ORIGIN


@pytest.fixture
def hf_cache_online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache for reading back what was pushed (the test goes offline before reading)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_push_an_origin_and_a_vector_file(hub: Recorder, tmp_path: Path) -> None:
    """An Origin object; a vector file picks up the matching origin file beside it, under its own name."""
    push_to_hub(ORIGIN, "me/origins", path_in_repo="/o/s3/", revision="dev")
    assert sorted(hub.files) == ["README.md", "origin.safetensors"]
    assert hub.call("create_branch") == {
        "repo_id": "me/origins",
        "branch": "dev",
        "token": None,
        "repo_type": "model",
        "exist_ok": True,
    }
    upload = hub.call("upload_folder")
    assert upload["path_in_repo"] == "o/s3" and upload["revision"] == "dev"
    assert (
        "# Prompt-tuning origin" in hub.card
        and 'tpv.load_origin("hf://me/origins@dev/o/s3/origin.safetensors")' in (hub.card)
    )

    folder = tmp_path / "files"
    path = tpv.save(vector(), folder / "sst2.safetensors")
    tpv.save(ORIGIN, folder / "sst2.origin.safetensors")
    tpv.save(tpv.Origin.gaussian(4, 8, seed=9), folder / "origin.safetensors")  # another origin: not taken
    hub.calls.clear()
    push_to_hub(path, "me/files", create_repo=False, commit_message="mine")
    assert [n for n, _ in hub.calls] == ["upload_folder"] and hub.call("upload_folder")["commit_message"] == "mine"
    assert sorted(hub.files) == ["README.md", "sst2.origin.safetensors", "sst2.safetensors"]


def test_push_a_run_folder_with_metrics(hub: Recorder, tmp_path: Path) -> None:
    """A run folder: adapter/, origin, vector, run.json go up (no checkpoint, no temp files); metrics in the card."""
    pytest.importorskip("peft")
    v = vector()
    run = tmp_path / "run"
    tpv.save_adapter(v, run / "adapter", origin=ORIGIN)
    tpv.save(ORIGIN, run / "origin.safetensors")
    tpv.save(v, run / "vector.safetensors")
    record = {"model": "smollm2-135m", "task": "sst2", "kind": "causal-lm", "metric": "accuracy", "steps": 80}
    record |= {"metrics": {"step": 60, "accuracy": 0.8125, "macro_f1": 0.8}, "best": {"step": 60, "score": 0.8125}}
    (run / "run.json").write_text(json.dumps(record))
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "state.pt").write_bytes(b"x")
    (run / ".vector.safetensors.123.abc.tmp").write_bytes(b"x")
    push_to_hub(run, "me/run-sst2")
    assert sorted(hub.files) == [
        "README.md",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "adapter/origin.safetensors",
        "adapter/tpv_vector.safetensors",
        "origin.safetensors",
        "run.json",
        "vector.safetensors",
    ]
    card = hub.card
    assert "| accuracy | 0.8125 |" in card and "| macro_f1 | 0.8000 |" in card and "at step 60" in card
    assert "base_model" not in card.split("---\n")[1]  # a packaged tpv name is not a Hub id
    assert "`smollm2-135m`" in card and 'tpv.from_adapter("hf://me/run-sst2/adapter")' in card
    assert 'subfolder="adapter"' in card


def test_push_an_adapter_folder_replaces_its_card(hub: Recorder, tmp_path: Path) -> None:
    """A PEFT adapter folder: library_name peft and the tags in the front matter; its own README.md is replaced."""
    pytest.importorskip("peft")
    folder = tpv.save_adapter(vector(), tmp_path / "adapter", origin=ORIGIN)
    (folder / "README.md").write_text("PEFT's template card")
    push_to_hub(folder, "me/adapter", revision="main")
    assert [n for n, _ in hub.calls] == ["create_repo", "upload_folder"]  # main exists: no branch to create
    assert sorted(hub.files) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "origin.safetensors",
        "tpv_vector.safetensors",
    ]
    card = hub.card
    assert card.startswith("---\nlibrary_name: peft\n") and "- task-prompt-vector\n---\n" in card
    assert "template" not in card and "PROMPT_TUNING CAUSAL_LM" in card
    assert 'PeftModel.from_pretrained(base_model, "me/adapter", revision="main")' in card
    assert card == model_card(folder, "me/adapter", revision="main")


def test_push_refusals_and_hub_failures(hub: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad ids, sources and origins, offline mode and a failed upload: one ConfigError each, nothing uploaded."""
    v = vector()
    other = tpv.Origin.gaussian(4, 8, seed=1)
    (tmp_path / "plain").mkdir()
    for call, match in [
        (lambda: push_to_hub(v, "just-a-name"), "owner/name"),
        (lambda: push_to_hub(v, "me/r", revision=COMMIT_A), "branch"),
        (lambda: push_to_hub(v, "me/r", path_in_repo="../x"), "path_in_repo"),
        (lambda: push_to_hub(v, "me/r", origin=other), "tuned from"),
        (lambda: push_to_hub(42, "me/r"), "got int"),  # type: ignore[arg-type]
        (lambda: push_to_hub(tmp_path / "nothing", "me/r"), "no such file or folder"),
        (lambda: push_to_hub(tmp_path / "plain", "me/r"), "neither a tpv train run folder"),
        (lambda: push_to_hub("hf://me/r/vector.safetensors", "me/r"), "local files"),
    ]:
        with pytest.raises(ConfigError, match=match):
            call()
    assert hub.calls == []
    from huggingface_hub.errors import LocalTokenNotFoundError

    hub.fail = LocalTokenNotFoundError("Token is required")
    with pytest.raises(ConfigError, match="huggingface-cli login") as info:
        push_to_hub(v, "me/r")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="unset HF_HUB_OFFLINE"):
        push_to_hub(v, "me/r")


def test_cli_push(hub: Recorder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tpv push FILE REPO --path-in-repo P --revision R --private` uploads and prints the commit URL."""
    path = tpv.save(vector(), tmp_path / "v.safetensors")
    with pytest.raises(SystemExit) as exc:
        main(["push", str(path), "me/cli", "--path-in-repo", "sst2", "--revision", "exp", "--private"])
    assert exc.value.code in (0, None)
    assert f"commit/{COMMIT_A}" in capsys.readouterr().out
    assert hub.call("create_repo")["private"] is True
    assert hub.call("upload_folder")["path_in_repo"] == "sst2" and hub.call("upload_folder")["revision"] == "exp"
    assert sorted(hub.files) == ["README.md", "v.safetensors"]
    with pytest.raises(SystemExit) as exc:
        main(["push", str(tmp_path / "missing"), "me/cli"])
    assert exc.value.code == 2 and "error (ConfigError)" in capsys.readouterr().err


def test_import_tpv_does_not_import_huggingface_hub() -> None:
    """`import tpv` and `tpv.push_to_hub` stay light; huggingface_hub loads on the first Hub call."""
    code = "import sys, tpv, tpv.hub\ntpv.push_to_hub\nprint('huggingface_hub' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
