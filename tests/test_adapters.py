"""Tests of tpv.adapters: origins from models, PEFT init, adapter <-> vector round trips, parity, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny

import tpv
from tpv.adapters import (
    ORIGIN_FILE,
    VECTOR_FILE,
    from_adapter,
    init_prompt_tuning,
    make_origin,
    prompt_of,
    read_adapter,
    save_adapter,
)
from tpv.errors import AdapterError, ConfigError, IncompatibleVectorsError, ModelError

peft = pytest.importorskip("peft")

TEXTS = ["the movie was great !", "a boring film , i hated it ."]


def _batch(kind: str, tokenizer: Any) -> dict[str, torch.Tensor]:
    """A small batch with labels for one training step of ``kind``."""
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    if kind == "t5":
        enc["labels"] = tokenizer(["positive", "negative"], return_tensors="pt", padding=True)["input_ids"]
    elif kind == "bert":
        enc["labels"] = torch.tensor([1, 0])
    else:
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        enc["labels"] = labels
    return dict(enc)


def _train(peft_model: Any, batch: dict[str, torch.Tensor], steps: int = 3, *, prompt_only: bool = False) -> None:
    """A few real Adam steps on the trainable parameters (the prompt, and a classifier head unless prompt_only)."""
    params = [p for n, p in peft_model.named_parameters() if p.requires_grad and (not prompt_only or "prompt" in n)]
    opt = torch.optim.Adam(params, lr=0.1)
    peft_model.train()
    for _ in range(steps):
        loss = peft_model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    peft_model.eval()


def _logits(peft_model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if "labels" in batch and batch["labels"].ndim == 2:  # seq2seq: decoder inputs from the labels
        inputs["labels"] = batch["labels"]
    with torch.no_grad():
        return peft_model(**inputs).logits


# -- make_origin ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["first-n-vocab", "sample-vocab", "gaussian"])
def test_make_origin_is_reproducible_and_records_the_model(init: str) -> None:
    """The same model, init and seed give the same float32 origin, recording the model's id."""
    model, _ = build_tiny("llama")
    a = make_origin(model, init, num_virtual_tokens=5, seed=3)  # type: ignore[arg-type]
    b = make_origin(model, init, num_virtual_tokens=5, seed=3)  # type: ignore[arg-type]
    assert a == b
    assert a.shape == (5, 32) and a.dtype == torch.float32 and a.base_model == "tiny-llama"
    assert make_origin(model, init, num_virtual_tokens=5, seed=4).id != a.id  # type: ignore[arg-type]


def test_make_origin_vocab_rows_are_embedding_rows() -> None:
    """A first-n-vocab origin's rows are rows of the input embedding matrix."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=6, n=20)
    emb = model.get_input_embeddings().weight.detach()  # (vocab, dim)
    for row in origin.tensor:
        assert any(torch.equal(row, e) for e in emb[:20])


def test_make_origin_uses_gemma_scaled_embeddings() -> None:
    """On Gemma the origin lives where PEFT's prompt lives: the embedding module's output, sqrt(hidden)-scaled."""
    model, tok = build_tiny("gemma3")
    origin = make_origin(model, "text", num_virtual_tokens=3, text="great movie", tokenizer=tok)
    ids = torch.tensor(tok("great movie")["input_ids"])  # <bos> great movie, as PEFT's TEXT init tokenizes
    with torch.no_grad():
        fed = model.get_input_embeddings()(ids)  # (3, dim), scaled by the module
    assert torch.equal(origin.tensor, fed)


def test_make_origin_t5_has_two_submodules() -> None:
    """Encoder-decoder origins have 2 transformer submodules (2x rows)."""
    model, _ = build_tiny("t5")
    origin = make_origin(model, "sample-vocab", num_virtual_tokens=4)
    assert origin.shape == (8, 16) and origin.num_transformer_submodules == 2 and origin.num_virtual_tokens == 4


def test_make_origin_refusals() -> None:
    """Unknown init kinds and a text init without text or tokenizer are refused."""
    model, _ = build_tiny("llama")
    with pytest.raises(ConfigError, match="init must be one of"):
        make_origin(model, "random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="text="):
        make_origin(model, "text", text="hello")


# -- init_prompt_tuning / prompt_of ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "gemma3", "t5", "bert"])
def test_init_prompt_tuning_sets_the_prompt_exactly_and_is_trainable(kind: str) -> None:
    """The PEFT model's prompt equals the init bit for bit and receives gradients; the base is frozen."""
    model, tok = build_tiny(kind)  # type: ignore[arg-type]
    origin = make_origin(model, "sample-vocab", num_virtual_tokens=4, seed=1)
    peft_model = init_prompt_tuning(model, origin)
    assert torch.equal(prompt_of(peft_model), origin.tensor)
    weight = peft_model.prompt_encoder["default"].embedding.weight
    assert weight.requires_grad
    assert not any(p.requires_grad for n, p in model.named_parameters() if "classifier" not in n)
    peft_model(**_batch(kind, tok)).loss.backward()
    assert weight.grad is not None and bool(weight.grad.abs().sum() > 0)


def test_init_prompt_tuning_from_a_tensor_and_a_combination() -> None:
    """A raw tensor and origin + sum of scaled vectors are both exact starting prompts."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, "gaussian", num_virtual_tokens=3)
    a = tpv.TaskPromptVector.from_prompts(origin.tensor + 0.5, origin, task="a")
    b = tpv.TaskPromptVector.from_prompts(origin.tensor * 2, origin, task="b")
    combo = 0.3 * a + b
    pm = init_prompt_tuning(model, combo, origin=origin)
    assert torch.equal(prompt_of(pm), combo.apply_to(origin))
    model2, _ = build_tiny("llama")
    raw = torch.full((3, 32), 0.25)
    assert torch.equal(prompt_of(init_prompt_tuning(model2, raw)), raw)


def test_one_base_model_serves_several_prompt_tunings() -> None:
    """Two PEFT models on the same causal LM keep their own exact prompts (a loaded model can be reused)."""
    model, _ = build_tiny("llama")
    first, second = (make_origin(model, num_virtual_tokens=k, seed=k) for k in (3, 5))
    a, b = init_prompt_tuning(model, first), init_prompt_tuning(model, second)
    assert torch.equal(prompt_of(a), first.tensor) and torch.equal(prompt_of(b), second.tensor)
    with torch.no_grad():
        assert a(input_ids=torch.tensor([[4, 5]])).logits.shape[1] == 2 + 3


def test_init_prompt_tuning_leaves_the_global_rng_alone() -> None:
    """Building the PEFT model does not consume the global torch RNG."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    init_prompt_tuning(model, origin)
    assert torch.equal(torch.rand(3), expected)


def test_init_prompt_tuning_refusals() -> None:
    """Width mismatch, a vector without or with another origin, a wrong length, a PEFT model: each refused."""
    llama, _ = build_tiny("llama")
    gemma, _ = build_tiny("gemma3")
    origin = make_origin(llama, num_virtual_tokens=3)
    other = make_origin(llama, num_virtual_tokens=3, seed=9)
    vec = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="a")
    with pytest.raises(ModelError, match=r"width 32.*width 24.*tpv.transfer"):
        init_prompt_tuning(gemma, origin)
    with pytest.raises(ConfigError, match="pass origin="):
        init_prompt_tuning(llama, vec)
    with pytest.raises(IncompatibleVectorsError, match="tuned from origin"):
        init_prompt_tuning(llama, vec, origin=other)
    with pytest.raises(ConfigError, match="num_virtual_tokens=5"):
        init_prompt_tuning(llama, origin, num_virtual_tokens=5)
    with pytest.raises(ConfigError, match="float32"):
        init_prompt_tuning(llama, origin.tensor.double() / 3)
    with pytest.raises(ConfigError, match="task_type"):
        init_prompt_tuning(llama, origin, task_type="translation")
    pm = init_prompt_tuning(llama, origin)
    with pytest.raises(ConfigError, match="already a PeftModel"):
        init_prompt_tuning(pm, origin)
    t5, _ = build_tiny("t5")
    t5_origin = make_origin(t5, num_virtual_tokens=2)
    bert, _ = build_tiny("bert")
    with pytest.raises(ModelError, match="not an encoder-decoder"):
        init_prompt_tuning(bert, t5_origin)


def test_prompt_of_refuses_other_adapters() -> None:
    """prompt_of refuses a plain model and a LoRA adapter."""
    model, _ = build_tiny("llama")
    with pytest.raises(AdapterError, match="PeftModel"):
        prompt_of(model)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    with pytest.raises(AdapterError, match="LORA"):
        prompt_of(lora)


# -- parity -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "gemma3", "t5", "bert"])
def test_parity_adapter_vector_reinit_reproduces_prompt_and_logits(kind: str, tmp_path: Path) -> None:
    """Tuned adapter -> vector -> re-initialized fresh model: the same prompt bit for bit and identical logits."""
    model, tok = build_tiny(kind)  # type: ignore[arg-type]
    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=4, seed=2)
    tuned = init_prompt_tuning(model, origin)
    batch = _batch(kind, tok)
    _train(tuned, batch, prompt_only=kind == "bert")  # keep BERT's head: it is not part of the vector
    tuned_prompt = prompt_of(tuned)
    assert not torch.equal(tuned_prompt, origin.tensor)
    if kind == "t5":
        assert tuned_prompt.shape == (8, 16)
    tuned.save_pretrained(tmp_path / "adapter", save_embedding_layers=False)  # PEFT's own writer

    vector = from_adapter(tmp_path / "adapter", origin=origin, task="sst2")
    assert dict(vector.terms) == {"sst2": 1.0} and vector.base_model == f"tiny-{kind}"

    fresh, _ = build_tiny(kind)  # type: ignore[arg-type]
    again = init_prompt_tuning(fresh, vector, origin=origin)
    assert torch.equal(prompt_of(again), tuned_prompt)
    assert torch.equal(_logits(again, batch), _logits(tuned, batch))


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_save_adapter_round_trip_through_peft(kind: str, tmp_path: Path) -> None:
    """save_adapter(vector) loads with PeftModel.from_pretrained and gives the logits of origin + vector."""
    model, tok = build_tiny(kind)  # type: ignore[arg-type]
    origin = make_origin(model, "sample-vocab", num_virtual_tokens=3)
    tuned = init_prompt_tuning(model, origin)
    batch = _batch(kind, tok)
    _train(tuned, batch)
    vector = tpv.TaskPromptVector.from_prompts(prompt_of(tuned), origin, task="t")
    out = save_adapter(vector, tmp_path / "out", origin=origin, tokenizer_name_or_path="tiny")
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        ORIGIN_FILE,
        VECTOR_FILE,
    ]
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["num_transformer_submodules"] == (2 if kind == "t5" else 1)
    assert cfg["task_type"] == ("SEQ_2_SEQ_LM" if kind == "t5" else "CAUSAL_LM")
    assert list(load_file(out / "adapter_model.safetensors")) == ["prompt_embeddings"]
    fresh, _ = build_tiny(kind)  # type: ignore[arg-type]
    loaded = peft.PeftModel.from_pretrained(fresh, out)
    assert torch.equal(prompt_of(loaded), prompt_of(tuned))
    assert torch.equal(_logits(loaded, batch), _logits(tuned, batch))
    # and back: the folder reads into the same vector, origin and terms taken from the folder
    assert from_adapter(out) == vector


def test_combination_survives_save_and_read_at_full_precision(tmp_path: Path) -> None:
    """from_adapter(save_adapter(combo)) is combo exactly; with an explicit task it is recomputed from the prompt."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=3)
    a = tpv.TaskPromptVector.from_prompts(origin.tensor / 3, origin, task="a")
    b = tpv.TaskPromptVector.from_prompts(origin.tensor * 1.7, origin, task="b")
    combo = a / 7 + 0.3 * b  # float64 values that a float32 prompt rounds
    out = save_adapter(combo, tmp_path / "combo", origin=origin)
    assert from_adapter(out) == combo
    recomputed = from_adapter(out, task="c")
    assert dict(recomputed.terms) == {"c": 1.0}
    assert torch.equal(recomputed.apply_to(origin), combo.apply_to(origin))


def test_saved_adapter_loads_in_a_process_without_tpv(tmp_path: Path) -> None:
    """A saved adapter is plain PEFT: a subprocess that cannot import tpv loads it and gets the same logits."""
    model, tok = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=3)
    vector = tpv.TaskPromptVector.from_prompts(origin.tensor + 0.125, origin, task="t")
    save_adapter(vector, tmp_path / "adapter", origin=origin)
    model.save_pretrained(tmp_path / "base")
    ids = tok(TEXTS, return_tensors="pt", padding=True)
    save_file({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]}, tmp_path / "inputs.st")
    with torch.no_grad():
        expected = init_prompt_tuning(model, vector, origin=origin)(**ids).logits
    script = f"""
import sys
sys.modules["tpv"] = None  # any attempt to import tpv now raises ImportError
import torch
torch.set_num_threads({torch.get_num_threads()})  # the same thread count as this process: bit-identical matmuls
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained({str(tmp_path / "base")!r})
model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
inputs = load_file({str(tmp_path / "inputs.st")!r})
with torch.no_grad():
    logits = model(**inputs).logits
save_file({{"logits": logits.contiguous()}}, {str(tmp_path / "logits.st")!r})
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.equal(load_file(tmp_path / "logits.st")["logits"], expected)


def test_seq_cls_head_can_travel_as_extra_tensors(tmp_path: Path) -> None:
    """A sequence-classification head saved as extra tensors is restored by PEFT; the vector ignores it."""
    model, tok = build_tiny("bert")
    origin = make_origin(model, num_virtual_tokens=3)
    tuned = init_prompt_tuning(model, origin)
    batch = _batch("bert", tok)
    _train(tuned, batch)
    state = peft.get_peft_model_state_dict(tuned, save_embedding_layers=False)
    head = {k: v for k, v in state.items() if k != "prompt_embeddings"}
    assert head  # PEFT trains a copy of the classifier
    out = save_adapter(prompt_of(tuned), tmp_path / "cls", origin=origin, task_type="seq-cls", extra_tensors=head)
    loaded = peft.PeftModel.from_pretrained(build_tiny("bert")[0], out)
    assert torch.equal(_logits(loaded, batch), _logits(tuned, batch))
    vec = from_adapter(out, task="cls")
    assert torch.equal(vec.apply_to(origin), prompt_of(tuned))


# -- refusals -------------------------------------------------------------------------------------------------------


def _adapter(tmp_path: Path, name: str = "a") -> tuple[Path, tpv.Origin]:
    model, _ = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=3)
    out = save_adapter(origin.tensor + 1, tmp_path / name, origin=origin)
    return out, origin


def test_from_adapter_refuses_non_prompt_tuning(tmp_path: Path) -> None:
    """A LoRA adapter folder is refused with AdapterError naming its type."""
    model, _ = build_tiny("llama")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    lora.save_pretrained(tmp_path / "lora", save_embedding_layers=False)
    origin = make_origin(build_tiny("llama")[0], num_virtual_tokens=3)
    with pytest.raises(AdapterError, match="LORA adapter, not prompt tuning"):
        from_adapter(tmp_path / "lora", origin=origin, task="t")


def test_from_adapter_refuses_pickle_weights(tmp_path: Path) -> None:
    """An adapter whose weights are only adapter_model.bin (pickle) is refused, never unpickled."""
    folder, origin = _adapter(tmp_path)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "adapter_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(AdapterError, match="pickle"):
        from_adapter(folder, origin=origin, task="t")


def test_from_adapter_refuses_missing_and_broken_files(tmp_path: Path) -> None:
    """A missing folder, missing config, missing weights, bad JSON and a non-safetensors file: AdapterError each."""
    folder, origin = _adapter(tmp_path)
    with pytest.raises(AdapterError, match="no adapter folder"):
        from_adapter(tmp_path / "nope", origin=origin, task="t")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AdapterError, match=r"no adapter_config\.json"):
        from_adapter(empty, origin=origin, task="t")
    (folder / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(AdapterError, match="not a valid safetensors"):
        from_adapter(folder, origin=origin, task="t")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="incomplete"):
        from_adapter(folder, origin=origin, task="t")
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        from_adapter(folder, origin=origin, task="t")


def test_from_adapter_refuses_another_origin(tmp_path: Path) -> None:
    """An origin other than the folder's, or of another shape, is refused."""
    folder, origin = _adapter(tmp_path)
    model, _ = build_tiny("llama")
    other = make_origin(model, num_virtual_tokens=3, seed=5)
    with pytest.raises(AdapterError, match="another origin"):
        from_adapter(folder, origin=other, task="t")
    (folder / ORIGIN_FILE).unlink()
    with pytest.raises(AdapterError, match="PEFT never saves"):
        from_adapter(folder, task="t")
    with pytest.raises(AdapterError, match="shape"):
        from_adapter(folder, origin=make_origin(model, num_virtual_tokens=4), task="t")
    with pytest.raises(ConfigError, match="task="):
        from_adapter(folder, origin=origin)


def test_read_adapter_refuses_inconsistent_shapes(tmp_path: Path) -> None:
    """A prompt whose rows or width disagree with adapter_config.json is refused."""
    folder, _ = _adapter(tmp_path)
    save_file({"prompt_embeddings": torch.zeros(4, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="rows"):
        read_adapter(folder)
    save_file({"other": torch.zeros(3, 32)}, folder / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="no 'prompt_embeddings'"):
        read_adapter(folder)


def test_save_adapter_refusals(tmp_path: Path) -> None:
    """A vector without its origin or with another, a bad layout: AdapterError; a full folder: OutputExistsError."""
    folder, origin = _adapter(tmp_path)
    other = make_origin(build_tiny("llama")[0], num_virtual_tokens=3, seed=8)
    vec = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="t")
    with pytest.raises(AdapterError, match="pass origin="):
        save_adapter(vec, tmp_path / "x")
    with pytest.raises(AdapterError, match="tuned from origin"):
        save_adapter(vec, tmp_path / "x", origin=other)
    with pytest.raises(tpv.OutputExistsError, match="overwrite=True"):
        save_adapter(vec, folder, origin=origin)
    with pytest.raises(AdapterError, match="seq2seq"):
        save_adapter(torch.zeros(4, 8), tmp_path / "y", num_transformer_submodules=2, task_type="causal-lm")
    with pytest.raises(AdapterError, match="num_transformer_submodules"):
        save_adapter(vec, tmp_path / "z", origin=origin, num_transformer_submodules=2)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    save_adapter(vec, folder, origin=origin, overwrite=True)
    assert from_adapter(folder) == vec


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_text_origin_equals_peft_text_init(tiny: Any, tmp_path: Path, kind: str) -> None:
    """make_origin('text') equals PEFT's own TEXT init tensor, with a BOS-adding tokenizer (gemma3) and without."""
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    from tpv.adapters import make_origin

    model, tok = tiny(kind)
    tok.save_pretrained(tmp_path / "tok")
    text = "good or bad"
    adds_bos = tok(text)["input_ids"][0] == tok.bos_token_id
    assert adds_bos == (kind == "gemma3")
    origin = make_origin(model, "text", text=text, tokenizer=tok, num_virtual_tokens=7)
    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=7, prompt_tuning_init=PromptTuningInit.TEXT,
                                prompt_tuning_init_text=text, tokenizer_name_or_path=str(tmp_path / "tok"))  # fmt: skip
    peft_model = get_peft_model(model, config)
    reference = peft_model.prompt_encoder["default"].embedding.weight.detach()
    assert torch.equal(origin.tensor, reference)


# -- adapters made the ordinary PEFT way (no origin.safetensors) ---------------------------------------------------


def _peft_adapter(tmp_path: Path, init: str, *, text: str = "good or bad") -> tuple[Path, Any, Any]:
    """A PEFT adapter made and trained without tpv, with the base model and tokenizer saved as local folders."""
    model, tok = build_tiny("llama")
    model.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "tok")
    model.name_or_path = model.config._name_or_path = str(tmp_path / "base")  # what from_pretrained would set
    extra = {"prompt_tuning_init_text": text, "tokenizer_name_or_path": str(tmp_path / "tok")} if init == "TEXT" else {}
    config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5, prompt_tuning_init=init, **extra)
    peft_model = peft.get_peft_model(model, config)
    _train(peft_model, _batch("llama", tok))
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", model, tok


@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")
def test_text_init_origin_is_rebuilt(tmp_path: Path) -> None:
    """A PEFT TEXT adapter without origin.safetensors: the origin is rebuilt (given or loaded model), and recorded."""
    folder, model, tok = _peft_adapter(tmp_path, "TEXT")
    assert not (folder / ORIGIN_FILE).exists()
    prompt, _ = read_adapter(folder)
    expected = make_origin(model, "text", num_virtual_tokens=5, text="good or bad", tokenizer=tok)
    tau = from_adapter(folder, task="t", model=model, tokenizer=tok)
    assert tau.origin_id == expected.id and torch.equal(tau.apply_to(expected), prompt)
    loaded = from_adapter(folder, task="t")  # base model and tokenizer loaded from adapter_config.json's names
    assert loaded.origin_id == expected.id and torch.equal(loaded.tensor, tau.tensor)
    origin = tpv.recover_origin(folder)
    assert origin.id == expected.id and origin.init == "text" and origin.params["text"] == "good or bad"
    assert origin.params["recovered"] == {
        "from": "adapter_config.json", "peft_init": "TEXT", "adapter": str(folder),
        "model": str(tmp_path / "base"), "tokenizer": str(tmp_path / "tok"),
    }  # fmt: skip


@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")
@pytest.mark.parametrize("init", ["RANDOM", "SAMPLE_VOCAB"])
def test_random_inits_cannot_be_rebuilt(tmp_path: Path, init: str) -> None:
    """RANDOM and SAMPLE_VOCAB inits: one AdapterError saying why, and how to capture the init next time."""
    folder, _, _ = _peft_adapter(tmp_path, init)
    why = "N\\(0, 1\\) draw" if init == "RANDOM" else "vocabulary rows chosen at random"
    with pytest.raises(AdapterError, match=rf"PEFT init is {init}.*{why}.*tpv\.capture_origin\(peft_model\)"):
        from_adapter(folder, task="t")


@pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")
def test_an_origin_contradicting_the_config_is_refused(tmp_path: Path) -> None:
    """Another init kind, another init text, another base model: refused with the reason; check_origin=False accepts."""
    folder, model, tok = _peft_adapter(tmp_path, "TEXT")
    right = make_origin(model, "text", num_virtual_tokens=5, text="good or bad", tokenizer=tok)
    assert from_adapter(folder, origin=right, task="t").origin_id == right.id
    gaussian = make_origin(model, "gaussian", num_virtual_tokens=5)
    with pytest.raises(AdapterError, match=r"gaussian origin, but the adapter was initialized from the text"):
        from_adapter(folder, origin=gaussian, task="t")
    assert from_adapter(folder, origin=gaussian, task="t", check_origin=False).origin_id == gaussian.id
    other_text = make_origin(model, "text", num_virtual_tokens=5, text="yes or no", tokenizer=tok)
    with pytest.raises(AdapterError, match=r"init text is 'yes or no'.*'good or bad'"):
        from_adapter(folder, origin=other_text, task="t")
    elsewhere = right.with_base_model("someone/other-model")
    with pytest.raises(AdapterError, match=r"made for the model 'someone/other-model'.*check_origin=False"):
        from_adapter(folder, origin=elsewhere, task="t")


def test_tpv_written_adapters_accept_any_origin_kind(tmp_path: Path) -> None:
    """tpv writes prompt_tuning_init RANDOM (informative): vocabulary and text origins are not contradictions."""
    model, tok = build_tiny("llama")
    for init in ("first-n-vocab", "text"):
        origin = make_origin(model, init, num_virtual_tokens=3, text="good", tokenizer=tok)  # type: ignore[arg-type]
        out = save_adapter(origin.tensor + 1, tmp_path / init, origin=origin)
        assert from_adapter(out, origin=origin, task="t").origin_id == origin.id


def test_packaged_model_is_written_as_its_local_folder(tmp_path: Path, tpv_cache: Path) -> None:
    """save_adapter records a converted packaged model's folder (loadable offline); tpv reads it back as the name."""
    from tpv._model_id import MARKER
    from tpv.adapter_origin import model_identity
    from tpv.models import PACKAGED, _source_record

    origin = tpv.Origin.gaussian(3, 8, base_model="smollm2-135m")
    out = save_adapter(origin.tensor + 1, tmp_path / "not-converted", origin=origin)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "smollm2-135m"
    converted = tpv_cache / "models" / "smollm2-135m"  # a fake converted folder, as tpv.models.prepare leaves it
    converted.mkdir(parents=True)
    (converted / MARKER).write_text(json.dumps({"source": _source_record(PACKAGED["smollm2-135m"])}))
    out = save_adapter(origin.tensor + 1, tmp_path / "converted", origin=origin)
    recorded = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded) == converted.resolve() and model_identity(recorded) == "smollm2-135m"
    assert from_adapter(out, origin=origin, task="t").base_model == "smollm2-135m"  # no contradiction
    (out / ORIGIN_FILE).unlink()
    unnamed = tpv.Origin(origin.tensor)
    assert from_adapter(out, origin=unnamed, task="t").base_model == "smollm2-135m"  # from the config
