"""Merge methods: laws on small-integer tensors (exact), hand-computed cases, registry, errors, CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import DIM, ORIGIN, ROWS, vectors
from typer.testing import CliRunner

import tpv
from tpv.cli.merge import parse_grid, parse_weights, register
from tpv.merge import (
    MERGE_METHODS,
    dare,
    disjoint_merge,
    elect_sign,
    get_method,
    merge,
    merge_record,
    merge_tensors,
    ties,
    trim_magnitude,
)

vector_lists = st.lists(vectors(), min_size=1, max_size=4)
int_weights = st.integers(min_value=-3, max_value=3).map(float)
SPARSE_METHODS = ("magnitude", "ties", "dare", "dare_ties")


def _vec(values: list[list[float]], task: str = "t", origin_id: str = ORIGIN.id) -> tpv.TaskPromptVector:
    return tpv.TaskPromptVector.from_tensor(torch.tensor(values, dtype=torch.float64), origin_id=origin_id, task=task)


# -- laws -----------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(vs=vector_lists, data=st.data())
def test_task_arithmetic_equals_the_algebra(vs: list[tpv.TaskPromptVector], data: st.DataObject) -> None:
    """task_arithmetic(vs, w) == sum(w_i * v_i), values and terms, exactly."""
    ws = data.draw(st.lists(int_weights, min_size=len(vs), max_size=len(vs)))
    expected = sum((w * v for w, v in zip(ws, vs)), tpv.TaskPromptVector.zeros_like(vs[0]))
    assert merge(vs, "task_arithmetic", weights=ws) == expected


@settings(max_examples=60, deadline=None)
@given(vs=vector_lists)
def test_mean_equals_tpv_mean(vs: list[tpv.TaskPromptVector]) -> None:
    """merge(vs, 'mean') == tpv.mean(vs), values and terms, exactly."""
    assert merge(vs, "mean") == tpv.mean(vs)


@settings(max_examples=40, deadline=None)
@given(vs=vector_lists, data=st.data(), method=st.sampled_from(("magnitude", "dare")))
def test_density_one_is_the_identity(vs: list[tpv.TaskPromptVector], data: st.DataObject, method: str) -> None:
    """At density 1, magnitude and dare are task arithmetic with the same weights."""
    ws = data.draw(st.lists(int_weights, min_size=len(vs), max_size=len(vs)))
    assert merge(vs, method, weights=ws, density=1.0) == merge(vs, "task_arithmetic", weights=ws)


@settings(max_examples=40, deadline=None)
@given(vs=vector_lists)
def test_trim_at_density_one_keeps_everything(vs: list[tpv.TaskPromptVector]) -> None:
    """trim_magnitude(x, 1) == x."""
    stacked = torch.stack([v.tensor for v in vs])
    assert torch.equal(trim_magnitude(stacked, 1.0), stacked)


@settings(max_examples=40, deadline=None)
@given(vs=vector_lists, data=st.data())
def test_dare_ties_at_density_one_is_ties(vs: list[tpv.TaskPromptVector], data: st.DataObject) -> None:
    """At density 1 nothing is dropped, so dare_ties is ties without trimming."""
    ws = data.draw(st.lists(int_weights, min_size=len(vs), max_size=len(vs)))
    assert merge(vs, "dare_ties", weights=ws, density=1.0) == merge(vs, "ties", weights=ws, density=1.0)


@settings(max_examples=60, deadline=None)
@given(v=vectors(), w=int_weights)
def test_ties_of_one_vector_is_that_vector(v: tpv.TaskPromptVector, w: float) -> None:
    """TIES of one vector at density 1 is that vector times its weight."""
    assert merge([v], "ties", weights=[w], density=1.0) == w * v
    assert merge([v], "ties", density=1.0) == v


@settings(max_examples=40, deadline=None)
@given(v=vectors(), density=st.sampled_from([0.1, 0.25, 0.5, 0.75]))
def test_ties_of_one_vector_is_its_trim(v: tpv.TaskPromptVector, density: float) -> None:
    """With one vector there is no sign conflict: ties == magnitude pruning."""
    assert merge([v], "ties", density=density) == merge([v], "magnitude", density=density)


@settings(max_examples=40, deadline=None)
@given(vs=vector_lists, data=st.data())
def test_per_token_with_constant_rows_is_task_arithmetic(vs: list[tpv.TaskPromptVector], data: st.DataObject) -> None:
    """per_token with the same weight on every row == task_arithmetic with that weight."""
    ws = data.draw(st.lists(int_weights, min_size=len(vs), max_size=len(vs)))
    rows = torch.tensor(ws, dtype=torch.float64)[:, None].expand(len(vs), ROWS)
    assert merge(vs, "per_token", weights=rows) == merge(vs, "task_arithmetic", weights=ws)


@settings(max_examples=40, deadline=None)
@given(vs=vector_lists, density=st.sampled_from([0.1, 0.3, 0.5, 0.9]))
def test_trim_keeps_the_largest_entries(vs: list[tpv.TaskPromptVector], density: float) -> None:
    """trim_magnitude keeps round(density * numel) entries per vector, none smaller than a dropped one."""
    stacked = torch.stack([v.tensor for v in vs])
    trimmed = trim_magnitude(stacked, density)
    k = max(1, math.floor(density * ROWS * DIM + 0.5))
    for x, t in zip(stacked, trimmed):
        kept = t != 0
        assert torch.equal(t[kept], x[kept])  # kept entries unchanged
        assert int(kept.sum()) <= k
        if kept.any() and (~kept).any():
            assert float(x.abs()[kept].min()) >= float(x.abs()[~kept].max())


def test_dare_expectation_is_the_input() -> None:
    """DARE is unbiased: the mean over many independent drops is the input (Monte Carlo, 5 sigma)."""
    v = torch.tensor([[3.0, -2.0, 1.0], [0.0, 8.0, -5.0]], dtype=torch.float64)
    n, density = 4000, 0.3
    stacked = v.expand(n, *v.shape).clone()  # (n, rows, dim): n copies, each with its own mask
    estimate = dare(stacked, torch.full((n,), 1.0 / n, dtype=torch.float64), density=density, seed=7)
    sigma = v.abs() * math.sqrt((1 - density) / density / n)
    assert bool(((estimate - v).abs() <= 5 * sigma + 1e-12).all())


def test_dare_is_seeded() -> None:
    """The same seed gives the same masks; another seed other masks; the global RNG is untouched."""
    a, b = _vec([[1, 2, 3, 4]], "a"), _vec([[4, 3, 2, 1]], "b")
    state = torch.random.get_rng_state()
    first = merge([a, b], "dare", density=0.5, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert merge([a, b], "dare", density=0.5, seed=1) == first
    assert any(merge([a, b], "dare", density=0.5, seed=s) != first for s in range(2, 6))


def test_dare_rescales_kept_entries() -> None:
    """Every DARE entry is 0 or the input divided by density."""
    v = torch.arange(1.0, 201.0, dtype=torch.float64).reshape(1, 10, 20)
    out = dare(v, torch.ones(1, dtype=torch.float64), density=0.25, seed=0)
    kept = out != 0
    assert torch.equal(out[kept], (v[0] / 0.25)[kept])
    assert 20 < int(kept.sum()) < 80  # about a quarter of 200


def test_ties_hand_computed() -> None:
    """TIES on a worked example: trim top-2 per vector, elect signs by mass, mean of agreeing values."""
    stacked = torch.tensor(
        [
            [[4.0, -1.0, 0.5, -3.0]],  # keeps 4, -3
            [[-2.0, 6.0, 0.1, -1.0]],  # keeps -2, 6
            [[1.0, -0.5, 5.0, -2.0]],  # keeps 5, -2
        ],
        dtype=torch.float64,
    )
    w = torch.ones(3, dtype=torch.float64)
    # masses: [4 - 2, 6, 5, -3 - 2] -> signs [+, +, +, -]; agreeing: [4], [6], [5], [-3, -2]
    expected = torch.tensor([[4.0, 6.0, 5.0, -2.5]], dtype=torch.float64)
    assert torch.equal(ties(stacked, w, density=0.5), expected)


def test_elect_sign_and_disjoint_merge() -> None:
    """Sign of the total mass (+1 on a tie at 0); zeros and disagreeing values do not count."""
    stacked = torch.tensor([[[2.0, -1.0, 0.0]], [[-1.0, 1.0, 0.0]], [[3.0, -4.0, 0.0]]], dtype=torch.float64)
    sign = elect_sign(stacked)
    assert torch.equal(sign, torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64))
    assert torch.equal(disjoint_merge(stacked, sign), torch.tensor([[2.5, -2.5, 0.0]], dtype=torch.float64))


def test_merge_terms_record_the_weights() -> None:
    """Terms are sum_i w_i * terms_i for every method (the mean divides by sum w); per-row weights: row mean."""
    a, b = _vec([[1, -2, 3, 0]], "a"), _vec([[2, 2, -1, 1]], "b")
    for method in ("task_arithmetic", *SPARSE_METHODS):
        assert dict(merge([a, b], method, weights=[2.0, 0.5]).terms) == {"a": 2.0, "b": 0.5}
    assert dict(merge([a, b], "mean", weights=[3.0, 1.0]).terms) == {"a": 0.75, "b": 0.25}
    rows = torch.tensor([[1.0], [3.0]])
    assert dict(merge([a, b], "per_token", weights=rows).terms) == {"a": 1.0, "b": 3.0}


def test_merge_leaves_inputs_unchanged() -> None:
    """Merging never mutates its inputs."""
    a, b = _vec([[1, -2, 3, 0]], "a"), _vec([[2, 2, -1, 1]], "b")
    before = (a.tensor, b.tensor)
    for method in ("task_arithmetic", "mean", *SPARSE_METHODS):
        merge([a, b], method)
    assert torch.equal(a.tensor, before[0]) and torch.equal(b.tensor, before[1])


def test_merge_keeps_metadata_and_float32() -> None:
    """The result carries the inputs' origin, model, layout and dtype."""
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=3, seed=1, base_model="m")
    a = tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="a", dtype=torch.float32)
    b = tpv.TaskPromptVector.from_prompts(o.tensor - 1, o, task="b", dtype=torch.float32)
    for method in ("task_arithmetic", "mean", *SPARSE_METHODS):
        m = merge([a, b], method)
        assert (m.origin_id, m.base_model, m.shape, m.dtype) == (o.id, "m", (2, 3), torch.float32)


def test_norm_sum_keeps_the_sums_direction_at_the_inputs_mean_norm() -> None:
    """norm_sum is the sum scaled to the mean norm of the weighted inputs; a zero sum stays zero."""
    a, b = _vec([[3.0, 0.0], [0.0, 0.0]], "a"), _vec([[0.0, 1.0], [0.0, 0.0]], "b")
    m = merge([a, b], "norm_sum")
    total = (a + b).tensor
    assert m.norm() == pytest.approx((3.0 + 1.0) / 2)
    assert torch.allclose(m.tensor / m.norm(), total / total.norm())
    weighted = merge([a, b], "norm_sum", [2.0, 1.0])
    assert weighted.norm() == pytest.approx((6.0 + 1.0) / 2) and dict(weighted.terms) == {"a": 2.0, "b": 1.0}
    assert torch.count_nonzero(merge([a, -a], "norm_sum").tensor) == 0


# -- registry -------------------------------------------------------------------------------------------------


def test_registry_entries_are_complete() -> None:
    """Each method knows its name, a summary, valid defaults and (except tpv's own) an arXiv paper."""
    assert set(MERGE_METHODS) == {"task_arithmetic", "mean", "norm_sum", "per_token", "magnitude", "ties", "dare",
                                  "dare_ties"}  # fmt: skip
    for name, m in MERGE_METHODS.items():
        assert m.name == name and m.summary
        for p in m.params:
            assert p.validate(p.default, method=name) == p.default
        if name not in ("per_token", "norm_sum"):
            assert m.paper is not None and re.fullmatch(r"\d{4}\.\d{5}", m.paper.arxiv)
            assert m.paper.url.endswith(m.paper.arxiv) and m.paper.title in m.paper.cite()
    assert MERGE_METHODS["ties"].paper.arxiv == "2306.01708"  # type: ignore[union-attr]
    assert MERGE_METHODS["dare"].paper.arxiv == "2311.03099"  # type: ignore[union-attr]


def test_merge_record_is_json_with_defaults() -> None:
    """merge_record fills in defaults and is JSON-serializable."""
    rec = merge_record("dare", [1.0, 0.5], ["a", "b"], density=0.3)
    assert rec["merge"]["params"] == {"density": 0.3, "seed": 0}
    assert json.loads(json.dumps(rec)) == rec


def test_merge_tensors_runs_a_method_on_raw_values() -> None:
    """merge_tensors on a stack equals merge on the vectors."""
    a, b = _vec([[1, -2, 3, 0]], "a"), _vec([[2, 2, -1, 1]], "b")
    stacked = torch.stack([a.tensor, b.tensor])
    assert torch.equal(
        merge_tensors(stacked, "ties", [1.0, 2.0], density=0.5), merge([a, b], "ties", [1, 2], density=0.5).tensor
    )


# -- bad input ------------------------------------------------------------------------------------------------


def test_unknown_method_lists_the_known_ones() -> None:
    """An unknown method name is a ConfigError listing every known method."""
    a = _vec([[1, 2, 3, 4]])
    with pytest.raises(tpv.ConfigError, match=r"unknown merge method 'tie'.*task_arithmetic.*dare_ties"):
        merge([a], "tie")
    with pytest.raises(tpv.ConfigError):
        get_method(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, math.nan, math.inf])
@pytest.mark.parametrize("method", SPARSE_METHODS)
def test_density_outside_zero_one_is_rejected(method: str, density: float) -> None:
    """density must lie in (0, 1]; the message names the method, the value and the range."""
    a = _vec([[1, 2, 3, 4]])
    with pytest.raises(tpv.ConfigError, match=rf"{method}: parameter density=.*\(0, 1\]|must be finite"):
        merge([a], method, density=density)


def test_weight_count_must_match() -> None:
    """A weights count other than the vectors count is a ConfigError saying both counts."""
    a, b = _vec([[1, 2, 3, 4]], "a"), _vec([[1, 2, 3, 4]], "b")
    with pytest.raises(tpv.ConfigError, match=r"3 weight.*2 vector"):
        merge([a, b], weights=[1.0, 2.0, 3.0])
    with pytest.raises(tpv.ConfigError, match="per-token weights must have shape"):
        merge([a, b], weights=torch.ones(2, 5))
    with pytest.raises(tpv.ConfigError, match="per_token' needs weights of shape"):
        merge([a, b], "per_token", weights=[1.0, 1.0])
    with pytest.raises(tpv.ConfigError, match="finite"):
        merge([a, b], weights=[1.0, math.nan])
    with pytest.raises(tpv.ConfigError, match="sum of the weights"):
        merge([a, b], "mean", weights=[1.0, -1.0])


def test_empty_list_is_rejected() -> None:
    """Merging nothing is a ConfigError."""
    with pytest.raises(tpv.ConfigError, match="at least one vector"):
        merge([], "ties")


def test_different_origins_are_rejected() -> None:
    """Vectors of different origins raise IncompatibleVectorsError naming both."""
    a = _vec([[1, 2, 3, 4]], "a")
    b = _vec([[1, 2, 3, 4]], "b", origin_id="sha256:0000000000000000")
    with pytest.raises(tpv.IncompatibleVectorsError, match="different origins"):
        merge([a, b], "ties")
    with pytest.raises(tpv.IncompatibleVectorsError, match="not a TaskPromptVector"):
        merge([a, torch.zeros(1, 4)], "mean")  # type: ignore[list-item]


def test_unknown_or_bad_parameters_are_rejected() -> None:
    """A parameter the method does not take, or a seed that is not a non-negative int, is a ConfigError."""
    a = _vec([[1, 2, 3, 4]])
    with pytest.raises(tpv.ConfigError, match="takes no parameter density; accepted: none"):
        merge([a], "task_arithmetic", density=0.5)
    with pytest.raises(tpv.ConfigError, match="seed"):
        merge([a], "dare", seed=-1)
    with pytest.raises(tpv.ConfigError, match="seed"):
        merge([a], "dare", seed=1.5)


# -- CLI ------------------------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _save_pair(tmp_path: Path) -> tuple[Path, Path, tpv.TaskPromptVector, tpv.TaskPromptVector]:
    a, b = _vec([[1, -2, 3, 0]], "a"), _vec([[2, 2, -1, 1]], "b")
    pa, pb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tpv.save(a, pa)
    tpv.save(b, pb)
    return pa, pb, a, b


def test_cli_combine_writes_the_merge_and_its_provenance(tmp_path: Path) -> None:
    """tpv combine --method ties --density --weights writes merge(...) with the record as provenance."""
    pa, pb, a, b = _save_pair(tmp_path)
    out = tmp_path / "m.safetensors"
    args = ["combine", str(pa), str(pb), "--method", "ties", "--density", "0.5", "--weights", "1,0.5", "-o", str(out)]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, res.output
    assert tpv.load_vector(out) == merge([a, b], "ties", weights=[1.0, 0.5], density=0.5)
    prov = tpv.inspect(out).provenance["merge"]
    assert prov["method"] == "ties" and prov["params"] == {"density": 0.5} and prov["weights"] == [1.0, 0.5]


def test_cli_combine_mean_and_errors(tmp_path: Path) -> None:
    """--mean is the mean; unknown methods and bad densities fail with the library's error."""
    pa, pb, a, b = _save_pair(tmp_path)
    out = tmp_path / "m.safetensors"
    res = CliRunner().invoke(_app(), ["combine", str(pa), str(pb), "--mean", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert tpv.load_vector(out) == tpv.mean([a, b])
    res = CliRunner().invoke(_app(), ["combine", str(pa), "--method", "nope", "-o", str(out)])
    assert isinstance(res.exception, tpv.ConfigError) and "known methods" in str(res.exception)
    fresh = tmp_path / "fresh.safetensors"
    res = CliRunner().invoke(_app(), ["combine", str(pa), "--method", "ties", "--density", "2", "-o", str(fresh)])
    assert isinstance(res.exception, tpv.ConfigError) and "(0, 1]" in str(res.exception)


def test_cli_parsers() -> None:
    """--weights and --grid parse lists and start:stop:step ranges, and reject junk."""
    assert parse_weights("1, 0.5") == [1.0, 0.5]
    assert parse_grid("0:1:0.05") == tuple(round(i * 0.05, 2) for i in range(21))
    assert parse_grid("0,0.5,1") == (0.0, 0.5, 1.0)
    for bad in ("a,b", "1:0:0.1", "0:1:0"):
        with pytest.raises(tpv.ConfigError):
            parse_grid(bad)
    with pytest.raises(tpv.ConfigError):
        parse_weights("1,x")


def test_cli_help_has_examples() -> None:
    """Every command's --help shows an example."""
    for cmd in ("combine", "select", "search"):
        res = CliRunner().invoke(_app(), [cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output and f"tpv {cmd}" in res.output
