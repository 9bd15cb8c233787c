"""Tests of many prompts at once (tpv.train_many, tpv.evaluate_many): the parity law on the four tiny models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import learnable

import tpv
from tpv.engine import Job, TrainConfig, TrainResult, evaluate, evaluate_many, train, train_many
from tpv.errors import ConfigError

WORDS = (" negative", " positive")
POS = ("good", "great", "loved", "fun", "fine")
NEG = ("bad", "awful", "hated", "boring", "dull")
TEMPLATE = "the movie was {} . sentiment :"
LONG = "it was really very good and fun . the story was great and the acting was fine , i loved it . sentiment :"
BASE = {"steps": 10, "lr": 0.05, "eval_every": 5, "batch_size": 3, "num_virtual_tokens": 4, "precision": "fp32"}
REL = 1e-4  # the parity law's tolerance: relative difference of the prompts after 10 fp32 steps


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


def toy(flip: bool = False, long: bool = False) -> list[tuple[str, int]]:
    """Ten sentiment examples (``flip`` swaps the labels; ``long`` adds one longer than Gemma 3's window of 16)."""
    data = [(TEMPLATE.format(w), 1) for w in POS] + [(TEMPLATE.format(w), 0) for w in NEG]
    if long:
        data.append((LONG, 1))
    return [(t, 1 - y) for t, y in data] if flip else data


def jobs() -> dict[str, Job]:
    """Three jobs with different data, label words, prompt lengths, seeds, losses and schedules."""
    return {
        "A": Job(train_examples=toy(long=True), label_words=WORDS, validation=toy(long=True), options=BASE, name="A"),
        "B": Job(
            train_examples=toy(flip=True),
            label_words=(" no", " yes"),
            validation=toy(flip=True),
            seed=3,
            name="B",
            options={**BASE, "num_virtual_tokens": 3, "steps": 6, "lr": 0.02, "loss": "label-words"},
        ),
        "C": Job(
            train_examples=toy(),
            label_words=WORDS,
            validation=toy(flip=True),
            seed=5,
            name="C",
            options={**BASE, "grad_accum": 2, "schedule": "cosine", "patience": 1, "eval_every": 2},
        ),
    }


def alone(model: Any, tok: Any, job: Job) -> TrainResult:
    """The job trained by itself with tpv.train (same seed, data and config)."""
    return train(
        model, tok, job.train_examples, label_words=job.label_words, validation=job.validation,
        config=job.resolve_config(), progress=False,
    )  # fmt: skip


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def model_of(tiny: Any, kind: str) -> tuple[Any, Any]:
    """A fresh learnable tiny model with dropout off (T5 and BERT have 0.1; the parity law excludes dropout)."""
    model, tok = learnable(tiny, kind)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        elif isinstance(getattr(module, "dropout", None), float):  # T5's attention keeps its rate as a float
            module.dropout = 0.0
    return model, tok


def kind_jobs(kind: str) -> dict[str, Job]:
    """:func:`jobs`, scored by the classification head (no label words) on BERT."""
    return {k: Job(**{**job.__dict__, "label_words": None}) if kind == "bert" else job for k, job in jobs().items()}


def head_of(result: TrainResult) -> dict[str, torch.Tensor]:
    """A sequence-classification run's trained head (PEFT's copy of the classifier), by parameter name."""
    return {k: p.detach().clone() for k, p in result.model.named_parameters() if "modules_to_save" in k}


def head_rel(a: TrainResult, b: TrainResult) -> float:
    """The largest relative difference between the parameters of two runs' heads."""
    ha, hb = head_of(a), head_of(b)
    assert ha.keys() == hb.keys() and ha
    return max(rel(ha[k], hb[k]) for k in hb)


def assert_same_run(got: TrainResult, ref: TrainResult) -> None:
    """The parity law: same prompt (relative 1e-4), same evaluations, same best step and stopping."""
    assert rel(got.prompt, ref.prompt) <= REL
    assert rel(got.vector.tensor, ref.vector.tensor) <= REL
    assert (got.steps, got.stopped_early, got.best_step) == (ref.steps, ref.stopped_early, ref.best_step)
    assert [e["step"] for e in got.evals] == [e["step"] for e in ref.evals]
    for g, r in zip(got.evals, ref.evals):
        assert (g["score"], g["accuracy"]) == (r["score"], r["accuracy"])
        assert g["loss"] == pytest.approx(r["loss"], rel=REL)
    assert [h["loss"] for h in got.history] == pytest.approx([h["loss"] for h in ref.history], rel=REL)
    assert [h["lr"] for h in got.history] == [h["lr"] for h in ref.history]
    assert got.lr == ref.lr and got.origin.id == ref.origin.id
    assert got.norm_ratio == pytest.approx(ref.norm_ratio, rel=REL)


# -- the parity law ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share_prefix", [None, False])
@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_pack_equals_alone_whoever_shares_it(tiny: Any, kind: str, share_prefix: bool | None) -> None:
    """A job packed with B (other prompt length) or with C (same length) ends as it does alone, and so do B and C."""
    model, tok = learnable(tiny, kind)
    j = jobs()
    ref = {name: alone(model, tok, job) for name, job in j.items()}
    with_b = train_many(model, tok, [j["A"], j["B"]], share_prefix=share_prefix, progress=False)
    with_c = train_many(model, tok, [j["A"], j["C"]], share_prefix=share_prefix, progress=False)
    for got in (with_b[0], with_c[0]):
        assert_same_run(got, ref["A"])
    assert rel(with_b[0].prompt, with_c[0].prompt) <= REL
    assert_same_run(with_b[1], ref["B"])  # left the pack after 6 steps while A went on
    assert_same_run(with_c[1], ref["C"])  # stopped early (patience 1) while A went on
    assert with_c[1].stopped_early and with_b[1].steps == 6
    assert with_b[1].task == "task" and with_b[1].vector.terms == {"task": 1.0}
    again = evaluate(with_b[0].model, tok, toy(long=True), label_words=WORDS)
    assert again["score"] == with_b[0].best_score  # TrainResult.model holds the kept prompt, as with train


@pytest.mark.parametrize("kind", ["t5", "bert"])
def test_seq2seq_and_seq_cls_pack_equals_alone_whoever_shares_it(tiny: Any, kind: str) -> None:
    """On T5 (two prompt blocks) and BERT (a head per job), a packed job ends as alone, whoever shares its pack."""
    j = kind_jobs(kind)
    model, tok = model_of(tiny, kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = {name: alone(model, tok, job) for name, job in j.items()}  # each train run has its own head too
    with_b = train_many(model, tok, [j["A"], j["B"]], progress=False)
    with_c = train_many(model, tok, [j["A"], j["C"]], progress=False)
    pairs = [(with_b[0], ref["A"]), (with_c[0], ref["A"]), (with_b[1], ref["B"]), (with_c[1], ref["C"])]
    for got, want in pairs:
        assert_same_run(got, want)
    assert rel(with_b[0].prompt, with_c[0].prompt) <= REL
    assert with_c[1].stopped_early and with_b[1].steps == 6
    if kind == "t5":
        assert (with_b[0].prompt.shape[0], with_b[1].prompt.shape[0]) == (8, 6)  # 2 blocks of 4 and of 3 rows
    else:
        for got, want in pairs:
            assert head_rel(got, want) <= REL
        assert head_rel(with_b[0], with_c[0]) <= REL
        trained = head_of(with_b[0])
        weight = next(k for k in trained if k.endswith("weight"))
        assert rel(trained[weight], before["classifier.weight"]) > 1e-3  # the head trained with the prompt
        assert head_rel(ref["A"], with_b[1]) > 1e-3  # each job trains a head of its own...
        assert isinstance(model.classifier, torch.nn.Linear)  # ...as a copy: the model given is left as it was
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    words = None if kind == "bert" else WORDS
    again = evaluate(with_b[0].model, tok, toy(long=True), label_words=words)
    assert again["score"] == with_b[0].best_score  # TrainResult.model holds the kept prompt (and head)


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_pack_size_queue_range_test_out_dir_and_events(tiny: Any, tmp_path: Path, kind: str) -> None:
    """With pack_size=1 jobs wait their turn and end as in one pack; range test, out_dir and callback work."""
    model, tok = model_of(tiny, kind)
    j = kind_jobs(kind)
    ranged = Job(
        train_examples=toy(), label_words=j["A"].label_words, seed=2, out_dir=tmp_path / "r",
        options={**BASE, "lr": "range-test", "range_test_steps": 5, "steps": 4},
    )  # fmt: skip
    events: list[tuple[int, str]] = []
    packed = train_many(model, tok, [j["A"], ranged], progress=False)
    queued = train_many(
        model, tok, [j["A"], Job(**{**ranged.__dict__, "overwrite": True})], pack_size=1, progress=False,
        callback=lambda i, e: events.append((i, e.kind)),
    )  # fmt: skip
    ref = alone(model, tok, Job(**{**ranged.__dict__, "out_dir": None}))
    for got in (packed[1], queued[1]):
        assert got.lr_choice["rule"] == "range-test"
        assert_same_run(got, ref)
    assert_same_run(queued[0], packed[0])
    if kind == "bert":  # the range test resets the head with the prompt; the run folder's adapter holds the head
        assert head_rel(queued[1], ref) <= REL and head_rel(queued[0], packed[0]) <= REL
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(model_of(tiny, kind)[0], tmp_path / "r" / "adapter")
        assert evaluate(reloaded, tok, toy())["loss"] == pytest.approx(evaluate(queued[1].model, tok, toy())["loss"])
    assert [e for e in events if e[1] == "end"] == [(0, "end"), (1, "end")]
    joined = max(i for i, e in enumerate(events) if e == (1, "start"))  # after its range test's start events
    assert events.index((0, "end")) < joined  # the second job joined the pack when the first left
    loaded = tpv.load_vector(tmp_path / "r" / "vector.safetensors")
    assert torch.equal(loaded.tensor, queued[1].vector.tensor)
    assert (tmp_path / "r" / "run.json").is_file()


# -- evaluate_many -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "gemma3", "t5", "bert"])
def test_evaluate_many_equals_evaluate_each(tiny: Any, kind: str) -> None:
    """Several prompts (and a trained run, with its own head on BERT) scored in mixed batches score as alone."""
    from tpv.adapters import init_prompt_tuning

    model, tok = learnable(tiny, kind)
    words = None if kind == "bert" else WORDS
    dim = model.get_input_embeddings().weight.shape[1]
    subs = 2 if kind == "t5" else 1  # an encoder-decoder prompt has two blocks of rows
    origin = tpv.Origin.gaussian(4, dim, seed=1, std=0.3, num_transformer_submodules=subs)
    gen = torch.Generator().manual_seed(0)
    vector = tpv.TaskPromptVector.from_prompts(
        origin.tensor + 0.2 * torch.randn(4 * subs, dim, generator=gen), origin, task="t"
    )
    run = train(  # on BERT the run trains a head of its own: the model's stays as it was for the other prompts
        model, tok, toy(), label_words=words, validation=toy(), steps=3, lr=0.3, num_virtual_tokens=2,
        precision="fp32", progress=False,
    )  # fmt: skip
    prompts: list[Any] = [
        torch.randn(5 * subs, dim, generator=gen) * 0.3,
        origin,
        (vector, origin),
        tpv.Origin.gaussian(3, dim, seed=2, num_transformer_submodules=subs),
        run,
    ]
    data = [*toy(long=True), ("bad", 0), ("really very fun and great", 1)]
    for share in (None, False):
        got = evaluate_many(
            model, tok, prompts, data, label_words=words, batch_size=7, return_predictions=True, share_prefix=share,
            precision="fp32",
        )  # fmt: skip
        assert len(got) == len(prompts)
        for item, result in zip(prompts, got):
            if isinstance(item, TrainResult):
                peft_model = item.model  # its kept prompt, and on BERT its own head
            else:
                init, org = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
                peft_model = init_prompt_tuning(model, init, origin=org)
            ref = evaluate(peft_model, tok, data, label_words=words, return_predictions=True, precision="fp32")
            assert result["predictions"] == ref["predictions"]
            assert (result["score"], result["accuracy"], result["examples"]) == (
                ref["score"], ref["accuracy"], ref["examples"],
            )  # fmt: skip
            assert result["loss"] == pytest.approx(ref["loss"], abs=1e-5)
            assert set(result) == set(ref)


# -- errors and exports --------------------------------------------------------------------------------------------


def test_errors_are_clear(tiny: Any) -> None:
    """Empty jobs, non-jobs, unpackable heads, mixed precisions and bad prompts raise ConfigError."""
    model, tok = tiny("llama")
    job = Job(train_examples=toy(), label_words=WORDS, options=BASE)
    with pytest.raises(ConfigError, match="jobs is empty"):
        train_many(model, tok, [])
    with pytest.raises(ConfigError, match=r"jobs\[1\] is a dict"):
        train_many(model, tok, [job, {"task": "x"}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="pack_size"):
        train_many(model, tok, [job], pack_size=0)
    from transformers import LlamaForSequenceClassification

    scored = LlamaForSequenceClassification(model.config)  # a decoder classifier: its head reads the last position
    with pytest.raises(ConfigError, match="'score' reads each row's last position"):
        train_many(scored, tok, [Job(**{**job.__dict__, "label_words": None})])
    with pytest.raises(ConfigError, match="'score' reads each row's last position"):
        evaluate_many(scored, tok, [torch.zeros(2, 32)], toy())
    t5, t5_tok = tiny("t5")
    with pytest.raises(ConfigError, match="2 blocks"):
        evaluate_many(t5, t5_tok, [torch.zeros(3, 16)], toy(), label_words=WORDS)
    bf16 = Job(train_examples=toy(), label_words=WORDS, options={**BASE, "precision": "bf16"})
    with pytest.raises(ConfigError, match="share device and precision"):
        train_many(model, tok, [job, bf16])
    with pytest.raises(ConfigError, match="share out_dir"):
        train_many(model, tok, [Job(**{**job.__dict__, "out_dir": "x"}), Job(**{**job.__dict__, "out_dir": "x"})])
    with pytest.raises(ConfigError, match=r"config must be a tpv\.TrainConfig"):
        train_many(model, tok, [job], config={"steps": 3})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="non-empty list"):
        evaluate_many(model, tok, [], toy(), label_words=WORDS)
    dim = model.get_input_embeddings().weight.shape[1]
    origin = tpv.Origin.gaussian(2, dim, seed=0)
    vector = tpv.TaskPromptVector.from_prompts(origin.tensor, origin, task="t")
    with pytest.raises(ConfigError, match="a difference"):
        evaluate_many(model, tok, [vector], toy(), label_words=WORDS)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="wide"):
        evaluate_many(model, tok, [torch.zeros(2, dim + 1)], toy(), label_words=WORDS)


def test_job_config_resolution_and_exports() -> None:
    """A job's config is its own (or the default), then options, then seed; the names are exported lazily."""
    base = TrainConfig(steps=7)
    job = Job(task="x", seed=4, options={"lr": 0.01})
    assert job.resolve_config(base) == TrainConfig(steps=7, lr=0.01, seed=4)
    assert Job(config=TrainConfig(steps=3)).resolve_config(base).steps == 3
    with pytest.raises(ConfigError, match="no option 'stepz'"):
        Job(options={"stepz": 1}).resolve_config()
    assert tpv.Job is Job and tpv.train_many is train_many and tpv.evaluate_many is evaluate_many
    assert {"Job", "train_many", "evaluate_many"} <= set(tpv.__all__)
