"""Tuned soft prompt vs zero-shot manual instruction on every offline task (issue 4's "Done when").

For each offline task of ``tpv.tasks`` (shortest texts first):

1. **zero-shot**: a short natural-language instruction naming the task and its label words becomes a soft prompt
   by a *text init* whose length is exactly the instruction's token count (so the prompt is the instruction's token
   embeddings, i.e. the instruction prepended to every input, with no tuning); the model is scored by rank
   classification over the task's label words at the template's answer cue;
2. **tuned**: the same prompt tuned with ``tpv.engine.train`` for a small budget (validation every ``--eval-every``
   steps on a small stratified validation subset, best prompt kept), scored on the same test examples.

Both arms score the same capped test set: at most ``--test-examples`` examples of the task's test split, chosen
deterministically and stratified by label (each class keeps its share; the split's order within a class).

Results go to ``benchmarks/results/tasks_tuned_vs_zeroshot.json`` (rewritten atomically after every task; a rerun
skips the tasks already there, unless ``--redo``) and a Markdown table beside it.

Run:
    .venv/bin/python benchmarks/bench_tasks.py                        # every offline task
    .venv/bin/python benchmarks/bench_tasks.py --tasks rotten_tomatoes --steps 80
    .venv/bin/python benchmarks/bench_tasks.py --stop-after 04:15     # start no task after 04:15 UTC
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tpv._fs import atomic_write_text
from tpv.adapters import init_prompt_tuning, make_origin
from tpv.engine import TrainConfig, evaluate, train
from tpv.models import load_model, load_tokenizer
from tpv.tasks import Example, TaskSpec, list_tasks, load_task

RESULTS = Path(__file__).resolve().parent / "results"
STEM = "tasks_tuned_vs_zeroshot"
MODEL = "smollm2-135m"

# The manual instruction of each task: names the task and every label word (as the template's answer cue expects).
INSTRUCTIONS: dict[str, str] = {
    "rotten_tomatoes": "Classify the sentiment of the movie review as negative or positive.",
    "imdb_reviews": "Classify the sentiment of the movie review as negative or positive.",
    "vader_words": "Is the sentiment of the word negative or positive?",
    "afinn_words": "Rate the sentiment of the word as terrible, bad, good or great.",
    "wordnet_noun_supersense": (
        "Give the category of the noun from its definition: animal, plant, food, artifact, person, action, body "
        "or substance."
    ),
    "wordnet_verb_supersense": (
        "Give the category of the verb from its definition: moving, speaking, thinking, feeling, making, owning, "
        "touching or fighting."
    ),
    "wordnet_topic_domain": (
        "Give the topic of the word from its definition: law, sports, military, biology, math, music, computers or "
        "medicine."
    ),
    "fortune_topics": "Give the topic of the quote: computers, politics, science, art, books, law, school or food.",
    "wordnet_hypernymy": "Answer the question about word meanings with yes or no.",
    "wordnet_gloss_match": "Does the definition match the word? Answer yes or no.",
    "wordnet_wic": "Does the word have the same meaning in both sentences? Answer yes or no.",
    "wordnet_antonymy": "Are the two words opposites? Answer yes or no.",
}


def stratified_cap(examples: Sequence[Example], cap: int | None) -> list[Example]:
    """At most ``cap`` examples, each label keeping its share (largest remainders), in the split's order."""
    items = list(examples)
    if cap is None or len(items) <= cap:
        return items
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(items):
        by_label.setdefault(int(ex.label), []).append(i)
    exact = {lab: cap * len(idx) / len(items) for lab, idx in by_label.items()}
    quota = {lab: int(q) for lab, q in exact.items()}
    for lab in sorted(exact, key=lambda k: (quota[k] - exact[k], k))[: cap - sum(quota.values())]:
        quota[lab] += 1
    keep = sorted(i for lab, idx in by_label.items() for i in idx[: quota[lab]])
    return [items[i] for i in keep]


def environment() -> dict[str, Any]:
    """Versions, threads and machine load at the time of the run."""
    import peft
    import transformers

    from tpv.engine.env import cpu_has_native_bf16

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def _device_words(report: dict[str, Any]) -> str:
    env = report["environment"]
    return f"GPU ({env['gpu']})" if env.get("gpu") else "CPU"


def run_task(spec: TaskSpec, args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """Zero-shot and tuned scores of one task on the same capped test set."""
    data = load_task(spec.name, seed=args.seed)
    test = stratified_cap(data.test, args.test_examples)
    validation = stratified_cap(data.validation, args.val_examples) if args.val_examples > 0 else None
    words = list(spec.label_words)
    instruction = INSTRUCTIONS[spec.name] + "\n"
    n_tokens = len(tokenizer(instruction, add_special_tokens=False)["input_ids"])
    load_avg_start = os.getloadavg()[0]

    # (1) zero-shot: the instruction as a text-init soft prompt, untuned.
    model = load_model(MODEL)
    origin = make_origin(model, "text", num_virtual_tokens=n_tokens, text=instruction, tokenizer=tokenizer)
    peft_model = init_prompt_tuning(model, origin, task_type="causal-lm")
    score = functools.partial(
        evaluate,
        tokenizer=tokenizer,
        examples=test,
        label_words=words,
        metric=spec.metric,
        batch_size=args.eval_batch_size,
        max_length=args.max_length,
        precision=args.precision,
        device=args.device,
    )  # both arms: the same test examples, the same scorer
    zero = score(peft_model)
    del peft_model, model

    # (2) the same prompt tuned with the engine.
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        eval_every=args.eval_every if validation else 0,
        eval_examples=None,
        eval_batch_size=args.eval_batch_size,
        save_every=0,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        max_length=args.max_length,
        log_every=max(1, args.eval_every),
    )
    model = load_model(MODEL)
    result = train(
        model,
        tokenizer,
        data.train,
        task=spec.name,
        label_words=words,
        validation=validation,
        metric=spec.metric,
        init=origin,
        config=config,
        progress=False,
    )
    tuned = score(result.model)
    counts = {str(lab): sum(1 for e in test if int(e.label) == lab) for lab in range(len(words))}
    return {
        "task": spec.name,
        "group": spec.group,
        "metric": spec.metric,
        "label_words": words,
        "instruction": instruction,
        "virtual_tokens": n_tokens,
        "test_examples": len(test),
        "test_label_counts": counts,
        "validation_examples": len(validation or []),
        "train_examples": len(data.train),
        "majority_share": max(counts.values()) / len(test),
        "zero_shot": zero["score"],
        "zero_shot_accuracy": zero["accuracy"],
        "tuned": tuned["score"],
        "tuned_accuracy": tuned["accuracy"],
        "delta": tuned["score"] - zero["score"],
        "beats_zero_shot": tuned["score"] > zero["score"],
        "steps": result.steps,
        "best_step": result.best_step,
        "best_validation": result.best_score,
        "validation_curve": [{"step": e["step"], "score": e["score"]} for e in result.evals],
        "final_train_loss": result.history[-1]["loss"] if result.history else None,
        "train_seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds / max(1, result.steps), 3),
        "eval_seconds": round(zero["seconds"] + tuned["seconds"], 1),
        "precision": tuned["precision"],
        "load_average_start": round(load_avg_start, 2),
        "finished_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def order_tasks(names: Sequence[str], seed: int) -> list[TaskSpec]:
    """Offline tasks, shortest mean test text first (the cheapest to run)."""
    specs = {s.name: s for s in list_tasks() if s.source == "offline"}
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SystemExit(f"not offline tasks: {', '.join(unknown)} (choose from {', '.join(sorted(specs))})")
    chosen = [specs[n] for n in names] if names else list(specs.values())
    lengths = {s.name: statistics.mean(len(e.text) for e in load_task(s.name, seed=seed).test) for s in chosen}
    return sorted(chosen, key=lambda s: lengths[s.name])


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The table and a short factual summary (regenerated from the JSON on every write)."""
    done = report["tasks"]
    cfg = report["config"]
    lines = [
        "# Tuned soft prompt vs zero-shot manual instruction (SmolLM2-135M, offline tasks)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Model `{MODEL}` (SmolLM2-135M-Instruct), {_device_words(report)}, precision {cfg['precision']} "
        f"(ran as {next(iter(done.values()))['precision'] if done else '?'}), "
        f"{report['environment']['torch_threads']} torch threads, load average at start "
        f"{report['environment']['load_average'][0]}. Zero-shot = the instruction below each task as a text-init "
        "soft prompt (its own token embeddings, exactly its token count of virtual tokens), untuned: the same as "
        "prepending the instruction as text (up to the positions of left padding). "
        "Tuned = that prompt trained with `tpv.engine.train` for "
        f"{cfg['steps']} steps (batch {cfg['batch_size']}, AdamW lr {cfg['lr']}, linear decay), "
        + (
            f"validation ({cfg['val_examples']} stratified validation examples) every {cfg['eval_every']} steps, "
            "best kept. "
            if cfg["val_examples"] > 0
            else "no validation (the last prompt is kept). "
        )
        + f"Both arms score the same test examples: at most {cfg['test_examples']} per task, stratified by label, "
        "deterministic. Rank classification over the label words at the template's answer cue.",
        "",
        "| task | metric | test n | majority | zero-shot | tuned | delta | beats | steps (best) | train s | s/step "
        "| eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in done.items():
        lines.append(
            f"| `{name}` | {r['metric']} | {r['test_examples']} | {r['majority_share']:.3f} | {r['zero_shot']:.3f} "
            f"| {r['tuned']:.3f} | {r['delta']:+.3f} | {'yes' if r['beats_zero_shot'] else '**no**'} "
            f"| {r['steps']} ({r['best_step']}) | {r['train_seconds']:.0f} | {r['seconds_per_step']:.2f} "
            f"| {r['eval_seconds']:.0f} |"
        )
    for name in report.get("not_run", []):
        lines.append(f"| `{name}` | not run | | | | | | | | | | |")
    wins = [n for n, r in done.items() if r["beats_zero_shot"]]
    losses = [n for n, r in done.items() if not r["beats_zero_shot"]]
    lines += [
        "",
        f"Tuned beats zero-shot on {len(wins)} of {len(done)} tasks run"
        + (f"; not on: {', '.join(f'`{n}`' for n in losses)}." if losses else "."),
    ]
    if report.get("not_run"):
        lines.append(f"Not run (time budget): {', '.join(f'`{n}`' for n in report['not_run'])}.")
    lines += ["", "Instructions (the zero-shot prompts):", ""]
    lines += [f"- `{n}`: {r['instruction'].strip()!r} ({r['virtual_tokens']} tokens)" for n, r in done.items()]
    notes = report.get("notes")
    if notes:
        lines += ["", "## Analysis", "", notes]
    atomic_write_text(path, "\n".join(lines) + "\n")


def save(report: dict[str, Any], out: Path) -> None:
    """Write the JSON (atomically) and the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{STEM}.json", json.dumps(report, indent=1) + "\n")
    write_markdown(report, out / f"{STEM}.md")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="*", default=[], help="offline task names (default: all)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument(
        "--val-examples", type=int, default=100, help="validation subset scored during training; 0: none, keep the last"
    )
    parser.add_argument("--test-examples", type=int, default=500)
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--stop-after", default=None, help="HH:MM UTC: start no new task after this time")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON and Markdown results")
    parser.add_argument("--markdown-only", action="store_true", help="only rewrite the Markdown from the JSON in --out")
    parser.add_argument("--redo", action="store_true", help="rerun tasks already in the JSON")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = ("tasks", "stop_after", "redo", "threads", "out", "markdown_only")
    config = {k: v for k, v in vars(args).items() if k not in skip}
    command = "python benchmarks/bench_tasks.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    report: dict[str, Any] = {"command": command.strip(), "config": config, "model": MODEL, "tasks": {}}
    json_path = args.out / f"{STEM}.json"
    if args.markdown_only:
        write_markdown(json.loads(json_path.read_text()), args.out / f"{STEM}.md")
        return 0
    if json_path.is_file():
        old = json.loads(json_path.read_text())
        if old.get("config") == config and not args.redo:
            report["tasks"] = old.get("tasks", {})
            report["notes"] = old.get("notes")
        elif old.get("tasks") and not args.redo:
            raise SystemExit(f"{json_path} holds a run with another config; pass --redo to replace it")
    report["environment"] = environment()
    specs = order_tasks(args.tasks, args.seed)
    deadline = None
    if args.stop_after:
        hh, mm = (int(x) for x in args.stop_after.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    tokenizer = load_tokenizer(MODEL)
    report["not_run"] = [s.name for s in specs if s.name not in report["tasks"]]
    save(report, args.out)
    for spec in specs:
        if spec.name in report["tasks"]:
            print(f"{spec.name}: done already, skipped", flush=True)
            continue
        if deadline is not None and dt.datetime.now(dt.timezone.utc) >= deadline:
            print(f"{spec.name}: not started (past --stop-after {args.stop_after} UTC)", flush=True)
            continue
        start = time.perf_counter()
        row = run_task(spec, args, tokenizer)
        report["tasks"][spec.name] = row
        report["not_run"] = [s.name for s in specs if s.name not in report["tasks"]]
        report["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        save(report, args.out)
        print(
            f"{spec.name}: {row['metric']} zero-shot {row['zero_shot']:.3f} -> tuned {row['tuned']:.3f} "
            f"({row['delta']:+.3f}) in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
