"""Tests of packing in the benchmark harness (``runtime.pack``): compatible cells trained as one ``tpv.train_many``.

The laws: a packed run stores the cells an unpacked run stores (same ids, same files, the same results up to float
rounding), resumes like one, never packs cells of different kinds or models, refuses an invalid ``runtime.pack``
with one clear error, and a pack runs as one unit in this process and on a Ray worker alike.

Tolerance of "the same results": the runs train in fp32 (``train.precision=fp32``); integers, strings and lists of
them are equal, floats agree to a relative 1e-5 (absolute 1e-7 near zero), and each stored vector agrees to 1e-5
of its largest entry. Times (``seconds``, ``steps_per_second``, ``train_seconds``, ``transfer_seconds``) are not
compared. (With bf16,
what ``precision: auto`` picks on a CPU with native bf16, packed and unpacked runs drift apart by up to about 1e-3
relative after 20 steps: each pass rounds its rows in bf16.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import save_tiny

from tpv.bench import config as bench_config
from tpv.bench.api import run
from tpv.bench.cells import CELL_KINDS, CellInput, CellKind, CellOutput, NotPackableError, make_cell
from tpv.bench.config import Config, load_config
from tpv.bench.executors import CellPack, CellTask, InProcessExecutor
from tpv.bench.runner import pack_tasks, run_cells
from tpv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FP32 = "train.precision=fp32"
VOLATILE = frozenset({"seconds", "steps_per_second", "train_seconds", "transfer_seconds"})
REL, ABS = 1e-5, 1e-7
CALIBRATION = (
    "calibration.parts=[sweep,default]",
    "calibration.tasks=[rotten_tomatoes]",
    "calibration.lrs=[0.01,0.1,0.3]",
    "calibration.sweep_seeds=[0]",
    "prompt.origins=[0,1,2]",
    "train.steps=6",
    "train.eval_every=3",
)
"""Six calib_prompt cells of one model (three learning rates, the defaults at three seeds): two packs of three."""


@pytest.fixture(autouse=True)
def _shipped_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bench_config.CONFIGS_ENV, str(ROOT / "benchmarks" / "configs"))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama and its tokenizer saved as a plain Hugging Face folder (loaded by path)."""
    return save_tiny("llama", tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny_gemma_dir(tiny_model_dir: Path) -> Path:
    """A tiny random Gemma-3 and its tokenizer beside the tiny Llama (the transfer experiment's target)."""
    return save_tiny("gemma3", tiny_model_dir.parent / "tiny-gemma3")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(experiment: str, model_dir: Path, *extra: str) -> tuple[Config, list[Any]]:
    """``defaults <- EXPERIMENT <- tiny`` on the tiny model, in fp32."""
    return load_config(experiment, "tiny", overrides=[f"model.name={model_dir}", FP32, *extra])


def _record(root: Path, cell_id: str) -> dict[str, Any]:
    return json.loads((root / "cells" / cell_id / "result.json").read_text(encoding="utf-8"))


def _close(got: Any, want: Any, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want`` beyond the tolerance (times skipped)."""
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            return [f"{path}: keys {sorted(set(got) ^ set(want))}"]
        return [d for k in want if k not in VOLATILE for d in _close(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items, expected {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _close(g, w, f"{path}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        return [] if math.isclose(got, want, rel_tol=REL, abs_tol=ABS) else [f"{path}: {got!r} != {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r} != {want!r}"]


def assert_same_cells(packed: Path, alone: Path, ids: list[str]) -> None:
    """Each cell's folder holds the same files under both roots, with equal records, metrics and vectors."""
    from safetensors.torch import load_file

    for cid in ids:
        a, b = packed / "cells" / cid, alone / "cells" / cid
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        ra, rb = _record(packed, cid), _record(alone, cid)
        for key in ("id", "kind", "version", "name", "stage", "params", "deps", "artifacts"):
            assert ra[key] == rb[key], (cid, key)
        diffs = _close(ra["metrics"], rb["metrics"])
        assert not diffs, f"{cid}: {diffs}"
        for name in ra["artifacts"]:
            ta, tb = load_file(a / name), load_file(b / name)
            assert ta.keys() == tb.keys()
            for key in ta:
                scale = float(tb[key].abs().max())
                assert float((ta[key] - tb[key]).abs().max()) <= REL * max(scale, 1.0), (cid, name, key)


# -- packed and unpacked runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("experiment", "extra", "kind"),
    [("sources", ("prompt.origins=[0,1,2]",), "source"), ("calibration", CALIBRATION, "calib_prompt")],
)
def test_packed_run_stores_what_an_unpacked_run_stores(
    experiment: str, extra: tuple[str, ...], kind: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """runtime.pack=3 stores the cells runtime.pack=1 stores: same ids and files, results equal within tolerance."""
    alone_cfg, layers = tiny_config(experiment, tiny_model_dir, *extra)
    packed_cfg, packed_layers = tiny_config(experiment, tiny_model_dir, *extra, "runtime.pack=3")
    alone = run(alone_cfg, tmp_path / "alone", layers=layers)
    packed = run(packed_cfg, tmp_path / "packed", layers=packed_layers)
    assert alone.ok and packed.ok and not packed.pack_failed
    assert [c.id for c in packed.cells] == [c.id for c in alone.cells]
    assert sorted(packed.executed) == sorted(alone.executed) and len(packed.executed) == 6
    assert sorted(p.name for p in (tmp_path / "packed" / "cells").iterdir()) == sorted(alone.executed)
    assert_same_cells(tmp_path / "packed", tmp_path / "alone", alone.executed)
    sizes = {cid: _record(tmp_path / "packed", cid)["pack_size"] for cid in packed.executed}
    assert all(c.kind == kind for c in packed.cells) and set(sizes.values()) == {3}
    assert {_record(tmp_path / "alone", cid)["pack_size"] for cid in alone.executed} == {1}
    got = json.loads((tmp_path / "packed" / packed_cfg.name / "results.json").read_text())
    assert got["config"]["runtime"]["pack"] == 3 and got["complete"]


def test_packed_fewshot_run_stores_what_an_unpacked_run_stores(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A few-shot run at runtime.pack=3 stores the cells it stores unpacked: same ids and files, equal results."""
    alone_cfg, layers = tiny_config("fewshot", tiny_model_dir)
    packed_cfg, packed_layers = tiny_config("fewshot", tiny_model_dir, "runtime.pack=3")
    alone = run(alone_cfg, tmp_path / "alone", layers=layers)
    packed = run(packed_cfg, tmp_path / "packed", layers=packed_layers)
    assert alone.ok and packed.ok and not packed.pack_failed
    assert [c.id for c in packed.cells] == [c.id for c in alone.cells]
    assert sorted(packed.executed) == sorted(alone.executed) == sorted(c.id for c in alone.cells)
    assert sorted(p.name for p in (tmp_path / "packed" / "cells").iterdir()) == sorted(alone.executed)
    assert_same_cells(tmp_path / "packed", tmp_path / "alone", alone.executed)
    packs: dict[str, set[int]] = {}  # kind -> the pack sizes its cells ran in
    shots_packed: set[int] = set()  # the shot counts of few-shot cells that ran in a pack
    for c in packed.cells:
        size = _record(tmp_path / "packed", c.id)["pack_size"]
        packs.setdefault(c.kind, set()).add(size)
        if c.kind == "fewshot" and size > 1:
            shots_packed.add(int(c.params["shots"]))
    assert packs["select"] == {1} and max(packs["mixture"]) == 2 and max(packs["fewshot"]) == 3
    assert max(packs["source"]) > 1 and shots_packed == {0, 2}  # k = 0 cells (scored, not tuned) pack too
    assert {_record(tmp_path / "alone", cid)["pack_size"] for cid in alone.executed} == {1}


def test_pack_mixing_tuned_and_untuned_fewshot_cells_returns_what_each_returns_alone(tiny_model_dir: Path) -> None:
    """A pack of few-shot cells at k = 2 and k = 0 (scored, not tuned) gives each cell its unpacked output."""
    from tpv.bench.experiments import get_experiment

    config, _layers = tiny_config("fewshot", tiny_model_dir)
    cells = [c for c in get_experiment("fewshot").plan(config) if c.kind == "fewshot" and not c.deps]
    members = [(c.params, {}) for c in cells if c.params["seed"] == 0]  # the random init at k = 0 and k = 2
    assert sorted(p["shots"] for p, _ in members) == [0, 2]
    kind = CELL_KINDS["fewshot"]
    assert kind.pack is not None
    packed = kind.pack(members, {})
    for (params, inputs), out in zip(members, packed):
        alone = kind.fn(params, inputs, {})
        assert not _close(dict(out.metrics), dict(alone.metrics)) and out.artifacts == alone.artifacts == {}


@pytest.mark.parametrize(
    ("experiment", "packed_kinds"), [("tasks", {"source", "task_instruction"}), ("transfer", {"xfer_tune"})]
)
def test_packed_tasks_and_transfer_runs_store_what_unpacked_runs_store(
    experiment: str, packed_kinds: set[str], tiny_model_dir: Path, tiny_gemma_dir: Path, tmp_path: Path
) -> None:
    """tasks and transfer at runtime.pack=3 store the cells they store unpacked, their tunings trained in packs."""
    extra = [f"transfer.directions=[[{tiny_model_dir}, {tiny_gemma_dir}]]"] if experiment == "transfer" else []
    alone_cfg, layers = tiny_config(experiment, tiny_model_dir, *extra)
    packed_cfg, packed_layers = tiny_config(experiment, tiny_model_dir, *extra, "runtime.pack=3")
    alone = run(alone_cfg, tmp_path / "alone", layers=layers)
    packed = run(packed_cfg, tmp_path / "packed", layers=packed_layers)
    assert alone.ok and packed.ok and not packed.pack_failed
    assert sorted(packed.executed) == sorted(alone.executed) == sorted(c.id for c in alone.cells)
    assert_same_cells(tmp_path / "packed", tmp_path / "alone", alone.executed)
    packs = {c.kind for c in packed.cells if _record(tmp_path / "packed", c.id)["pack_size"] > 1}
    assert packs == packed_kinds


def test_interrupted_packed_run_resumes(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packed run interrupted in its second pack keeps the first pack's cells; a rerun runs only the others."""
    real = CELL_KINDS["source"]
    assert real.pack is not None
    packs: list[int] = []

    def interrupted(members: Any, env: Mapping[str, Any]) -> list[CellOutput]:
        packs.append(len(members))
        if len(packs) == 2:
            raise KeyboardInterrupt
        assert real.pack is not None
        return real.pack(members, env)

    config, layers = tiny_config("sources", tiny_model_dir, "prompt.origins=[0,1,2]", "runtime.pack=3")
    monkeypatch.setitem(CELL_KINDS, "source", CellKind("source", real.fn, real.version, interrupted, real.pack_key))
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, layers=layers)
    first = sorted(p.name for p in (tmp_path / "cells").iterdir())
    assert packs == [3, 3] and len(first) == 3

    def counted(members: Any, env: Mapping[str, Any]) -> list[CellOutput]:
        packs.append(len(members))
        assert real.pack is not None
        return real.pack(members, env)

    monkeypatch.setitem(CELL_KINDS, "source", CellKind("source", real.fn, real.version, counted, real.pack_key))
    again = run(config, tmp_path, layers=layers)
    assert again.ok and sorted(again.finished) == first and len(again.executed) == 3
    assert packs == [3, 3, 3] and not set(again.executed) & set(first)
    monkeypatch.setitem(CELL_KINDS, "source", real)
    alone_config, alone_layers = tiny_config("sources", tiny_model_dir, "prompt.origins=[0,1,2]")
    alone = run(alone_config, tmp_path / "alone", layers=alone_layers)
    assert_same_cells(tmp_path, tmp_path / "alone", alone.executed)


def test_model_train_many_cannot_pack_runs_its_cells_one_by_one(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cells whose model train_many does not pack run one by one, as unpacked, with runtime.pack > 1."""
    import tpv.engine.packing

    def refuse(model: Any) -> None:
        raise ConfigError("packing many prompts into one batch supports causal-lm models only")

    monkeypatch.setattr(tpv.engine.packing, "check_packable", refuse)
    config, layers = tiny_config("sources", tiny_model_dir, "runtime.pack=4")
    summary = run(config, tmp_path / "packed", layers=layers)
    assert summary.ok and len(summary.executed) == 4 and not summary.pack_failed
    assert {_record(tmp_path / "packed", cid)["pack_size"] for cid in summary.executed} == {1}
    alone_config, alone_layers = tiny_config("sources", tiny_model_dir)
    alone = run(alone_config, tmp_path / "alone", layers=alone_layers)
    assert_same_cells(tmp_path / "packed", tmp_path / "alone", alone.executed)


# -- grouping, failures and routing (cheap fake kinds) -------------------------------------------------------------


def _echo(params: Mapping[str, Any], inputs: Mapping[str, CellInput], env: Mapping[str, Any]) -> CellOutput:
    if params.get("fail"):
        raise RuntimeError(f"cell {params['i']} fails")
    return CellOutput({"i": params["i"], "model": params["model"]["name"]})


@pytest.fixture
def fake_kinds(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """Kinds ``fake_a`` and ``fake_b`` (packable, counting their packs' sizes) and ``fake_c`` (not packable)."""
    calls: dict[str, list[int]] = {"fake_a": [], "fake_b": [], "broken": []}

    def packer(name: str) -> Any:
        def pack(members: Any, env: Mapping[str, Any]) -> list[CellOutput]:
            calls[name].append(len(members))
            if name == "broken":
                raise RuntimeError("the pack failed")
            if len({p["model"]["name"] for p, _ in members}) > 1:
                raise AssertionError("a pack mixed models")
            return [_echo(p, i, env) for p, i in members]

        return pack

    for name in ("fake_a", "fake_b", "broken"):
        monkeypatch.setitem(CELL_KINDS, name, CellKind(name, _echo, 1, pack=packer(name)))
    monkeypatch.setitem(CELL_KINDS, "fake_c", CellKind("fake_c", _echo, 1))
    return calls


def _cell(kind: str, i: int, model: str, **extra: Any) -> Any:
    return make_cell(kind, f"c{i}", {"i": i, "model": {"name": model}, **extra}, stage="s")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(st.tuples(st.sampled_from(["fake_a", "fake_b", "fake_c"]), st.sampled_from(["m1", "m2"])),
                    max_size=14),
    size=st.integers(1, 5),
)  # fmt: skip
def test_packs_never_mix_kinds_or_models(layout: list[tuple[str, str]], size: int, fake_kinds: Any) -> None:
    """Every task lands in exactly one unit; a pack holds 2..size cells of one packable kind and one model."""
    tasks = [CellTask(_cell(kind, i, model), {}, {}) for i, (kind, model) in enumerate(layout)]
    units = pack_tasks(tasks, size)
    seen: list[str] = []
    for unit in units:
        if isinstance(unit, CellPack):
            kinds = {t.cell.kind for t in unit.tasks}
            models = {t.cell.params["model"]["name"] for t in unit.tasks}
            assert len(kinds) == 1 and len(models) == 1 and kinds != {"fake_c"}
            assert 2 <= len(unit.tasks) <= size
            seen += [t.cell.id for t in unit.tasks]
        else:
            seen.append(unit.cell.id)
    assert sorted(seen) == sorted(t.cell.id for t in tasks)
    if size == 1:
        assert units == tasks
    groups = {(k, m) for k, m in layout if k != "fake_c"}
    packs = [u for u in units if isinstance(u, CellPack)]
    assert len(packs) <= sum(math.ceil(sum(1 for x in layout if x == g) / size) for g in groups)


def test_in_process_executor_runs_each_pack_in_one_call(fake_kinds: dict[str, list[int]], tmp_path: Path) -> None:
    """The in-process executor calls a kind's pack function once per pack and stores every cell on its own."""
    cells = [_cell("fake_a", i, "m1") for i in range(5)] + [_cell("fake_a", 9, "m2"), _cell("fake_c", 7, "m1")]
    summary = run_cells(cells, tmp_path, name="t", executor=InProcessExecutor(), pack=3)
    assert summary.ok and len(summary.executed) == 7
    assert sorted(fake_kinds["fake_a"]) == [2, 3]  # five m1 cells in two packs; the lone m2 cell runs alone
    sizes = {_record(tmp_path, c.id)["metrics"]["i"]: _record(tmp_path, c.id)["pack_size"] for c in cells}
    assert sorted(sizes[i] for i in range(5)) == [2, 2, 3, 3, 3] and sizes[9] == sizes[7] == 1


def test_failed_pack_reruns_its_cells_alone(fake_kinds: dict[str, list[int]], tmp_path: Path) -> None:
    """A pack that raises runs its cells one by one: the failing cell alone fails, the others are stored."""
    cells = [_cell("broken", i, "m1", fail=i == 1) for i in range(3)]
    summary = run_cells(cells, tmp_path, name="t", pack=3)
    assert fake_kinds["broken"] == [3]
    assert sorted(summary.executed) == sorted([cells[0].id, cells[2].id])
    assert summary.failed == {cells[1].id: "RuntimeError: cell 1 fails"}
    assert set(summary.pack_failed) == {c.id for c in cells}
    assert all(e == "RuntimeError: the pack failed" for e in summary.pack_failed.values())
    assert _record(tmp_path, cells[0].id)["pack_error"] == "RuntimeError: the pack failed"
    logs = sorted(p.name for p in (tmp_path / "t" / "failures").iterdir())
    assert logs == sorted([f"{cells[1].id}.txt", f"pack-{cells[0].id}.txt"])
    again = run_cells(cells, tmp_path, name="t", pack=3)
    assert again.finished == sorted([cells[0].id, cells[2].id]) and list(again.failed) == [cells[1].id]


def test_not_packable_cells_run_one_by_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A pack function that raises NotPackableError has its cells run one by one, with no pack error recorded."""

    def refuse(members: Any, env: Mapping[str, Any]) -> list[CellOutput]:
        raise NotPackableError("this model does not pack")

    monkeypatch.setitem(CELL_KINDS, "fake_n", CellKind("fake_n", _echo, 1, pack=refuse))
    cells = [_cell("fake_n", i, "m1") for i in range(3)]
    summary = run_cells(cells, tmp_path, name="t", pack=3)
    assert summary.ok and len(summary.executed) == 3 and not summary.pack_failed
    assert all("pack_error" not in _record(tmp_path, c.id) for c in cells)


# -- config ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "true", "many", "null"])
def test_invalid_pack_is_one_config_error(value: str, tmp_path: Path) -> None:
    """An invalid runtime.pack answers one ConfigError naming the key, the value, where it was set and the rule."""
    with pytest.raises(ConfigError) as exc:
        load_config("sources", overrides=[f"runtime.pack={value}"])
    lines = str(exc.value).splitlines()
    assert lines[0] == "invalid benchmark config:" and len(lines) == 2
    assert lines[1].startswith("  runtime.pack = ") and "(set in --set): must be a whole number >= 1" in lines[1]
    with pytest.raises(ConfigError, match=r"pack = 0: must be a whole number >= 1"):
        run_cells([], tmp_path, name="t", pack=0)


def test_pack_is_recorded_only_when_it_packs() -> None:
    """The resolved config names runtime.pack only when it packs, so earlier results' configs keep their form."""
    assert "pack" not in load_config("sources")[0].to_dict()["runtime"]
    assert load_config("sources", overrides=["runtime.pack=4"])[0].to_dict()["runtime"]["pack"] == 4


# -- Ray ---------------------------------------------------------------------------------------------------------


def test_ray_worker_takes_a_pack(tiny_model_dir: Path, tmp_path: Path) -> None:
    """On Ray a pack is one task: its cells come back together and land in the files an in-process pack writes."""
    import ray

    from tpv.bench.executors import RayExecutor

    config, layers = tiny_config("sources", tiny_model_dir, "prompt.origins=[0,1,2]", "runtime.pack=3")
    env = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    with RayExecutor(num_cpus=1, init_kwargs={"runtime_env": {"env_vars": env}}) as ex:
        summary = run(config, tmp_path / "ray", layers=layers, executor=ex)
    assert not ray.is_initialized()
    local = run(config, tmp_path / "local", layers=layers)
    assert summary.ok and sorted(summary.executed) == sorted(local.executed) and len(summary.executed) == 6
    assert {_record(tmp_path / "ray", cid)["pack_size"] for cid in summary.executed} == {3}
    assert_same_cells(tmp_path / "ray", tmp_path / "local", local.executed)
    assert run(config, tmp_path / "ray", layers=layers).executed == []
