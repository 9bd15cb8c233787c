"""Similarity tables and source selection: invariances, SPoT ranking, DTVG grouping, errors, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import tpv
from tpv.cli.merge import register
from tpv.select import rank_sources, select_sources, similarity, similarity_table

ORIGIN = tpv.Origin.from_tensor(torch.zeros(1, 3, dtype=torch.float64))


def _v(values: list[float], task: str) -> tpv.TaskPromptVector:
    return tpv.TaskPromptVector.from_prompts(torch.tensor([values], dtype=torch.float64), ORIGIN, task=task)


TARGET = _v([1.0, 0.0, 0.0], "target")
SOURCES = {
    "near": _v([1.0, 0.2, 0.0], "near"),
    "twin": _v([1.0, 0.2, 0.01], "twin"),  # a near-duplicate of "near"
    "side": _v([1.0, -1.0, 0.0], "side"),
    "away": _v([-1.0, 0.1, 0.0], "away"),
    "ortho": _v([0.0, 0.0, 1.0], "ortho"),
}

nonzero_rows = st.lists(
    st.lists(st.integers(-5, 5).map(float), min_size=4, max_size=4).filter(any), min_size=2, max_size=2
)


# -- similarity -----------------------------------------------------------------------------------------------


def test_similarity_table_is_the_labelled_cosine_matrix() -> None:
    """similarity_table == cosine_matrix with labels; symmetric, ones on the diagonal; pairs sorted."""
    items = [TARGET, *SOURCES.values()]
    table = similarity_table(items, ["target", *SOURCES])
    assert torch.equal(table.matrix, tpv.cosine_matrix(items))
    assert torch.equal(table.matrix, table.matrix.T) and bool((table.matrix.diagonal() == 1).all())
    scores = [s for _, _, s in table.pairs()]
    assert scores == sorted(scores, reverse=True) and len(scores) == 15
    assert "| target |" in table.to_markdown() and json.loads(json.dumps(table.to_dict()))["labels"][0] == "target"


@settings(max_examples=40, deadline=None)
@given(
    a=nonzero_rows,
    b=nonzero_rows,
    scale=st.sampled_from([0.5, 2.0, 8.0]),
    pooling=st.sampled_from(["flat", "mean_tokens", "token_pairs"]),
)
def test_similarity_is_invariant_to_rotation_and_scale(
    a: list[list[float]], b: list[list[float]], scale: float, pooling: str
) -> None:
    """Cosine similarity survives a shared rotation of the embedding space and positive rescaling."""
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    if pooling == "mean_tokens" and (not ta.mean(0).any() or not tb.mean(0).any()):
        return  # a zero mean row has no direction
    before = similarity(ta, tb, pooling=pooling)  # type: ignore[arg-type]
    after = similarity(ta @ q * scale, tb @ q, pooling=pooling)  # type: ignore[arg-type]
    assert abs(before - after) < 1e-9 and -1.0 <= before <= 1.0


def test_token_level_poolings() -> None:
    """mean_tokens is the cosine of the row means; token_pairs the mean cosine over row pairs."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert similarity(a, b, pooling="mean_tokens") == pytest.approx(
        float(torch.cosine_similarity(a.mean(0), b.mean(0), dim=0))
    )
    pairs = [float(torch.cosine_similarity(x, y, dim=0)) for x in a for y in b]
    assert similarity(a, b, pooling="token_pairs") == pytest.approx(sum(pairs) / 4)


# -- selection ------------------------------------------------------------------------------------------------


def test_rank_sources_orders_by_similarity_to_the_target() -> None:
    """rank_sources is sorted by cosine to the target, most similar first."""
    ranking = rank_sources(TARGET, SOURCES)
    assert [s.name for s in ranking] == ["near", "twin", "side", "ortho", "away"]
    assert ranking[0].score == pytest.approx(TARGET.cosine(SOURCES["near"]))


def test_spot_keeps_the_top_k() -> None:
    """SPoT-style retrieval chooses the top_k most similar sources and reports every score."""
    sel = select_sources(TARGET, SOURCES, method="spot", top_k=2)
    assert sel.chosen == ("near", "twin") and sel.group_score is None
    assert [s.chosen for s in sel.ranking] == [True, True, False, False, False]
    assert set(sel.scores) == set(SOURCES)


def _brute_force(sim: torch.Tensor, kept: list[int]) -> float:
    best = -2.0
    for size in range(1, len(kept) + 1):
        for group in itertools.combinations(kept, size):
            idx = [0, *(i + 1 for i in group)]
            sub = sim[idx][:, idx]
            m = len(idx)
            best = max(best, float((sub.sum() - sub.diagonal().sum()) / (m * (m - 1))))
    return best


def test_dtvg_keeps_positive_sources_and_the_most_consistent_group() -> None:
    """DTVG drops non-positive sources and picks the group (with the target) of highest mean pairwise cosine."""
    sel = select_sources(TARGET, SOURCES, method="dtvg")
    assert "away" not in sel.chosen and "ortho" not in sel.chosen
    assert sel.chosen == ("near", "twin")
    names = list(SOURCES)
    sim = tpv.cosine_matrix([TARGET, *SOURCES.values()])
    kept = [i for i, n in enumerate(names) if TARGET.cosine(SOURCES[n]) > 0]
    assert sel.group_score == pytest.approx(_brute_force(sim, kept))


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(-4, 4).map(float), min_size=3, max_size=3).filter(any), min_size=1, max_size=6)
)
def test_dtvg_group_is_optimal(rows: list[list[float]]) -> None:
    """The chosen group's score is the best over every group of positively similar sources."""
    target = torch.tensor([[1.0, 1.0, 0.0]])
    sources = [torch.tensor([r]) for r in rows]
    sel = select_sources(target, sources, method="dtvg")
    sim = tpv.cosine_matrix([target, *sources])
    kept = [i for i in range(len(rows)) if float(sim[0, i + 1]) > 0]
    if not kept:
        assert sel.chosen == () and sel.group_score is None
    else:
        assert sel.group_score == pytest.approx(_brute_force(sim, kept))
        assert all(sel.scores[name] > 0 for name in sel.chosen)


def test_dtvg_prefers_tight_groups_unless_min_group() -> None:
    """Without a near-duplicate the single closest source wins; min_group insists on a combination."""
    sources = {"near": SOURCES["near"], "side": SOURCES["side"]}
    assert select_sources(TARGET, sources, method="dtvg").chosen == ("near",)
    assert select_sources(TARGET, sources, method="dtvg", min_group=2).chosen == ("near", "side")
    assert select_sources(TARGET, sources, method="dtvg", min_group=5).chosen == ("near", "side")
    with pytest.raises(tpv.ConfigError, match="above max_group"):
        select_sources(TARGET, sources, method="dtvg", min_group=3, max_group=2)


def test_dtvg_greedy_and_max_group() -> None:
    """Past max_exhaustive the search is greedy; max_group caps the group size."""
    exhaustive = select_sources(TARGET, SOURCES, method="dtvg")
    greedy = select_sources(TARGET, SOURCES, method="dtvg", max_exhaustive=1)
    assert greedy.group_score is not None and exhaustive.group_score is not None
    assert greedy.group_score <= exhaustive.group_score + 1e-12
    assert len(select_sources(TARGET, SOURCES, method="dtvg", max_group=1).chosen) == 1


def test_dtvg_with_no_similar_source_chooses_nothing() -> None:
    """When no source passes the threshold, nothing is chosen."""
    sel = select_sources(TARGET, {"away": SOURCES["away"]}, method="dtvg")
    assert sel.chosen == () and sel.group_score is None and sel.to_dict()["ranking"][0]["name"] == "away"


def test_selection_errors() -> None:
    """Unknown method or pooling, no sources, mismatched or repeated labels: one ConfigError each."""
    with pytest.raises(tpv.ConfigError, match="'spot' or 'dtvg'"):
        select_sources(TARGET, SOURCES, method="best")  # type: ignore[arg-type]
    with pytest.raises(tpv.ConfigError, match="pooling"):
        select_sources(TARGET, SOURCES, pooling="max")  # type: ignore[arg-type]
    with pytest.raises(tpv.ConfigError, match="at least one source"):
        select_sources(TARGET, {})
    with pytest.raises(tpv.ConfigError, match="2 label"):
        similarity_table([TARGET], ["a", "b"])
    with pytest.raises(tpv.ConfigError, match="unique"):
        similarity_table([TARGET, TARGET], ["a", "a"])
    with pytest.raises(tpv.ConfigError, match="top_k"):
        select_sources(TARGET, SOURCES, top_k=0)
    with pytest.raises(tpv.IncompatibleVectorsError):
        rank_sources(TARGET, [torch.ones(2, 3)])


# -- CLI ------------------------------------------------------------------------------------------------------


def test_cli_select(tmp_path: Path) -> None:
    """tpv select --target T SOURCES --method dtvg --json prints the selection."""
    files = []
    for name, v in SOURCES.items():
        files.append(tmp_path / f"{name}.safetensors")
        tpv.save(v, files[-1])
    tpv.save(TARGET, tmp_path / "target.safetensors")
    app = typer.Typer()
    register(app)
    args = ["select", "--target", str(tmp_path / "target.safetensors"), *map(str, files)]
    res = CliRunner().invoke(app, [*args, "--method", "dtvg", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["chosen"] == ["near", "twin"]
    res = CliRunner().invoke(app, [*args, "--top-k", "3"])
    assert res.exit_code == 0 and "chosen: near, twin, side" in res.output
