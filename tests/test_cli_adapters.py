"""The command line on PEFT adapter folders and run folders; `--adapter-out`, `--threads`, renamed options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import build_tiny

import tpv
from tpv.adapters import from_adapter, init_prompt_tuning, make_origin, prompt_of, save_adapter
from tpv.cli import app, main

peft = pytest.importorskip("peft")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def made(tmp_path: Path) -> dict[str, Any]:
    """An origin of a tiny llama, vectors a and b, and the folders the commands read.

    * ``adapter``: ``save_adapter(a)``, with its origin.safetensors and tpv_vector.safetensors;
    * ``peft``: PEFT's own ``save_pretrained`` of origin + b: no origin file (needs ``--origin``), task = its name;
    * ``run``: a `tpv train` run folder holding vector a;
    * ``origin``, ``a``, ``b``: tpv files.
    """
    model, _ = build_tiny("llama")
    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=3, seed=1)
    a = tpv.TaskPromptVector.from_prompts(
        origin.tensor + 0.25 * torch.arange(96.0).reshape(3, 32) / 96, origin, task="a"
    )
    b = tpv.TaskPromptVector.from_prompts(origin.tensor - torch.linspace(0, 1, 96).reshape(3, 32), origin, task="b")
    paths: dict[str, Any] = {"origin_obj": origin, "vec_a": a, "vec_b": b}
    paths["origin"] = tpv.save(origin, tmp_path / "origin.safetensors")
    paths["a"] = tpv.save(a, tmp_path / "a.safetensors")
    paths["b"] = tpv.save(b, tmp_path / "b.safetensors")
    paths["adapter"] = save_adapter(a, tmp_path / "adapter", origin=origin)
    peft_model = init_prompt_tuning(model, b, origin=origin)
    peft_model.save_pretrained(tmp_path / "peft", save_embedding_layers=False)  # PEFT's own writer
    paths["peft"] = tmp_path / "peft"
    run_dir = tmp_path / "run"
    save_adapter(a, run_dir / "adapter", origin=origin)
    tpv.save(origin, run_dir / "origin.safetensors")
    tpv.save(a, run_dir / "vector.safetensors")
    record = {"model": "tiny-llama", "task": "a", "kind": "causal-lm", "metric": "accuracy", "steps": 1}
    (run_dir / "run.json").write_text(json.dumps(record))
    paths["run"] = run_dir
    return paths


# -- inspect ----------------------------------------------------------------------------------------------------


def test_inspect_summarizes_an_adapter_folder(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """`tpv inspect ADAPTER_DIR` shows the PEFT config, the files present and the vector's terms and norm."""
    code, out, err = run(capsys, "inspect", made["adapter"], "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["kind"] == "peft adapter" and info["num_virtual_tokens"] == 3 and info["token_dim"] == 32
    assert info["origin_file"] is True and info["vector_file"] is True and info["terms"] == {"a": 1.0}
    assert info["norm"] == pytest.approx(made["vec_a"].norm(), rel=1e-6)
    assert info["base_model"] == "tiny-llama" and info["origin_id"] == made["origin_obj"].id
    code, out, _ = run(capsys, "inspect", made["adapter"])
    assert code == 0 and "num_virtual_tokens" in out and "terms" in out


def test_inspect_an_adapter_without_origin(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """A folder without origin.safetensors: the config is shown, the vector only with --origin."""
    code, out, _ = run(capsys, "inspect", made["peft"], "--json")
    info = json.loads(out)
    assert code == 0 and info["origin_file"] is False and "not readable" in info["vector"] and "terms" not in info
    code, out, _ = run(capsys, "inspect", made["peft"], "--origin", made["origin"], "--json")
    info = json.loads(out)
    assert code == 0 and info["terms"] == {"peft": 1.0}
    assert info["norm"] == pytest.approx(made["vec_b"].norm(), rel=1e-5)


def test_inspect_a_run_folder_shows_its_vector(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """A run folder is inspected as its vector file."""
    code, out, _ = run(capsys, "inspect", made["run"], "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "vector" and info["terms"] == {"a": 1.0}


@pytest.mark.parametrize("command", ["inspect", "similarity", "combine", "select", "eval"])
def test_a_bad_folder_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], made: dict[str, Any], tmp_path: Path, command: str
) -> None:
    """A folder that is neither an adapter nor a run: one line naming it, exit status 2."""
    bad = tmp_path / "not-an-adapter"
    bad.mkdir()
    (bad / "notes.txt").write_text("x")
    args: dict[str, list[object]] = {
        "inspect": [bad],
        "similarity": [made["a"], bad],
        "combine": [made["a"], bad, "-o", tmp_path / "m.safetensors"],
        "select": [bad, "--target", made["a"]],
        "eval": [bad, "--task", "rotten_tomatoes"],
    }
    code, out, err = run(capsys, command, *args[command])
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and "not-an-adapter" in err and "neither" in err


def test_an_adapter_without_origin_names_the_fix(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """Combining a PEFT folder that holds no origin, without --origin: one line, exit 2."""
    code, _, err = run(capsys, "similarity", made["a"], made["peft"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "peft" in err


# -- similarity, select -----------------------------------------------------------------------------------------


def test_similarity_reads_folders(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """Files, adapter folders (with and without their origin) and run folders compare as their vectors."""
    args = [made["a"], made["adapter"], made["run"], made["peft"], made["b"], "--origin", made["origin"], "--json"]
    code, out, err = run(capsys, "similarity", *args)
    assert code == 0, err
    m = torch.tensor(json.loads(out)["matrix"])
    assert m.shape == (5, 5)
    assert torch.allclose(m[:3, :3], torch.ones(3, 3, dtype=m.dtype), atol=1e-5)  # a, a's adapter, a's run
    assert m[3, 4] == pytest.approx(1.0, abs=1e-5)  # b's PEFT folder and b


def test_select_reads_folders(capsys: pytest.CaptureFixture[str], made: dict[str, Any]) -> None:
    """`tpv select` takes adapter and run folders as sources and target."""
    code, out, err = run(
        capsys, "select", made["adapter"], made["peft"], "--target", made["run"], "--origin", made["origin"], "--json"
    )
    assert code == 0, err
    assert json.loads(out)["chosen"] == ["adapter"]


# -- combine ----------------------------------------------------------------------------------------------------


def test_combine_folders_to_a_peft_adapter_that_generates(
    capsys: pytest.CaptureFixture[str], made: dict[str, Any], tmp_path: Path
) -> None:
    """`tpv combine ADAPTER PEFT_DIR --adapter-out DIR`: PeftModel.from_pretrained loads it, it generates."""
    out_file, out_dir = tmp_path / "m.safetensors", tmp_path / "merged"
    args = [made["adapter"], made["peft"], "--origin", made["origin"], "-o", out_file, "--adapter-out", out_dir]
    code, out, err = run(capsys, "combine", *args, "--dtype", "float64")
    assert code == 0, err
    assert str(out_dir) in out and str(out_file) in out
    merged = tpv.load_vector(out_file)
    assert dict(merged.terms) == {"a": 1.0, "peft": 1.0}
    origin = made["origin_obj"]
    expected = origin.tensor.double() + made["vec_a"].tensor.double() + made["vec_b"].tensor.double()
    model, tok = build_tiny("llama")
    loaded = peft.PeftModel.from_pretrained(model, out_dir).eval()
    assert torch.allclose(prompt_of(loaded).double(), expected, atol=1e-5)
    inputs = tok(["the movie was"], return_tensors="pt")
    with torch.no_grad():
        generated = loaded.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 2
    assert from_adapter(out_dir) == merged  # the folder reads back as the merged vector


def test_combine_adapter_out_alone_takes_the_origin_from_the_folders(
    capsys: pytest.CaptureFixture[str], made: dict[str, Any], tmp_path: Path
) -> None:
    """--adapter-out without -o; the origin comes from an input folder (an adapter folder or a run folder)."""
    for source in ("adapter", "run"):
        out_dir = tmp_path / f"merged-{source}"
        code, _, err = run(capsys, "combine", made[source], made["b"], "--adapter-out", out_dir, "--dtype", "float32")
        assert code == 0, err
        assert sorted(p.name for p in out_dir.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
            "origin.safetensors",
            "tpv_vector.safetensors",
        ]
        assert dict(from_adapter(out_dir).terms) == {"a": 1.0, "b": 1.0}


def test_combine_adapter_out_refusals(capsys: pytest.CaptureFixture[str], made: dict[str, Any], tmp_path: Path) -> None:
    """No output, no origin known, an existing folder without --overwrite, an input as output: one line, exit 2."""
    code, _, err = run(capsys, "combine", made["a"], made["b"])
    assert code == 2 and "--adapter-out" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "combine", made["a"], made["b"], "--adapter-out", tmp_path / "x")
    assert code == 2 and "--origin" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "combine", made["a"], "--origin", made["b"], "--adapter-out", tmp_path / "x")
    assert code == 2 and len(err.strip().splitlines()) == 1
    out_dir = tmp_path / "merged"
    assert run(capsys, "combine", made["adapter"], "--adapter-out", out_dir)[0] == 0
    code, _, err = run(capsys, "combine", made["adapter"], "--adapter-out", out_dir)
    assert code == 2 and "--overwrite" in err
    assert run(capsys, "combine", made["adapter"], "--adapter-out", out_dir, "--overwrite")[0] == 0
    code, _, err = run(capsys, "combine", made["adapter"], "--adapter-out", made["adapter"], "--overwrite")
    assert code == 2 and "also an input" in err


# -- eval -------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_eval(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace model loading, prompt tuning and scoring; record what eval asked for."""
    import tpv.adapters
    import tpv.engine.evaluation
    import tpv.models

    seen: dict[str, Any] = {}
    result = {"metric": "accuracy", "score": 0.5, "accuracy": 0.5, "examples": 4, "examples_per_s": 2.0}

    def load_model(name: str, **kwargs: Any) -> object:
        seen["model"] = name
        seen["kind"] = kwargs.get("task_type")
        return object()

    def init(base: object, start: Any, origin: Any = None, **kwargs: Any) -> object:
        seen["start"], seen["origin"] = start, origin
        return object()

    monkeypatch.setattr(tpv.models, "load_model", load_model)
    monkeypatch.setattr(tpv.models, "load_tokenizer", lambda *a, **k: object())
    monkeypatch.setattr(tpv.adapters, "init_prompt_tuning", init)
    monkeypatch.setattr(tpv.engine.evaluation, "evaluate", lambda *a, **k: dict(result))
    return seen


def test_eval_scores_an_adapter_folder(
    capsys: pytest.CaptureFixture[str], made: dict[str, Any], fake_eval: dict[str, Any]
) -> None:
    """`tpv eval ADAPTER_DIR --task T`: the folder's vector and origin, on the model its config names."""
    code, out, err = run(capsys, "eval", made["adapter"], "--task", "rotten_tomatoes", "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == "tiny-llama" and fake_eval["model"] == "tiny-llama"
    assert fake_eval["kind"] == "causal-lm"
    assert fake_eval["start"] == made["vec_a"] and fake_eval["origin"] == made["origin_obj"]
    code, _, err = run(capsys, "eval", made["peft"], "--task", "rotten_tomatoes", "--origin", made["origin"])
    assert code == 0, err
    assert torch.allclose(fake_eval["start"].tensor, made["vec_b"].tensor.double(), atol=1e-6)


def test_eval_takes_folders_as_vectors(
    capsys: pytest.CaptureFixture[str], made: dict[str, Any], fake_eval: dict[str, Any]
) -> None:
    """--vector takes adapter and run folders; the origin comes from them."""
    code, _, err = run(
        capsys, "eval", "--vector", made["adapter"], "--vector", made["run"], "--task", "rotten_tomatoes"
    )
    assert code == 0, err
    assert dict(fake_eval["start"].terms) == {"a": 2.0} and fake_eval["origin"] == made["origin_obj"]
    code, _, err = run(capsys, "eval", "--vector", made["a"], "--task", "rotten_tomatoes")
    assert code == 2 and "--origin" in err


# -- --threads, renamed options ---------------------------------------------------------------------------------


MODEL_COMMANDS = (
    ("train",),
    ("eval",),
    ("demo",),
    ("search",),
    ("transfer",),
    ("fuse", "fit"),
    ("origin", "new"),
)


def test_every_command_that_loads_a_model_takes_threads() -> None:
    """--threads is on each command that loads a model, with one help text."""
    from typer.testing import CliRunner

    from tpv.cli._common import THREADS_HELP

    for path in MODEL_COMMANDS:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "--threads" in result.output, path
        assert THREADS_HELP[:40] in result.output, path


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--origin", "o.safetensors", "--task", "sst2"],
        ["search", "v.safetensors", "--origin", "o.safetensors", "--task", "sst2"],
        ["transfer", "v.safetensors", "-o", "x.safetensors", "--source-model", "a", "--target-model", "b"],
        ["fuse", "fit", "a", "b"],
        ["origin", "new", "--model", "m", "-o", "{tmp}/o.safetensors"],
        ["train", "sst2", "-o", "{tmp}/run"],
    ],
)
def test_threads_is_checked_first(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]) -> None:
    """--threads 0 is refused with one line and exit 2 before any file or model is read."""
    code, _, err = run(capsys, *(a.format(tmp=tmp_path) for a in args), "--threads", "0")
    assert code == 2 and "--threads 0" in err and len(err.strip().splitlines()) == 1


def test_threads_sets_torch_threads(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, made: dict[str, Any], fake_eval: dict[str, Any]
) -> None:
    """--threads N calls torch.set_num_threads(N)."""
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    code, _, err = run(capsys, "eval", made["adapter"], "--task", "rotten_tomatoes", "--threads", "1")
    assert code == 0 and calls == [1], err


def test_origin_new_num_virtual_tokens(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`tpv origin new --num-virtual-tokens` (as `tpv train`); the old --tokens still works, hidden."""
    code, _, err = run(capsys, "origin", "new", "--dim", "8", "--num-virtual-tokens", "5", "-o", tmp_path / "a.st")
    assert code == 0, err
    assert tpv.load(tmp_path / "a.st") == tpv.Origin.gaussian(5, 8, seed=0)
    code, _, err = run(capsys, "origin", "new", "--dim", "8", "--tokens", "5", "-o", tmp_path / "b.st")
    assert code == 0, err
    assert tpv.load(tmp_path / "b.st") == tpv.Origin.gaussian(5, 8, seed=0)
    code, _, err = run(capsys, "origin", "new", "--dim", "8", "--tokens", "4", "--num-virtual-tokens", "5", "-o", "c")
    assert code == 2 and "disagree" in err
    from typer.testing import CliRunner

    shown = CliRunner().invoke(app, ["origin", "new", "--help"], env={"COLUMNS": "200"}).output
    assert "--num-virtual-tokens" in shown and "--tokens " not in shown
