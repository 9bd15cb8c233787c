"""bf16 prompt tuning on a CPU: the engine's two fixes against plain autocast, and fp32, in one process.

One model (SmolLM2-135M), the same Rotten Tomatoes examples, origin, learning rate and steps; ``tpv.train`` with:

  fp32               no autocast;
  bf16 autocast      ``torch.autocast`` alone: the fused CPU attention kernel, frozen weights cast at every use
                     (the engine before ``tpv.engine.precision``);
  bf16 + math attn   the math attention backend wherever gradients flow, weights still cast at every use;
  bf16 (engine)      both fixes: math attention and the frozen ``nn.Linear`` weights cast once per run.

The variants run round-robin, ``--repeats`` times each; the median seconds per step is reported, with ratios to
plain bf16 autocast and to fp32, and each variant's final prompt against fp32's and plain autocast's (relative
Frobenius difference).

    python benchmarks/bench_precision.py                 # about 4 minutes on 2 idle CPU cores
    python benchmarks/bench_precision.py --steps 4 --repeats 1   # a smoke run

Writes ``benchmarks/results/precision[-TAG].json`` (command, config, environment, every timing) and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.engine.env import cpu_has_native_bf16, environment  # noqa: E402

VARIANTS = ("fp32", "bf16 autocast", "bf16 + math attn", "bf16 (engine)")


@contextlib.contextmanager
def _plain_autocast(device: torch.device, precision: str) -> Iterator[None]:
    on = precision == "bf16"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def _no_cast(model: Any, device: torch.device, precision: str) -> Iterator[int]:
    yield 0


@contextlib.contextmanager
def variant(name: str) -> Iterator[str]:
    """Patch the engine's loop for one variant; yields the precision to train with."""
    from tpv.engine import loop

    saved = (loop._autocast, loop.frozen_linears_in_bf16)
    if name == "bf16 autocast":
        loop._autocast, loop.frozen_linears_in_bf16 = _plain_autocast, _no_cast  # type: ignore[assignment]
    elif name == "bf16 + math attn":
        loop.frozen_linears_in_bf16 = _no_cast  # type: ignore[assignment]
    try:
        yield "fp32" if name == "fp32" else "bf16"
    finally:
        loop._autocast, loop.frozen_linears_in_bf16 = saved  # type: ignore[assignment]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tpv
    from tpv.adapters import make_origin
    from tpv.models import load_model, load_tokenizer
    from tpv.tasks import get_task, load_task

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_model(args.model), load_tokenizer(args.model)
    spec = get_task(args.task)
    train = load_task(args.task, seed=0).train[: args.examples]
    origin = make_origin(model, "first-n-vocab", num_virtual_tokens=args.num_virtual_tokens, seed=0, n=5000)
    seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    prompts: dict[str, torch.Tensor] = {}
    lrs: dict[str, float] = {}

    def fit(precision: str, steps: int) -> Any:
        return tpv.train(model, tok, train, label_words=spec.label_words, origin=origin, steps=steps, lr="auto",
                         eval_every=0, batch_size=args.batch_size, precision=precision, max_length=args.max_length,
                         progress=False)  # fmt: skip

    for name in VARIANTS:  # warm-up, untimed: first-call allocations and kernel selection
        with variant(name) as precision:
            fit(precision, 2)
    load = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name in VARIANTS:
            with variant(name) as precision:
                result = fit(precision, args.steps)
            seconds[name].append(result.seconds / args.steps)
            prompts.setdefault(name, result.vector.apply_to(origin).detach().float())
            lrs[name] = result.lr
    load.append(os.getloadavg()[0])
    per_step = {v: statistics.median(s) for v, s in seconds.items()}
    rows = [
        {
            "variant": v,
            "seconds_per_step": per_step[v],
            "all_seconds_per_step": seconds[v],
            "vs_bf16_autocast": per_step["bf16 autocast"] / per_step[v],
            "vs_fp32": per_step["fp32"] / per_step[v],
            "prompt_rel_diff_vs_fp32": _rel(prompts[v], prompts["fp32"]),
            "prompt_rel_diff_vs_bf16_autocast": _rel(prompts[v], prompts["bf16 autocast"]),
            "lr": lrs[v],
        }
        for v in VARIANTS
    ]
    env = environment()
    return {
        "command": " ".join(["python", *sys.argv]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {**env, "native_bf16": cpu_has_native_bf16(), "torch_threads": torch.get_num_threads()},
        "load_average": load,
        "rows": rows,
    }


def markdown(doc: dict[str, Any]) -> str:
    c, env = doc["config"], doc["environment"]
    lines = [
        "# bf16 prompt tuning on a CPU: the engine's fixes vs plain autocast and fp32",
        "",
        f"`{doc['command']}`",
        "",
        f"{c['model']}, {c['task']} ({c['examples']} training examples), {c['steps']} steps of batch "
        f"{c['batch_size']}, {c['num_virtual_tokens']} virtual tokens, lr auto, full-vocab loss; each variant "
        f"{c['repeats']}x round-robin after an untimed warm-up, median seconds per step. "
        f"{env.get('torch_threads')} torch thread(s); native "
        f"bf16: {env['native_bf16']}; load average {doc['load_average'][0]:.1f} at the start, "
        f"{doc['load_average'][1]:.1f} at the end.",
        "",
        "| variant | s/step | vs bf16 autocast | vs fp32 | prompt vs fp32 (rel.) | prompt vs bf16 autocast (rel.) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {r['variant']} | {r['seconds_per_step']:.3f} | {r['vs_bf16_autocast']:.2f}x | {r['vs_fp32']:.2f}x | "
            f"{r['prompt_rel_diff_vs_fp32']:.2e} | {r['prompt_rel_diff_vs_bf16_autocast']:.2e} |"
        )
    lines += [
        "",
        "*bf16 autocast*: `torch.autocast` alone (the fused CPU attention kernel; the frozen fp32 weights cast to bf16 "
        "at every use), the engine before `tpv.engine.precision`. *math attn*: the scaled-dot-product attention's "
        "math backend wherever gradients flow. *engine*: math attention and the frozen `nn.Linear` weights cast "
        "once per run (autocast's own arithmetic: the same prompt as *math attn* up to run-to-run noise, see "
        "tests/test_precision.py for the bit-exact check). Prompt differences: bf16 rounding against fp32, and the "
        "attention kernel's summation order against plain autocast.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-virtual-tokens", type=int, default=50)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="", help="suffix of the result files: precision-TAG.json")
    args = parser.parse_args(argv)
    doc = run(args)
    stem = "precision" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{stem}.json", json.dumps(doc, indent=1, default=str) + "\n")
    text = markdown(doc)
    atomic_write_text(args.out / f"{stem}.md", text)
    print(text)


if __name__ == "__main__":
    main()
