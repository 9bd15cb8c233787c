"""Tests of the benchmark harness: configs, cells and resume, executors, statistics, reports, experiments, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv.bench import config as bench_config
from tpv.bench.api import run
from tpv.bench.config import Config, deep_merge, load_config, parse_override
from tpv.bench.report import measured_on
from tpv.bench.runner import CELL_KINDS, CellKind, make_cell, plan_waves
from tpv.bench.stats import bonferroni, compare, summarize, welch_ttest
from tpv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks" / "configs"
EXPERIMENT_CONFIGS = ("sources", "cross_origin", "fewshot", "similarity", "perf", "calibration", "tasks", "transfer")
OVERLAYS = ("gpu", "mini", "tiny", "gemma", "cuda", "gpu-smoke", "many", "headroom", "power", "ab")

FAKE_BENCH = """
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--quick", action="store_true")
a = p.parse_args()
json.dump({"rows": [{"name": "train", "steps_per_s": 2.5, "baseline_steps_per_s": 1.0}], "quick": a.quick},
          open(a.out + ".json", "w"))
"""


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _shipped_configs(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv(bench_config.CONFIGS_ENV, str(CONFIGS))
    monkeypatch.setenv("TPV_BENCH_TRUSTED", str(tmp_path_factory.getbasetemp()))  # the tests' fake scripts


def test_configs_cannot_name_scripts_outside_the_benchmarks_folder(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A perf config naming a scripts folder or a results file outside benchmarks/ is refused before anything runs."""
    monkeypatch.delenv("TPV_BENCH_TRUSTED")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench_x.py").write_text("import pathlib; pathlib.Path('MARKER').write_text('ran')\n")
    config, layers = tiny_config("perf", tiny_model_dir, f"perf.scripts_dir={scripts}", "perf.benchmarks=[x]")
    with pytest.raises(ConfigError, match="outside the project's benchmarks/ folder"):
        run(config, tmp_path / "out", layers=layers)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    config, layers = tiny_config("perf", tiny_model_dir, "perf.gather=true", f"perf.results_files={{engine: {secret}}}",
                                 "perf.benchmarks=[engine]")  # fmt: skip
    with pytest.raises(ConfigError, match="outside the project's benchmarks/ folder"):
        run(config, tmp_path / "out", layers=layers)
    assert not (tmp_path / "MARKER").exists() and not Path("MARKER").exists()


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama and its tokenizer saved as a plain Hugging Face folder (loaded by path)."""
    from tiny_models import save_tiny

    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def scripts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a fake bench_engine.py that writes STEM.json."""
    folder = tmp_path_factory.mktemp("scripts")
    (folder / "bench_engine.py").write_text(FAKE_BENCH)
    return folder


def tiny_config(experiment: str, model_dir: Path, *extra: str) -> tuple[Config, list[Any]]:
    """``defaults <- EXPERIMENT <- tiny`` on the tiny model."""
    return load_config(experiment, "tiny", overrides=[f"model.name={model_dir}", *extra])


# -- configs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENT_CONFIGS)
def test_every_shipped_config_validates(name: str) -> None:
    """Every shipped experiment config, alone and with each overlay, merges onto defaults and validates."""
    for overlays in ((), *((o,) for o in OVERLAYS)):
        config, layers = load_config(name, *overlays)
        assert config.experiment == name
        assert [layer.label for layer in layers][:2] == ["defaults.yaml", f"{name}.yaml"]
        assert config.name == "-".join((name, *overlays))


def test_every_yaml_file_is_covered() -> None:
    """The shipped folder holds exactly defaults, the experiments and the overlays (so the test above sees all)."""
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert names == {"defaults", *EXPERIMENT_CONFIGS, *OVERLAYS}


def test_config_errors_name_key_value_file_and_rule(tmp_path: Path) -> None:
    """A broken rule is reported with its key, its value, the file that set it and the rule."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "experiment: fewshot\nfewshot:\n  shots: [0, -5]\n  seeds: [0, 9]\nmodel:\n  device: gpu\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert "fewshot.shots = [0, -5] (set in bad.yaml): shots must be >= 0" in msg
    assert "model.device = 'gpu' (set in bad.yaml): must be cpu, cuda, cuda:N, mps or auto" in msg
    assert "bogus = 1 (set in bad.yaml): unknown key" in msg
    with pytest.raises(ConfigError, match=r"fewshot.seeds = \[0, 9\].*must be an origin seed"):
        load_config("fewshot", overrides=["fewshot.seeds=[0,9]"])
    with pytest.raises(ConfigError, match="experiment is missing"):
        load_config("gpu")
    with pytest.raises(ConfigError, match=r"not found.*sources"):
        load_config("no_such_config")


def test_train_options_are_checked_against_trainconfig() -> None:
    """Unknown training options are refused with the known ones listed."""
    with pytest.raises(ConfigError, match=r"train.no_such_option = 3 \(set in --set\): unknown TrainConfig option"):
        load_config("sources", overrides=["train.no_such_option=3"])


def test_deep_merge_and_overrides() -> None:
    """Mappings merge recursively, lists and scalars are replaced, --set values are YAML."""
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert parse_override("fewshot.seeds=[0, 1]") == {"fewshot": {"seeds": [0, 1]}}
    config, _ = load_config("fewshot", overrides=["fewshot.seeds=[1]", "data.max_test=7"])
    assert config.fewshot.seeds == [1] and config.data.max_test == 7 and config.data.max_train == 2000
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_override("novalue")


# -- cells and waves --------------------------------------------------------------------------------------------


def test_cell_ids_are_stable_and_follow_params_and_deps() -> None:
    """Same kind, params and deps give the same id; any change gives another."""
    import tpv.bench.experiments  # noqa: F401

    a = make_cell("cross", "t/o0-o1", {"x": 1, "y": [1, 2]}, stage="s", deps={"vector": "v1"})
    b = make_cell("cross", "t/o0-o1", {"y": [1, 2], "x": 1}, stage="other", deps={"vector": "v1"}, estimate_s=9)
    assert a.id == b.id and a.id.startswith("cross-t-o0-o1-")
    assert make_cell("cross", "t/o0-o1", {"x": 2, "y": [1, 2]}, stage="s", deps={"vector": "v1"}).id != a.id
    assert make_cell("cross", "t/o0-o1", {"x": 1, "y": [1, 2]}, stage="s", deps={"vector": "v2"}).id != a.id
    with pytest.raises(ConfigError, match="unknown cell kind"):
        make_cell("nope", "n", {}, stage="s")


def test_plan_waves_orders_dependencies_and_refuses_cycles() -> None:
    """Cells run after their dependencies; finished ones are left out; cycles and dangling deps are refused."""
    import tpv.bench.experiments  # noqa: F401

    a = make_cell("cross", "a", {}, stage="s")
    b = make_cell("cross", "b", {}, stage="s", deps={"x": a.id})
    c = make_cell("cross", "c", {}, stage="s", deps={"x": a.id, "y": b.id})
    waves = plan_waves([c, b, a], done=set())
    assert [[x.name for x in w] for w in waves] == [["a"], ["b"], ["c"]]
    assert [[x.name for x in w] for w in plan_waves([a, b, c], done={a.id})] == [["b"], ["c"]]
    with pytest.raises(ConfigError, match="not in the plan"):
        plan_waves([b], done=set())
    from dataclasses import replace

    cyc_a = replace(a, deps={"x": b.id})
    with pytest.raises(ConfigError, match="cycle"):
        plan_waves([cyc_a, b], done=set())


# -- statistics -------------------------------------------------------------------------------------------------

samples = st.lists(st.floats(0.0, 1.0, allow_nan=False).map(lambda x: round(x, 3)), min_size=2, max_size=8)


@pytest.mark.filterwarnings("ignore:Precision loss")
@settings(max_examples=60, deadline=None)
@given(samples, samples)
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    """t, df and p equal scipy.stats.ttest_ind(equal_var=False) whenever a sample has variance."""
    from scipy import stats

    r = welch_ttest(a, b)
    if summarize(a).std == 0 and summarize(b).std == 0:
        assert r.p == (1.0 if math.isclose(summarize(a).mean, summarize(b).mean, abs_tol=0) else 0.0)
        return
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert r.t == pytest.approx(float(ref.statistic), rel=1e-9, abs=1e-12)
    assert r.p == pytest.approx(float(ref.pvalue), rel=1e-7, abs=1e-12)
    assert r.df == pytest.approx(float(ref.df), rel=1e-9)


def test_summary_and_bonferroni() -> None:
    """Mean and sample std match numpy (ddof=1); Bonferroni multiplies by the number of tested p-values."""
    import numpy as np

    xs = [0.7, 0.9, 0.85, 0.6]
    s = summarize(xs)
    assert s.mean == pytest.approx(np.mean(xs)) and s.std == pytest.approx(np.std(xs, ddof=1))
    assert summarize([0.5]).std == 0.0 and summarize([]).n == 0
    assert s.format() == f"{100 * np.mean(xs):.1f} ± {100 * np.std(xs, ddof=1):.1f}"
    adj, sig = bonferroni([0.01, 0.02, float("nan"), 0.5])
    assert adj[:2] == pytest.approx([0.03, 0.06]) and math.isnan(adj[2]) and adj[3] == 1.0
    assert sig == [True, False, False, False]
    family = compare([([0.9, 0.91, 0.92], [0.5, 0.52, 0.51]), ([0.5, 0.6], [0.5, 0.6])])
    assert family[0].p_adjusted == pytest.approx(min(1.0, 2 * family[0].p)) and family[0].significant
    assert family[1].p == pytest.approx(1.0) and not family[1].significant
    assert math.isnan(welch_ttest([0.5], [0.4, 0.6]).p)
    from scipy import stats

    lo, hi = stats.t.interval(0.95, len(xs) - 1, loc=np.mean(xs), scale=stats.sem(xs))
    assert s.ci95() == pytest.approx((hi - lo) / 2) and summarize([0.5]).ci95() == 0.0


# -- experiments end to end on a tiny model ---------------------------------------------------------------------


def _read_report(out: Path, name: str) -> dict[str, Any]:
    report = out / name
    assert (report / "config.yaml").is_file() and (report / "results.md").is_file()
    data = json.loads((report / "results.json").read_text())
    assert data["complete"] and data["environment"]["packages"]["torch"]
    assert data["config"]["model"]["name"].endswith("tiny-llama")
    return data


def test_sources_runs_and_resumes(tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]) -> None:
    """sources runs end to end; a rerun executes nothing; a deleted cell is the only one run again."""
    config, layers = tiny_config("sources", tiny_model_dir)
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok and counting == {"source": 4} and len(summary.executed) == 4
    data = _read_report(tmp_path, "sources-tiny")
    assert {"rotten_tomatoes", "vader_words"} <= set(data["summary"]["sources"])
    assert len(data["cells"]) == 4 and all("test" in c["metrics"] for c in data["cells"].values())
    assert "| rotten_tomatoes |" in (tmp_path / "sources-tiny" / "results.md").read_text()

    here = measured_on("cpu")
    assert here.startswith("cpu: ") and all(c["device"] == here for c in data["cells"].values())
    assert "its cells ran on" not in (tmp_path / "sources-tiny" / "results.md").read_text()

    again = run(config, tmp_path, layers=layers)
    assert counting == {"source": 4} and again.executed == [] and len(again.finished) == 4
    # a report written over cells measured elsewhere (say on a lent GPU) names where they ran
    moved = tmp_path / "cells" / summary.executed[1] / "result.json"
    record = json.loads(moved.read_text())
    moved.write_text(json.dumps({**record, "device": "cuda: NVIDIA H100 80GB HBM3"}))
    run(config, tmp_path, layers=layers)
    md = (tmp_path / "sources-tiny" / "results.md").read_text()
    assert "its cells ran on: cpu: " in md and "cuda: NVIDIA H100 80GB HBM3 (1 cells)" in md
    shutil.rmtree(tmp_path / "cells" / summary.executed[0])
    third = run(config, tmp_path, layers=layers)
    assert counting == {"source": 5} and third.executed == [summary.executed[0]]


def test_cells_finished_by_another_process_are_not_run_again(
    tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]
) -> None:
    """Two workers sharing an --out: a cell another process finished after the plan is skipped, not redone."""
    config, layers = tiny_config("sources", tiny_model_dir)
    other = tmp_path / "other"
    run(config, other, layers=layers)
    assert counting == {"source": 4}
    out = tmp_path / "shared"
    inner = CELL_KINDS["source"]

    def first_then_the_rest_elsewhere(params: Any, inputs: Any, env: Any) -> Any:
        # while this process runs its first cell, "another worker" finishes every other cell of the plan
        for done in (other / "cells").iterdir():
            record = json.loads((done / "result.json").read_text())
            if record["params"] != json.loads(json.dumps(dict(params))):
                shutil.copytree(done, out / "cells" / done.name, dirs_exist_ok=True)
        return inner.fn(params, inputs, env)

    CELL_KINDS["source"] = CellKind("source", first_then_the_rest_elsewhere, inner.version)
    summary = run(config, out, layers=layers)
    assert summary.ok and counting == {"source": 5}
    assert len(summary.executed) == 1 and len(summary.finished) == 3
    assert len(list((out / "cells").iterdir())) == 4


def test_cross_origin_reuses_sources(tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]) -> None:
    """cross_origin shares the source tunings of sources (same --out) and reports own vs other origin."""
    first, first_layers = tiny_config("sources", tiny_model_dir)
    run(first, tmp_path, layers=first_layers)
    config, layers = tiny_config("cross_origin", tiny_model_dir)
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok and counting == {"source": 4, "cross": 4}
    data = _read_report(tmp_path, "cross_origin-tiny")
    row = data["summary"]["cross_origin"]["rotten_tomatoes"]
    assert row["own"]["n"] == 2 and row["other"]["n"] == 2


def test_cross_origin_retained_ci_and_test_are_over_source_vectors(tiny_model_dir: Path, tmp_path: Path) -> None:
    """'retained' has a 95 % CI over the source vectors, and own vs other is one Welch test per task (Bonferroni)."""
    from scipy import stats as st

    from tpv.bench.experiments.cross_origin import EXPERIMENT

    config, _layers = tiny_config("cross_origin", tiny_model_dir)
    cells = EXPERIMENT.plan(config)
    rt_, va_ = "rotten_tomatoes", "vader_words"
    own = {(rt_, 0): 0.9, (rt_, 1): 0.8, (va_, 0): 0.7, (va_, 1): 0.6}
    other = {(rt_, 0): 0.45, (rt_, 1): 0.6, (va_, 0): 0.6, (va_, 1): 0.7}
    results: dict[str, dict[str, Any]] = {}
    for c in cells:
        task = c.params["task"]
        if c.kind == "source":
            o = c.params["origin"]
            results[c.id] = {"metrics": {"task": task, "metric": "accuracy", "origin": o, "test": own[(task, o)]}}
        else:
            a, b = c.params["from_origin"], c.params["to_origin"]
            results[c.id] = {
                "metrics": {
                    "task": task,
                    "metric": "accuracy",
                    "from_origin": a,
                    "to_origin": b,
                    "own": own[(task, a)],
                    "other": other[(task, a)],
                    "other_origin_alone": 0.5,
                }
            }
    report = EXPERIMENT.summarize(config, cells, results, tmp_path)
    rt = report.summary["cross_origin"]["rotten_tomatoes"]
    assert rt["retained"] == pytest.approx(0.525 / 0.85)
    assert rt["gain_kept"] == pytest.approx((0.525 - 0.5) / (0.85 - 0.5))  # every origin alone scores 0.5
    ratios = [0.45 / 0.9, 0.6 / 0.8]
    assert rt["retained_per_vector"]["mean"] == pytest.approx(sum(ratios) / 2)
    half = st.t.ppf(0.975, 1) * st.sem(ratios)
    assert rt["retained_per_vector"]["ci95"] == pytest.approx(half)
    raw = st.ttest_ind([0.9, 0.8], [0.45, 0.6], equal_var=False).pvalue
    assert rt["own_vs_other"]["p"] == pytest.approx(raw)
    assert rt["own_vs_other"]["p_adjusted"] == pytest.approx(min(1.0, 2 * raw))  # two tasks in the family
    vader = report.summary["cross_origin"]["vader_words"]["own_vs_other"]
    assert vader["mean_a"] == pytest.approx(0.65) and vader["mean_b"] == pytest.approx(0.65)
    assert not vader["significant"]


def test_fewshot_runs_end_to_end(tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]) -> None:
    """fewshot selects inits, trains every (init, shots, seed), tests TPV vs the best SPoT and plots curves."""
    config, layers = tiny_config("fewshot", tiny_model_dir)
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    # 2 sources x 2 seeds, 2 mixtures, 2 selections, 5 inits x 2 shots x 2 seeds
    assert counting == {"source": 4, "mixture": 2, "select": 2, "fewshot": 20}
    data = _read_report(tmp_path, "fewshot-tiny")
    inits = data["summary"]["targets"]["imdb_reviews"]["inits"]
    assert set(inits) == {"random", "spot_best", "spot_multi", "tpv", "tpv_best"}
    assert set(inits["tpv"]["2"]["per_seed"]) == {"0", "1"}
    tests = data["summary"]["tests"]
    assert len(tests) == 4 and all(t["best_spot"] in ("spot_best", "spot_multi") for t in tests)
    assert (tmp_path / "fewshot-tiny" / "fewshot_imdb_reviews.png").stat().st_size > 1000
    # the targets: TPV - random is recomputed here from the per-shot means in the summary
    checks = data["summary"]["checks"]
    per_shot = {i: [inits[i][k]["mean"] for k in inits[i]] for i in ("tpv", "random")}
    gain = 100 * (sum(per_shot["tpv"]) / len(per_shot["tpv"]) - sum(per_shot["random"]) / len(per_shot["random"]))
    assert checks["tpv_minus_random_points"]["imdb_reviews"] == pytest.approx(gain)
    assert checks["tpv_beats_random_by_10_points"] == (gain >= 10)
    assert set(checks["tpv_best_matches_or_beats_best_spot"]) == {"imdb_reviews"}
    md = (tmp_path / "fewshot-tiny" / "results.md").read_text()
    assert "The issue's targets, measured" in md and f"{gain:+.1f} points" in md


def test_fewshot_chooses_on_the_k_shots_only(tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]) -> None:
    """selection 'shots': one choice per (seed, k) on that cell's k shots; k = 0 by the fixed rules; budget rule."""
    from tpv.bench.experiments import get_experiment
    from tpv.bench.experiments.fewshot import fewshot_steps

    extra = ("fewshot.selection=shots", "fewshot.epochs=4", "fewshot.min_steps=1", "fewshot.max_steps=3",
             "fewshot.merge_methods=[ties,norm_sum]", "fewshot.zero_shot_combination=mean",
             "fewshot.baselines=[best_spot,random]")  # fmt: skip
    config, layers = tiny_config("fewshot", tiny_model_dir, *extra)
    cells = {f"{c.kind}/{c.name}": c for c in get_experiment("fewshot").plan(config)}
    assert {n for n in cells if n.startswith("select")} == {f"select/imdb_reviews/k{k}/o{s}" for k in (0, 2)
                                                            for s in (0, 1)}  # fmt: skip
    # the budget rule: ceil(4 epochs x 2 shots x 2 classes / batch 4) = 4 steps, clipped to max_steps 3
    assert fewshot_steps(config.fewshot, 2, 2, 4) == 3 and fewshot_steps(config.fewshot, 1, 2, 8) == 1
    assert cells["fewshot/imdb_reviews/tpv/k2/s0"].params["train"]["steps"] == 3
    assert cells["fewshot/imdb_reviews/tpv_best/k2/s1"].deps == {"init": cells["select/imdb_reviews/k2/o1"].id}
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    assert counting == {"source": 4, "mixture": 2, "select": 4, "fewshot": 20}
    results = {f"select/{c.name}": json.loads((tmp_path / "cells" / c.id / "result.json").read_text())["metrics"]
               for c in summary.cells if c.kind == "select"}  # fmt: skip
    zero, two = results["select/imdb_reviews/k0/o0"], results["select/imdb_reviews/k2/o0"]
    assert zero["selection_examples"] == 0 and zero["validation_accuracy"] == {}
    assert zero["spot_best"] == "rotten_tomatoes" and zero["tpv_best"] == "merge_mean"  # the first source; the rule
    assert two["shots"] == 2 and two["selection_examples"] == 4  # 2 shots x 2 classes, nothing else
    assert "merge_norm_sum" in two["validation_accuracy"]
    md = (tmp_path / "fewshot-tiny" / "results.md").read_text()
    assert "Init selection on the k training shots" in md
    data = json.loads((tmp_path / "fewshot-tiny" / "results.json").read_text())
    assert data["config"]["fewshot"]["selection"] == "shots" and data["config"]["fewshot"]["epochs"] == 4
    # tpv and tpv_best against the best SPoT and against random at 2 shot counts: one family of 8 tests
    tests = data["summary"]["tests"]
    assert len(tests) == 8 and sum(t["baseline"] == "random" for t in tests) == 4
    assert all(t["p_adjusted"] == pytest.approx(min(1.0, 8 * t["p"])) for t in tests if math.isfinite(t["p"]))
    checks = data["summary"]["checks"]
    assert checks["low_shots"] == [0, 2] and set(checks["tpv_best_above_random"]) == {"imdb_reviews"}
    ci = data["summary"]["targets"]["imdb_reviews"]["inits"]["tpv"]["2"]
    assert ci["ci95"] == pytest.approx(summarize(list(ci["per_seed"].values())).ci95())


def test_fewshot_dtvg_candidate(tiny_model_dir: Path, tmp_path: Path) -> None:
    """fewshot.dtvg_warmup_steps: each k > 0 choice groups the sources around a k-shot warm-up vector (DTVG-style)
    and tries the group's sum as a tpv_best candidate; k = 0 and the cells planned without it keep their ids."""
    from tpv.bench.experiments import get_experiment
    from tpv.vector import TaskPromptVector

    base = ("fewshot.selection=shots", "fewshot.epochs=4", "fewshot.min_steps=1", "fewshot.max_steps=2",
            "fewshot.seeds=[0]", "fewshot.inits=[random,tpv_best]", "fewshot.compare=[tpv_best]",
            "fewshot.merge_methods=[]")  # fmt: skip
    plain, _ = tiny_config("fewshot", tiny_model_dir, *base)
    config, layers = tiny_config("fewshot", tiny_model_dir, *base, "fewshot.dtvg_warmup_steps=2")
    before = {f"{c.kind}/{c.name}": c.id for c in get_experiment("fewshot").plan(plain)}
    after = {f"{c.kind}/{c.name}": c for c in get_experiment("fewshot").plan(config)}
    assert after["select/imdb_reviews/k0/o0"].id == before["select/imdb_reviews/k0/o0"]  # nothing to warm up at 0
    assert after["select/imdb_reviews/k2/o0"].id != before["select/imdb_reviews/k2/o0"]
    assert after["select/imdb_reviews/k2/o0"].params["fewshot"]["dtvg_warmup"]["steps"] == 2
    assert "dtvg_warmup_steps" not in json.dumps(plain.to_dict())  # older configs are written as they were
    with pytest.raises(ConfigError, match=r"dtvg_warmup_steps \(2\) warms .* needs selection: shots"):
        tiny_config("fewshot", tiny_model_dir, "fewshot.dtvg_warmup_steps=2")
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    cell = {f"{c.kind}/{c.name}": c for c in summary.cells}["select/imdb_reviews/k2/o0"]
    m = json.loads((tmp_path / "cells" / cell.id / "result.json").read_text())["metrics"]
    sources = set(cell.params["fewshot"]["sources"])
    assert m["dtvg"]["warmup_steps"] == 2 and set(m["dtvg"]["similarity"]) == sources
    group = m["dtvg"]["group"]
    assert set(group) <= sources
    assert all(m["dtvg"]["similarity"][g] > 0 for g in group)  # the threshold: only sources like the warm-up vector
    assert ("dtvg" in m["validation_accuracy"]) == bool(group)
    if m["tpv_best"] == "dtvg":  # the kept init is the group's sum
        kept = TaskPromptVector.load(tmp_path / "cells" / cell.id / "init-tpv_best.safetensors")
        assert set(kept.terms) == set(group)
    md = (tmp_path / "fewshot-tiny" / "results.md").read_text()
    assert "DTVG group (accuracy)" in md


def test_similarity_writes_heatmaps(tiny_model_dir: Path, tmp_path: Path) -> None:
    """similarity writes vector and prompt heatmaps and the mean cosines."""
    config, layers = tiny_config("similarity", tiny_model_dir)
    assert run(config, tmp_path, layers=layers).ok
    data = _read_report(tmp_path, "similarity-tiny")
    sim = data["summary"]["similarity"]
    assert len(sim["labels"]) == 4 and len(sim["vectors"]) == 4
    for name in ("similarity_vectors.png", "similarity_prompts.png"):
        assert (tmp_path / "similarity-tiny" / name).read_bytes()[:4] == b"\x89PNG"


def test_perf_gathers_benchmark_json(tiny_model_dir: Path, tmp_path: Path, scripts_dir: Path) -> None:
    """perf runs each bench_<name>.py --out STEM and flattens the JSON it writes into one table."""
    config, layers = tiny_config(
        "perf", tiny_model_dir, f"perf.scripts_dir={scripts_dir}", "perf.args={engine: [--quick]}"
    )
    assert run(config, tmp_path, layers=layers).ok
    data = _read_report(tmp_path, "perf-tiny")
    assert data["summary"]["engine"]["quick"] is True
    rows = data["tables"][0]["rows"]
    assert ["engine", "", "rows[train].steps_per_s", 2.5] in rows
    stored = next((tmp_path / "cells").glob("perf-engine-*")) / "engine-engine.json"
    gathered, layers = tiny_config(
        "perf", tiny_model_dir, "perf.gather=true", f"perf.results_files={{engine: {stored}}}"
    )
    assert run(gathered, tmp_path, layers=layers).ok
    assert json.loads((tmp_path / "perf-tiny" / "results.json").read_text())["summary"]["engine"]["quick"] is True


def test_failing_cell_is_recorded_and_blocks_dependents(
    tiny_model_dir: Path, tmp_path: Path, counting: dict[str, int]
) -> None:
    """A failing cell does not stop the run: it is logged, its dependents are blocked, the rest finish."""

    def boom(params: Any, inputs: Any, env: Any) -> Any:
        raise RuntimeError("boom")

    CELL_KINDS["source"] = CellKind("source", boom, CELL_KINDS["source"].version)
    config, layers = tiny_config("cross_origin", tiny_model_dir)
    summary = run(config, tmp_path, layers=layers)
    assert len(summary.failed) == 4 and len(summary.blocked) == 4 and not summary.ok
    assert all("RuntimeError: boom" in e for e in summary.failed.values())
    assert len(list((tmp_path / "cross_origin-tiny" / "failures").glob("*.txt"))) == 4
    data = json.loads((tmp_path / "cross_origin-tiny" / "results.json").read_text())
    assert not data["complete"]


# -- executors --------------------------------------------------------------------------------------------------


def test_ray_executor_gathers_results_into_the_same_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Cells run as Ray tasks on a local instance (started and stopped here) land in the same files as in-process."""
    pytest.importorskip("ray", reason="ray is not installed: CI must `pip install ray` to test --executor ray")
    import ray

    from tpv.bench.executors import RayExecutor

    for name in ("engine", "search"):  # cheap cells (perf in gather mode): the executor is what is under test
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": {"speedup": len(name)}}))
    files = f"perf.results_files={{engine: {tmp_path / 'engine.json'}, search: {tmp_path / 'search.json'}}}"
    config, layers = tiny_config("perf", tiny_model_dir, "perf.gather=true", "perf.benchmarks=[engine, search]", files)
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with RayExecutor(num_cpus=1, init_kwargs={"runtime_env": {"env_vars": env}}) as ex:
        summary = run(config, tmp_path / "ray", layers=layers, executor=ex)
    assert not ray.is_initialized()
    local = run(config, tmp_path / "local", layers=layers)
    assert summary.ok and sorted(summary.executed) == sorted(local.executed) and len(summary.executed) == 2
    for cid in summary.executed:
        on_ray = json.loads((tmp_path / "ray" / "cells" / cid / "result.json").read_text())
        here = json.loads((tmp_path / "local" / "cells" / cid / "result.json").read_text())
        assert on_ray["metrics"] == here["metrics"] and on_ray["artifacts"] == here["artifacts"]
    assert run(config, tmp_path / "ray", layers=layers).executed == []


# -- command line -----------------------------------------------------------------------------------------------


def test_cli_list_dry_run_and_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`tpv bench list` shows the configs; `run --dry-run` lists cells and an estimate; errors exit 2."""
    from typer.testing import CliRunner

    from tpv.cli.bench import app

    runner = CliRunner()
    res = runner.invoke(app, ["list"])
    assert res.exit_code == 0, res.output
    assert "fewshot" in res.output and "(overlay)" in res.output
    res = runner.invoke(app, ["run", "fewshot", "tiny", "--set", f"model.name={tiny_model_dir}", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "28 cell(s) to run" in res.output and "estimated" in res.output
    res = runner.invoke(app, ["run", "sources", "--set", "fewshot.shots=[-1]", "--out", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "fewshot.shots" in str(res.exception)
    res = runner.invoke(app, ["run", "--help"])
    assert "tpv bench run fewshot gpu --executor ray" in res.output.replace("\n", " ") or "Examples" in res.output


def test_cli_run_writes_report(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`tpv bench run` runs a tiny config, prints where the report is, and a rerun skips everything."""
    from typer.testing import CliRunner

    from tpv.cli.bench import app

    args = ["run", "sources", "tiny", "--set", f"model.name={tiny_model_dir}", "--set", "tasks.sources=[vader_words]"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "2 cell(s) run" in res.output and (tmp_path / "sources-tiny" / "results.md").is_file()
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path), "--no-progress"])
    assert "0 cell(s) run, 2 skipped" in res.output

    # `tpv bench report` writes the report of what is finished and runs nothing
    cells = sorted((tmp_path / "cells").iterdir())
    shutil.rmtree(cells[0])
    res = CliRunner().invoke(app, ["report", *args[1:], "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "incomplete: 1 of 2 cells not finished" in res.output
    assert len(list((tmp_path / "cells").iterdir())) == 1  # nothing was run
    data = json.loads((tmp_path / "sources-tiny" / "results.json").read_text())
    assert not data["complete"] and data["missing_cells"] == [cells[0].name]
    assert "**Incomplete:** 1 cell(s)" in (tmp_path / "sources-tiny" / "results.md").read_text()
    res = CliRunner().invoke(app, ["report", *args[1:], "--out", str(tmp_path / "elsewhere")])
    assert isinstance(res.exception, ConfigError) and "no finished cell" in str(res.exception)


def test_cli_workers_split_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`--workers 2`: a helper process shares the plan; every cell runs once, no claim is left, one report."""
    from typer.testing import CliRunner

    from tpv.cli.bench import app

    args = ["run", "sources", "tiny", "--set", f"model.name={tiny_model_dir}", "--out", str(tmp_path), "--no-progress"]
    res = CliRunner().invoke(app, [*args, "--workers", "2"])
    assert res.exit_code == 0, res.output
    ran_here = int(res.output.split(" cell(s) run,")[0].rsplit(" ", 1)[1])
    by_others = int(res.output.split(" run by other workers,")[0].rsplit(" ", 1)[1])
    assert ran_here + by_others == 4 and "0 failed, 0 blocked" in res.output
    assert len(list((tmp_path / "cells").iterdir())) == 4 and list((tmp_path / ".claims").iterdir()) == []
    log = (tmp_path / "sources-tiny" / "workers" / "worker-1.log").read_text()
    assert "Traceback" not in log
    data = _read_report(tmp_path, "sources-tiny")
    assert data["config"]["runtime"]["threads"] >= 1
    res = CliRunner().invoke(app, [*args, "--workers", "2", "--executor", "ray"])
    assert isinstance(res.exception, ConfigError) and "--workers is for the in-process executor" in str(res.exception)


def test_cli_workers_name_a_helper_that_failed(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper that dies at once leaves the work to the others, and the run says which helper failed and where."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from tpv.cli import bench as cli_bench

    def dying(procs: list[Any], count: int, configs: Any, out: Any, overrides: Any, logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        procs.extend(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]) for _ in range(count))

    monkeypatch.setattr(cli_bench, "_spawn_workers", dying)
    args = ["run", "sources", "tiny", "--set", f"model.name={tiny_model_dir}", "--set", "tasks.sources=[vader_words]"]
    res = CliRunner().invoke(cli_bench.app, [*args, "--out", str(tmp_path), "--no-progress", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "2 cell(s) run, 0 run by other workers" in res.output
    assert "helper worker 1 exited with status 3: see " in res.output and "worker-1.log" in res.output


def test_cli_workers_stop_the_started_helpers_when_a_spawn_fails(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawn failing part-way (e.g. out of processes) stops the helpers already started: none runs on alone."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from tpv.cli import bench as cli_bench

    started: list[Any] = []

    def failing(procs: list[Any], count: int, configs: Any, out: Any, overrides: Any, logs: Path) -> None:
        procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        started.extend(procs)
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(cli_bench, "_spawn_workers", failing)
    args = ["run", "sources", "tiny", "--set", f"model.name={tiny_model_dir}", "--set", "tasks.sources=[vader_words]"]
    res = CliRunner().invoke(cli_bench.app, [*args, "--out", str(tmp_path), "--no-progress", "--workers", "3"])
    assert isinstance(res.exception, OSError)
    assert len(started) == 1 and started[0].poll() is not None  # terminated and reaped, not left running
    assert started[0].returncode != 0


def test_library_never_prints(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness writes nothing to stdout (only the CLI prints)."""
    config, layers = tiny_config("sources", tiny_model_dir, "tasks.sources=[vader_words]")
    run(config, tmp_path, layers=layers)
    assert capsys.readouterr().out == ""


def test_calibration_runs_every_part_with_references(tiny_model_dir: Path, tmp_path: Path) -> None:
    """calibration plans untuned, sweep, default, LoRA and variant cells; the report has a row per setting."""
    extra = ["calibration.tasks=[rotten_tomatoes]", "calibration.lrs=[0.01,0.3]",
             "calibration.variant_tasks=[rotten_tomatoes]", "prompt.origins=[0]", "calibration.sweep_seeds=[0]",
             "calibration.lora.lr=0.01",
             "train.eval_every=7", "train.steps=21", "calibration.step_budgets=[28]",
             "calibration.budget_tasks=[rotten_tomatoes]"]  # fmt: skip
    config, layers = tiny_config("calibration", tiny_model_dir, *extra)
    summary = run(config, tmp_path, layers=layers)
    assert summary.ok, summary.failed
    variants = list(config.calibration.variants)
    assert {"adafactor-auto", "sgd-auto", "init-text", "init-gaussian", "warmup-20"} <= set(variants)
    counts: dict[str, int] = {}
    for c in summary.cells:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    assert counts == {"calib_untuned": 1, "calib_prompt": 4 + len(variants), "calib_lora": 1}
    data = _read_report(tmp_path, "calibration-tiny")
    rows = {(r["setting"], r["task"]): r for r in data["summary"]["calibration"]["rows"]}
    assert set(rows) == {(s, "rotten_tomatoes") for s in ("lr=0.01", "lr=0.3", "default", *variants, "steps=28")}
    assert rows[("lr=0.3", "rotten_tomatoes")]["lr"] == pytest.approx(0.3)
    assert rows[("default", "rotten_tomatoes")]["lr"] != pytest.approx(0.01)
    assert all(math.isfinite(r["norm_ratio"]) and r["steps_to_95"] for r in rows.values())
    cal = data["summary"]["calibration"]
    assert cal["untuned"]["rotten_tomatoes"]["n"] == 1 and cal["lora"]["rotten_tomatoes"]["n"] == 1
    report = tmp_path / "calibration-tiny"
    assert (report / "lr_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (report / "steps.png").read_bytes()[:4] == b"\x89PNG"  # the defaults at 21 and 28 steps
    assert (report / "curve_rotten_tomatoes.png").read_bytes()[:4] == b"\x89PNG"
    assert "LoRA r=8 (test)" in (report / "results.md").read_text()
    # the per-task headline: the defaults' mean over seeds, and the sweep's best rate by mean test score
    (head,) = [t for t in data["tables"] if t["title"] == "Per task: the defaults beside the references"]
    (line,) = head["rows"]
    default = rows[("default", "rotten_tomatoes")]["test"]
    assert line[0] == "rotten_tomatoes" and line[2] == f"{100 * default['mean']:.1f} ({default['n']})"
    best = max(("lr=0.01", "lr=0.3"), key=lambda s: rows[(s, "rotten_tomatoes")]["test"]["mean"])
    assert line[-1].startswith(f"{best}: ")
    assert line[6] == "–" and line[9] == "–"  # one seed each: nothing to test


def test_calibration_headline_tests_the_defaults_over_seeds() -> None:
    """The headline's defaults − LoRA and defaults − lr 0.3: Welch over seeds, Bonferroni over the table's tests."""
    from scipy import stats

    from tpv.bench.config import load_config
    from tpv.bench.experiments import get_experiment
    from tpv.bench.stats import summarize

    config, _ = load_config("calibration", overrides=["calibration.tasks=[rotten_tomatoes,vader_words]"])
    seeds = {("default", "rotten_tomatoes"): [0.85, 0.85, 0.835], ("lr=0.3", "rotten_tomatoes"): [0.54, 0.5, 0.675],
             ("default", "vader_words"): [0.96, 0.97, 0.95]}  # fmt: skip
    rows = [{"setting": s, "task": t, "test": summarize(v).to_dict(), "norm_ratio": 1.0, "of_lora": 1.0,
             "gain_over_untuned": 0.1, "per_seed": v} for (s, t), v in seeds.items()]  # fmt: skip
    lora = {"rotten_tomatoes": [0.87, 0.84, 0.9], "vader_words": [0.95]}
    summary: dict = {"rows": rows}
    refs = {t: summarize(v) for t, v in lora.items()}
    table = get_experiment("calibration")._headline(config, summary, refs, refs, lora)
    rt, vader = table.rows
    raw = stats.ttest_ind(seeds[("default", "rotten_tomatoes")], seeds[("lr=0.3", "rotten_tomatoes")],
                          equal_var=False).pvalue  # fmt: skip
    assert rt[9] == f"{100 * (0.845 - 0.5716666):+.1f} (p {min(1.0, 2 * raw):.2g})"  # 2 tests: LoRA, lr 0.3
    assert rt[6].startswith("-2.5 (p ") and vader[6] == "–" and vader[9] == "–"  # LoRA has 1 seed on VADER
    assert [(t["task"], t["defaults_vs"]) for t in summary["tests"]] == [
        ("rotten_tomatoes", "LoRA"),
        ("rotten_tomatoes", "lr=0.3"),
        ("vader_words", "LoRA"),
    ]


def test_calibration_rows_are_tested_against_the_defaults() -> None:
    """Each setting's row gets '− defaults': Welch over seeds on its task, Bonferroni over the rows tested."""
    from scipy import stats

    from tpv.bench.experiments import get_experiment

    seeds = {("default", "a"): [0.8, 0.82, 0.81], ("lr=0.3", "a"): [0.5, 0.55, 0.6], ("sgd", "a"): [0.79, 0.8, 0.83],
             ("lr=0.3", "b"): [0.5, 0.6], ("warmup", "a"): [0.7]}  # fmt: skip
    records = [{"setting": s, "task": t, "per_seed": v} for (s, t), v in seeds.items()]
    rows: list[list[Any]] = [[s, t] for s, t in seeds]
    get_experiment("calibration")._against_defaults(records, rows)
    raw = stats.ttest_ind(seeds[("lr=0.3", "a")], seeds[("default", "a")], equal_var=False).pvalue
    assert rows[1][-1] == f"-26.0 (p {min(1.0, 2 * raw):.2g}{'*' if 2 * raw < 0.05 else ''})"  # 2 rows tested
    assert records[1]["vs_defaults"]["p_adjusted"] == pytest.approx(min(1.0, 2 * raw))
    assert [r[-1] for r in rows[3:]] == ["–", "–"] and rows[0][-1] == "–"  # no defaults on b; one seed; itself
    assert "vs_defaults" not in records[4]


def test_steps_to_fraction_finds_the_first_step_near_the_end() -> None:
    """steps_to_fraction returns the first step at >= 95 % of the last score."""
    from tpv.bench.calibration import steps_to_fraction

    assert steps_to_fraction([(25, 0.5), (50, 0.8), (75, 0.79), (100, 0.82)]) == 50
    assert steps_to_fraction([(25, 0.9), (50, 0.1)]) == 25
    assert steps_to_fraction([]) is None


def test_layers_import_downward_only() -> None:
    """The cell engine imports no experiment, report or orchestration; the report imports no experiment."""
    import ast

    bench = ROOT / "tpv" / "bench"
    engine = {"cells", "store", "executors", "runner"}
    allowed = {
        **{m: engine for m in engine},
        "report": {*engine, "config"},
        "experiments": {*engine, "config", "report", "stats", "experiments"},
    }
    for path in [*bench.glob("*.py"), *(bench / "experiments").glob("*.py")]:
        layer = "experiments" if path.parent.name == "experiments" else path.stem
        if layer not in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level (the runner's lazy `run`/`report` aliases live inside a function)
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("tpv.bench."):
                    target = name.split(".")[2]
                    assert target in allowed[layer], f"{path.relative_to(ROOT)} imports {name}"


def test_min_test_tops_up_a_small_test_split_from_training() -> None:
    """data.min_test moves training examples (never validation) into a small test split; unset, nothing moves."""
    from tpv.bench.experiments._common import cell_data

    base = {"max_train": None, "max_validation": 100, "max_test": 600, "seed": 0}
    _spec, train, validation, test = cell_data("afinn_words", base)
    assert len(test) < 600  # AFINN's own test split: 338 examples
    _spec, train2, validation2, test2 = cell_data("afinn_words", {**base, "min_test": 600})
    assert len(test2) == 600 and test2[: len(test)] == test and validation2 == validation
    assert len(train2) == len(train) - (600 - len(test))
    assert not {ex.text for ex in train2} & {ex.text for ex in test2}
    assert (
        cell_data("afinn_words", {**base, "max_test": 200, "min_test": 600})[3]
        == cell_data("afinn_words", {**base, "max_test": 200})[3]
    )
