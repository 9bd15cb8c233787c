"""Zero-shot cross-model prompt transfer, SmolLM2-135M <-> Gemma-3-270M, on the offline sentiment tasks.

For each task and direction (source -> target) it measures the target's test accuracy of:

  (a) random     a random target prompt (the first-n-vocab origin the target prompt is tuned from)
  (b) manual     a manual instruction prompt (the embeddings of an instruction's tokens)
  (c) relative   PTfer relative-space transfer of the source's tuned prompt, single source and multi-source
                 (two source prompts tuned from different origins), the candidate chosen on 200 target
                 validation examples (PTfer's protocol) -- and the same search without target data
  (d) linear     least-squares and orthogonal-Procrustes maps fitted on the shared anchors
  (e) tuned      a prompt tuned directly on the target (upper bound)

and reports the fraction of the (a) -> (e) gap each transfer recovers. Prompts are tuned by a lean PEFT-free loop
(prompt prepended to the input embeddings, loss on the label word at the last position, bf16 autocast, dynamic
padding), the best validation checkpoint kept. Tuned prompts are cached in ``--work`` and reused.

    python benchmarks/bench_transfer.py                       # the full run (about an hour on 2 busy CPU cores)
    python benchmarks/bench_transfer.py --quick               # a smoke run (a few minutes)

Writes ``benchmarks/results/transfer.json`` (command, config, environment, every score) and ``transfer.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.files import load_origin, save  # noqa: E402
from tpv.origin import Origin  # noqa: E402

MODELS = ("smollm2-135m", "gemma3-270m")
INSTRUCTION = "Classify the sentiment of this movie review as positive or negative."


@dataclass
class Recipe:
    """How to prompt-tune one model (the benchmark's upper bound and its sources)."""

    lr: float
    steps: int
    batch_size: int = 8
    eval_every: int = 25
    weight_decay: float = 0.0
    loss: str = "lm"  # "lm": cross-entropy over the whole vocabulary; "label": over the label words only


# SmolLM2: ASSETS.md's setting (lr 0.3, loss over the whole vocabulary). Gemma-3-270M: lr 1.0 with that loss got
# worse (val 0.56 -> 0.48 in 20 steps); lr 0.1 with the loss over the two label words reached val 0.80 in 10 steps.
RECIPES: dict[str, Recipe] = {
    "smollm2-135m": Recipe(lr=0.3, steps=20, eval_every=10, loss="lm"),
    "gemma3-270m": Recipe(lr=0.1, steps=20, eval_every=10, loss="label"),
}


@dataclass
class Config:
    tasks: tuple[str, ...] = ("rotten_tomatoes", "imdb_reviews")
    directions: tuple[tuple[str, str], ...] = (("smollm2-135m", "gemma3-270m"), ("gemma3-270m", "smollm2-135m"))
    tokens: int = 16
    val: int = 200
    test: int = 400
    train_pool: int = 2000
    search_steps: int = 600
    search_lr: float = 5e-3
    search_eval_every: int = 150
    label_weight: float = 1500.0
    norm: str = "standardize"
    top_k: int | None = None
    max_chars: int = 600
    seeds: tuple[int, ...] = (0, 1)
    init: str = "text"
    multi_source: bool = True
    fuse: bool = True
    only: tuple[str, ...] = ()
    threads: int = 1
    bf16: bool = False
    recipes: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: asdict(v) for k, v in RECIPES.items()})


# -- models and scoring -----------------------------------------------------------------------------------------


BF16 = False  # bf16 autocast: 5x *slower* than fp32 on this project's CPUs (no native bf16); off by default


@contextlib.contextmanager
def bf16() -> Iterator[None]:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        yield


def say(msg: str) -> None:
    load = os.getloadavg()[0]
    print(f"{time.strftime('%H:%M:%S')} (load {load:.1f}) {msg}", flush=True)


class Lm:
    """A loaded model with its tokenizer, label ids and cached scorers."""

    def __init__(self, name: str) -> None:
        from tpv.models import load_model, load_tokenizer

        self.name = name
        self.model = load_model(name)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tok = load_tokenizer(name)
        self.embed = self.model.get_input_embeddings()
        self.dim = int(self.embed.weight.shape[1])
        self._scorers: dict[tuple[str, str], Any] = {}

    def scorer(self, key: tuple[str, str], texts: Sequence[str], labels: Sequence[int], words: Sequence[str]) -> Any:
        from tpv.search import BatchedPromptScorer

        if key not in self._scorers:
            self._scorers[key] = BatchedPromptScorer(self.model, self.tok, texts, labels, words, batch_size=8)
        return self._scorers[key]

    def accuracy(self, scorer: Any, prompt: torch.Tensor) -> float:
        with bf16():
            return float(scorer(prompt.float()[None])[0])


def tune(
    lm: Lm,
    origin: torch.Tensor,
    train: Sequence[Any],
    words: Sequence[str],
    val_scorer: Any,
    recipe: Recipe,
    seed: int,
    log: list[dict[str, Any]],
) -> tuple[torch.Tensor, float, int]:
    """Prompt-tune from ``origin`` (PEFT-free); return (best prompt, its val accuracy, its step)."""
    label_ids = torch.tensor([lm.tok(w, add_special_tokens=False)["input_ids"][0] for w in words])  # (K,)
    prompt = torch.nn.Parameter(origin.clone().float())  # (P, d)
    opt = torch.optim.AdamW([prompt], lr=recipe.lr, weight_decay=recipe.weight_decay)
    rng = random.Random(seed)
    best = (lm.accuracy(val_scorer, prompt.detach()), 0, prompt.detach().clone())
    log.append({"step": 0, "val": best[0]})
    encoded = [(lm.tok(e.text)["input_ids"], int(e.label)) for e in train]
    for step in range(1, recipe.steps + 1):
        batch = rng.sample(encoded, recipe.batch_size)
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), lm.tok.pad_token_id, dtype=torch.long)  # (b, L) left-padded
        mask = torch.zeros(len(batch), width, dtype=torch.long)  # (b, L)
        for i, (row, _) in enumerate(batch):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        y = torch.tensor([label for _, label in batch])  # (b,)
        p = prompt.shape[0]
        full = torch.cat([torch.ones(len(batch), p, dtype=torch.long), mask], dim=1)  # (b, P + L)
        pos = (full.cumsum(1) - 1).clamp(min=0)  # (b, P + L)
        with bf16():
            text = lm.embed(ids)  # (b, L, d)
            embeds = torch.cat([prompt[None].expand(len(batch), -1, -1).to(text.dtype), text], dim=1)
            out = lm.model(inputs_embeds=embeds, attention_mask=full, position_ids=pos, logits_to_keep=1)
            logits = out.logits[:, -1, :].float()  # (b, V)
        if recipe.loss == "label":
            loss = torch.nn.functional.cross_entropy(logits[:, label_ids], y)  # rank-classification loss
        else:
            loss = torch.nn.functional.cross_entropy(logits, label_ids[y])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % recipe.eval_every == 0 or step == recipe.steps:
            acc = lm.accuracy(val_scorer, prompt.detach())
            log.append({"step": step, "loss": float(loss.detach()), "val": acc})
            say(f"  {lm.name} step {step}: loss {float(loss.detach()):.3f} val {acc:.3f}")
            if acc > best[0]:
                best = (acc, step, prompt.detach().clone())
    return best[2], best[0], best[1]


# -- the benchmark ----------------------------------------------------------------------------------------------


def gap(x: float, a: float, e: float) -> float | None:
    return None if e - a <= 1e-9 else (x - a) / (e - a)


def _score(
    row: dict[str, Any],
    lm: Lm,
    scorer: Any,
    label: str,
    save: Any,
    key: str,
    prompt: torch.Tensor,
    seconds: float = 0.0,
) -> None:
    t0 = time.time()
    row[key] = {"test": lm.accuracy(scorer, prompt), "transfer_seconds": round(seconds, 1)}
    say(f"{label} {key}: test {row[key]['test']:.3f} (scored in {time.time() - t0:.0f} s)")
    save()


def _score_or_reuse(
    old: dict[str, Any],
    row: dict[str, Any],
    fresh: Any,
    only: Sequence[str],
    key: str,
    prompt: torch.Tensor,
    seconds: float = 0.0,
) -> None:
    """``fresh(key, prompt, seconds)`` unless ``--resume`` found it in an earlier run, or ``--only`` leaves it out."""
    if key in old:
        row[key] = dict(old[key])
    elif not only or key in only:
        fresh(key, prompt, seconds)


def _val_accuracy(lm: Lm, scorer: Any, prompt: torch.Tensor) -> float:
    return lm.accuracy(scorer, prompt)


def _tuned_prompt(
    cfg: Config,
    work: Path,
    task: str,
    lms: dict[str, Lm],
    scorers: dict[str, Any],
    train: Sequence[Any],
    words: Sequence[str],
    prompts: dict[tuple[str, int], torch.Tensor],
    task_out: dict[str, Any],
    name: str,
    seed: int,
) -> torch.Tensor:
    """The prompt tuned on ``name`` from seed ``seed``'s init: from ``prompts``, the cache folder, or tuned now."""
    if (name, seed) in prompts:
        return prompts[(name, seed)]
    lm, (vs, _) = lms[name], scorers[name]
    recipe = Recipe(**cfg.recipes[name])
    origin = make_init(lm, cfg, seed)
    tag = f"{name}-{origin.init}-seed{seed}-{cfg.tokens}tok-{recipe.steps}st-lr{recipe.lr}-{recipe.loss}-val{cfg.val}"
    path = work / task / f"{tag}.safetensors"
    log: list[dict[str, Any]] = []
    t0 = time.time()
    log_path = path.with_suffix(".json")
    if path.is_file():
        tuned, v, step = load_origin(path).tensor, float("nan"), -1
        if log_path.is_file():
            log = json.loads(log_path.read_text())
            v, step = max((r["val"], -r["step"]) for r in log)
            step = -step
        say(f"[{task}] reusing {path}")
    else:
        say(f"[{task}] tuning {name} from {origin.init} (seed {seed}): {recipe}")
        tuned, v, step = tune(lm, origin.tensor, train, words, vs, recipe, seed, log)
        save(Origin(tuned, init="tensor", base_model=name, params={"task": task, "seed": seed}), path)
        atomic_write_text(log_path, json.dumps(log))
    prompts[(name, seed)] = tuned
    task_out["tuned"][f"{name}/seed{seed}"] = {
        "init": origin.init,
        "val": v,
        "best_step": step,
        "seconds": round(time.time() - t0, 1),
        "log": log,
    }
    say(f"[{task}] tuned {name} seed {seed}: val {v:.3f} at step {step} ({time.time() - t0:.0f} s)")
    return tuned


def make_init(lm: Lm, cfg: Config, seed: int) -> Origin:
    from tpv.adapters import make_origin

    if cfg.init == "text" and seed == cfg.seeds[0]:
        return make_origin(lm.model, "text", text=INSTRUCTION, tokenizer=lm.tok, num_virtual_tokens=cfg.tokens)
    # the second source of multi-source transfer (and --init first-n-vocab) starts from random vocabulary rows
    return make_origin(lm.model, "first-n-vocab", num_virtual_tokens=cfg.tokens, seed=seed)


def run(cfg: Config, work: Path, checkpoint: Any, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the benchmark; ``checkpoint(results)`` is called after every measurement (partial results on disk).

    ``previous``: the results of an earlier run with the same config (``--resume``): its finished measurements are
    kept, not recomputed.
    """
    from tpv.adapters import make_origin
    from tpv.tasks import load_task
    from tpv.transfer import ModelSpace, SearchConfig, Source, count_shared_anchors, find_shared_anchors, run_transfer

    t_start = time.time()
    results: dict[str, Any] = {"tasks": {}, "anchors": {}}
    names = sorted({m for d in cfg.directions for m in d})
    lms = {}
    for name in names:
        say(f"loading {name}")
        lms[name] = Lm(name)
    spaces = {n: ModelSpace.from_model(lm.model, lm.tok, name=n) for n, lm in lms.items()}
    anchor_sets = {}
    for s, t in cfg.directions:
        anchor_sets[(s, t)] = find_shared_anchors(spaces[s].tokenizer, spaces[t].tokenizer)
        results["anchors"][f"{s}->{t}"] = len(anchor_sets[(s, t)])
    if len(names) == 2:
        a, b = (spaces[n].tokenizer for n in names)
        results["anchors"]["count_shared_anchors"] = count_shared_anchors(a, b)
    say(f"anchors {results['anchors']}")
    for task in cfg.tasks:
        data = load_task(task, seed=0)
        words = data.spec.label_words
        val, test = data.validation[: cfg.val], data.test[: cfg.test]
        train = data.train[: cfg.train_pool]
        task_out: dict[str, Any] = {"tuned": {}, "directions": {}, "sizes": {"val": len(val), "test": len(test)}}
        results["tasks"][task] = task_out
        prompts: dict[tuple[str, int], torch.Tensor] = {}
        scorers = {}
        for name, lm in lms.items():
            vs = lm.scorer((task, "val"), [e.text for e in val], [int(e.label) for e in val], words)
            ts = lm.scorer((task, "test"), [e.text for e in test], [int(e.label) for e in test], words)
            scorers[name] = (vs, ts)
        tuning = functools.partial(_tuned_prompt, cfg, work, task, lms, scorers, train, words, prompts, task_out)
        for name in lms:
            tuning(name, cfg.seeds[0])
            checkpoint(results)
        for s, t in cfg.directions:
            lm_t = lms[t]
            vs, ts = scorers[t]
            row: dict[str, Any] = {}
            records: dict[str, Any] = {}
            task_out["directions"][f"{s}->{t}"] = {"scores": row, "records": records}
            old = ((previous or {}).get("tasks", {}).get(task, {}).get("directions", {})).get(f"{s}->{t}", {})
            old_scores, old_records = old.get("scores", {}), old.get("records", {})

            label = f"[{task}] {s} -> {t}"
            fresh = functools.partial(_score, row, lm_t, ts, label, functools.partial(checkpoint, results))

            score = functools.partial(_score_or_reuse, old_scores, row, fresh, cfg.only)

            random_origin = make_origin(lm_t.model, "first-n-vocab", num_virtual_tokens=cfg.tokens, seed=0)
            score("a_random", random_origin.tensor)
            ids = lm_t.tok(INSTRUCTION, add_special_tokens=False)["input_ids"]
            score("b_manual", spaces[t].embeddings[torch.tensor(ids)])
            score("e_tuned", prompts[(t, cfg.seeds[0])])

            val_fn = functools.partial(_val_accuracy, lm_t, vs)

            search = SearchConfig(
                steps=cfg.search_steps,
                lr=cfg.search_lr,
                eval_every=cfg.search_eval_every,
                norm=cfg.norm,  # type: ignore[arg-type]
                top_k=cfg.top_k,
            )
            anchors = anchor_sets[(s, t)]
            src_prompt = prompts[(s, cfg.seeds[0])]
            common = {"source_model": spaces[s], "target_model": spaces[t], "config": search, "anchors": anchors}
            variants: list[tuple[str, dict[str, Any]]] = [
                ("d_linear", {"method": "linear"}),
                ("d_procrustes", {"method": "procrustes"}),
                ("c_relative_no_target_data", {"method": "relative"}),
                ("c_relative", {"method": "relative", "score_fn": val_fn}),
            ]
            if cfg.label_weight > 0:  # PTfer issue 3: weight the label words among the anchors
                weighted = anchors.weighted({w.strip(): cfg.label_weight for w in words})
                variants.append(("c_relative_labels", {"method": "relative", "score_fn": val_fn, "anchors": weighted}))
            if cfg.multi_source and (not cfg.only or "c_relative_multi" in cfg.only):
                extra = [Source(tuning(s, seed), spaces[s]) for seed in cfg.seeds[1:]]
                checkpoint(results)
                variants.append(("c_relative_multi", {"method": "relative", "score_fn": val_fn, "more_sources": extra}))
            for key, kw in variants:
                if key in old_scores:
                    row[key], records[key] = dict(old_scores[key]), old_records.get(key, {})
                    continue
                if cfg.only and key not in cfg.only:
                    continue
                t0 = time.time()
                res = run_transfer(src_prompt, **{**common, **kw})
                keep = ("search", "linear_map", "anchors", "uses_target_dev_data", "sources")
                records[key] = {k: v for k, v in res.provenance.items() if k in keep}
                score(key, res.prompt, time.time() - t0)
            if cfg.fuse and "f_fuse" not in old_scores and (not cfg.only or "f_fuse" in cfg.only):
                # Beyond the relative space: the FUSE map (tpv.fuse, arXiv 2408.04816) fitted on WordNet lemmas,
                # one G_1 per virtual token; no target data
                from tpv import fuse

                t0 = time.time()
                fmap = fuse.fit(
                    fuse.EmbeddingSpace.from_model(lms[s].model, lms[s].tok, name=s),
                    fuse.EmbeddingSpace.from_model(lm_t.model, lm_t.tok, name=t),
                )
                records["f_fuse"] = {"map": fmap.describe(), "uses_target_dev_data": False}
                score("f_fuse", fuse.apply(fmap, src_prompt), time.time() - t0)
            elif "f_fuse" in old_scores:
                row["f_fuse"], records["f_fuse"] = dict(old_scores["f_fuse"]), old_records.get("f_fuse", {})
            if "a_random" in row and "e_tuned" in row:
                a, e = row["a_random"]["test"], row["e_tuned"]["test"]
                for key in row:
                    row[key]["gap_recovered"] = gap(row[key]["test"], a, e)
            checkpoint(results)
    results["seconds"] = round(time.time() - t_start, 1)
    return results


_RUN_ONLY = ("fuse", "threads", "only")  # config fields that do not change a measurement


def _merge_results(into: dict[str, Any] | None, more: dict[str, Any]) -> dict[str, Any]:
    """The measurements of two results files of one config, per task and direction (``more`` fills the gaps)."""
    out = json.loads(json.dumps(into or {"tasks": {}}))
    for task, tdata in more.get("tasks", {}).items():
        for direction, d in tdata.get("directions", {}).items():
            dst = out["tasks"].setdefault(task, {}).setdefault("directions", {}).setdefault(direction, {})
            for part in ("scores", "records"):
                for key, value in d.get(part, {}).items():
                    dst.setdefault(part, {}).setdefault(key, value)
    return out


def environment() -> dict[str, Any]:
    import transformers

    import tpv

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tpv": tpv.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
    }


def table(results: dict[str, Any]) -> str:
    cols = [
        ("a_random", "(a) random"),
        ("b_manual", "(b) manual"),
        ("c_relative", "(c) relative"),
        ("c_relative_labels", "(c) relative, label anchors"),
        ("c_relative_multi", "(c) relative, 2 sources"),
        ("c_relative_no_target_data", "(c) relative, no target data"),
        ("d_linear", "(d) linear"),
        ("d_procrustes", "(d) Procrustes"),
        ("f_fuse", "(f) FUSE map"),
        ("e_tuned", "(e) tuned on target"),
    ]
    lines = ["| task | source -> target | " + " | ".join(c[1] for c in cols) + " |"]
    lines.append("|---|---|" + "---|" * len(cols))
    for task, tdata in results["tasks"].items():
        for direction, d in tdata["directions"].items():
            cells = []
            for key, _ in cols:
                r = d["scores"].get(key)
                if r is None:
                    cells.append("-")
                    continue
                g = r.get("gap_recovered")
                gtxt = "" if g is None or key in ("a_random", "e_tuned") else f" ({100 * g:.0f} %)"
                cells.append(f"{100 * r['test']:.1f}{gtxt}")
            lines.append(f"| {task} | {direction.replace('->', ' -> ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    global BF16
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 task, tiny budgets")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--directions", nargs="+", default=None, help="SOURCE:TARGET pairs")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--val", type=int, default=None)
    parser.add_argument("--test", type=int, default=None)
    parser.add_argument("--search-steps", type=int, default=None)
    parser.add_argument("--search-eval-every", type=int, default=None)
    parser.add_argument("--label-weight", type=float, default=None)
    parser.add_argument("--norm", default=None)
    parser.add_argument("--init", default=None, help="text (the instruction, default) or first-n-vocab")
    parser.add_argument("--no-multi-source", action="store_true")
    parser.add_argument("--no-fuse", action="store_true", help="skip the FUSE-map column (needs WordNet)")
    parser.add_argument(
        "--resume", action="store_true", help="keep the finished measurements of OUT/NAME.json (same config)"
    )
    parser.add_argument("--merge", type=Path, action="append", default=[], help="with --resume: more results files")
    parser.add_argument("--only", nargs="+", default=None, help="measure only these columns (e.g. f_fuse)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--recipe", action="append", default=[], help="MODEL:LR:STEPS[:EVAL_EVERY[:LOSS]]")
    default_work = Path(os.environ.get("TPV_CACHE", "~/.cache/tpv")).expanduser() / "bench-transfer"
    parser.add_argument("--work", type=Path, default=default_work)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="transfer")
    args = parser.parse_args(argv)
    cfg = Config()
    if args.quick:
        cfg = Config(tasks=("rotten_tomatoes",), directions=(("smollm2-135m", "gemma3-270m"),), val=8, test=8)
        cfg.search_steps, cfg.search_eval_every = 20, 10
        cfg.recipes = {k: {**v, "steps": 2, "eval_every": 1} for k, v in cfg.recipes.items()}
    if args.tasks:
        cfg.tasks = tuple(args.tasks)
    if args.directions:
        cfg.directions = tuple(tuple(d.split(":")) for d in args.directions)  # type: ignore[misc]
    for attr in ("tokens", "val", "test", "search_steps", "search_eval_every", "label_weight", "norm", "init"):
        if getattr(args, attr) is not None:
            setattr(cfg, attr, getattr(args, attr))
    if args.no_multi_source:
        cfg.multi_source = False
    if args.no_fuse:
        cfg.fuse = False
    if args.only:
        cfg.only = tuple(args.only)
    if args.threads is not None:
        cfg.threads = args.threads
    cfg.bf16 = BF16 = bool(args.bf16)
    torch.set_num_threads(cfg.threads)
    for spec in args.recipe:
        model, lr, steps, *rest = spec.split(":")
        cfg.recipes[model] = {**cfg.recipes[model], "lr": float(lr), "steps": int(steps)}
        if rest:
            cfg.recipes[model]["eval_every"] = int(rest[0])
        if len(rest) > 1:
            cfg.recipes[model]["loss"] = rest[1]
    command = "python benchmarks/bench_transfer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)

    def write(results: dict[str, Any], done: bool = False) -> None:
        payload = {
            "command": command,
            "complete": done,
            "config": asdict(cfg),
            "environment": {**environment(), "load_average_at_start": load_before},
            "results": results,
        }
        atomic_write_text(args.out / f"{args.name}.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
        md = [f"# Zero-shot prompt transfer ({args.name})", "", f"Command: `{command}`", "", table(results), ""]
        atomic_write_text(args.out / f"{args.name}.table.md", "\n".join(md))

    previous: dict[str, Any] | None = None
    if args.resume:
        prior: list[str] = []
        files = [args.out / f"{args.name}.json", *args.merge]
        mine = {k: v for k, v in asdict(cfg).items() if k not in _RUN_ONLY}
        for path in files:
            if not path.is_file():
                continue
            earlier = json.loads(path.read_text())
            theirs = {k: v for k, v in earlier.get("config", {}).items() if k not in _RUN_ONLY}
            if json.loads(json.dumps(mine)) != theirs:
                sys.exit(f"--resume: {path} was made with another config; rerun without --resume")
            previous = _merge_results(previous, earlier["results"])
            prior.append(earlier["command"])
        command = "; then ".join([*prior, command])
    results = run(cfg, args.work, write, previous)
    write(results, done=True)
    print(table(results))


if __name__ == "__main__":
    main()
