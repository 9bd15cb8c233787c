"""Tests of tpv.vector: the TaskPromptVector algebra, its terms, geometry and strictness."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tpv
from tests.strategies import ORIGIN, nonzero_scalars, scalars, vectors

pytestmark = pytest.mark.filterwarnings("error")


def vec(values: torch.Tensor, task: str = "a", origin: tpv.Origin = ORIGIN, **kw: object) -> tpv.TaskPromptVector:
    return tpv.TaskPromptVector.from_prompts(origin.tensor + values, origin, task=task, **kw)  # type: ignore[arg-type]


# -- algebraic laws (exact on small-integer tensors) -------------------------------------------------------------


@given(vectors(), vectors())
def test_addition_commutes(a: tpv.TaskPromptVector, b: tpv.TaskPromptVector) -> None:
    """a + b == b + a, tensor and terms."""
    assert a + b == b + a


@given(vectors(), vectors(), vectors())
def test_addition_associates(a: tpv.TaskPromptVector, b: tpv.TaskPromptVector, c: tpv.TaskPromptVector) -> None:
    """(a + b) + c == a + (b + c)."""
    assert (a + b) + c == a + (b + c)


@given(vectors())
def test_zero_is_identity(a: tpv.TaskPromptVector) -> None:
    """a + 0 == a and 0 has no terms."""
    zero = tpv.TaskPromptVector.zeros_like(a)
    assert dict(zero.terms) == {}
    assert a + zero == a
    assert zero + a == a


@given(vectors())
def test_inverse(a: tpv.TaskPromptVector) -> None:
    """a + (-a) == 0, with no terms left."""
    assert a + (-a) == tpv.TaskPromptVector.zeros_like(a)
    assert dict((a - a).terms) == {}


@given(vectors(), vectors())
def test_subtraction_is_adding_the_negation(a: tpv.TaskPromptVector, b: tpv.TaskPromptVector) -> None:
    """a - b == a + (-b)."""
    assert a - b == a + (-b)


@given(vectors(), vectors(), scalars)
def test_scalar_distributes_over_addition(a: tpv.TaskPromptVector, b: tpv.TaskPromptVector, k: float) -> None:
    """k * (a + b) == k * a + k * b."""
    assert k * (a + b) == k * a + k * b


@given(vectors(), scalars, scalars)
def test_addition_of_scalars_distributes(a: tpv.TaskPromptVector, k: float, m: float) -> None:
    """(k + m) * a == k * a + m * a."""
    assert (k + m) * a == k * a + m * a


@given(vectors(), scalars)
def test_left_and_right_scaling_agree(a: tpv.TaskPromptVector, k: float) -> None:
    """k * a == a * k."""
    assert k * a == a * k


@given(vectors(), nonzero_scalars)
def test_division_inverts_scaling(a: tpv.TaskPromptVector, k: float) -> None:
    """(a * k) / k == a for powers of two (exact)."""
    assert (a * k) / k == a


@given(st.lists(vectors(), min_size=1, max_size=5))
def test_builtin_sum_equals_repeated_addition(items: list[tpv.TaskPromptVector]) -> None:
    """sum([a, b, c]) == a + b + c."""
    total = items[0]
    for item in items[1:]:
        total = total + item
    assert sum(items) == total


@given(vectors(), vectors())
def test_mean_is_sum_over_count(a: tpv.TaskPromptVector, b: tpv.TaskPromptVector) -> None:
    """tpv.mean([a, b]) == (a + b) / 2."""
    assert tpv.mean([a, b]) == (a + b) / 2


def test_terms_follow_the_algebra() -> None:
    """-(a + b) has terms {a: -1, b: -1}; 0.5 a + 0.5 b has {a: .5, b: .5}; a - a has none."""
    a, b = vec(torch.ones(3, 4), "a"), vec(2 * torch.ones(3, 4), "b")
    assert dict((-(a + b)).terms) == {"a": -1.0, "b": -1.0}
    assert dict((0.5 * a + 0.5 * b).terms) == {"a": 0.5, "b": 0.5}
    assert dict(tpv.mean([a, b]).terms) == {"a": 0.5, "b": 0.5}
    assert dict((a - a).terms) == {}
    assert dict((2 * a - b + a).terms) == {"a": 3.0, "b": -1.0}


# -- construction and application ---------------------------------------------------------------------------------


def test_from_prompts_and_apply_round_trip_bit_exactly() -> None:
    """origin + (tuned - origin) gives the tuned prompt back bit for bit, in the origin's dtype."""
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        origin = tpv.Origin.from_tensor(torch.randn(5, 7, generator=gen).to(dtype))
        tuned = (origin.tensor.float() + 0.37 * torch.randn(5, 7, generator=gen)).to(dtype)
        v = tpv.TaskPromptVector.from_prompts(tuned, origin, task="t")
        out = v.apply_to(origin)
        assert out.dtype == dtype
        assert torch.equal(out, tuned)
        assert torch.equal(v.apply_to(origin.tensor), tuned)  # a bare tensor is checked by its hash


def test_combination_applies_as_origin_plus_weighted_sum() -> None:
    """(l1 a + l2 b).apply_to(origin) == origin + l1 tau_a + l2 tau_b."""
    a, b = vec(torch.full((3, 4), 2.0), "a"), vec(torch.full((3, 4), -4.0), "b")
    got = (0.5 * a + 0.25 * b).apply_to(ORIGIN)
    want = (ORIGIN.tensor.double() + 0.5 * a.tensor + 0.25 * b.tensor).float()
    assert torch.equal(got, want)


def test_tensor_is_a_copy_and_attributes_are_read_only() -> None:
    """Mutating .tensor does not change the vector; attributes cannot be set."""
    a = vec(torch.ones(3, 4))
    t = a.tensor
    t.zero_()
    assert a.norm() > 0
    with pytest.raises(AttributeError, match="immutable"):
        a.base_model = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.terms["b"] = 1.0  # type: ignore[index]


def test_metadata_is_inferred_from_the_origin() -> None:
    """from_prompts takes base model, token count and submodules from an Origin."""
    origin = tpv.Origin.gaussian(3, 4, seed=1, num_transformer_submodules=2, base_model="t5-tiny")
    v = tpv.TaskPromptVector.from_prompts(origin.tensor * 2, origin, task="x")
    assert (v.base_model, v.num_virtual_tokens, v.num_transformer_submodules, v.shape) == ("t5-tiny", 3, 2, (6, 4))
    assert v.origin_id == origin.id


# -- geometry -----------------------------------------------------------------------------------------------------


def test_norm_and_cosine() -> None:
    """norm is Frobenius; cosine is 1 with itself, -1 with its negation, 0 for orthogonal vectors."""
    e1 = torch.zeros(3, 4)
    e1[0, 0] = 3.0
    e2 = torch.zeros(3, 4)
    e2[1, 2] = 4.0
    a, b = vec(e1, "a"), vec(e2, "b")
    assert a.norm() == pytest.approx(3.0)
    assert (a + b).norm() == pytest.approx(5.0)
    assert a.cosine(a) == pytest.approx(1.0)
    assert a.cosine(-a) == pytest.approx(-1.0)
    assert a.cosine(b) == pytest.approx(0.0)


@given(vectors(), vectors(), nonzero_scalars)
def test_cosine_matrix_is_symmetric_and_scale_invariant(
    a: tpv.TaskPromptVector, b: tpv.TaskPromptVector, k: float
) -> None:
    """cosine_matrix is symmetric with unit diagonal, and cos(k a, b) = sign(k) cos(a, b)."""
    if a.norm() == 0 or b.norm() == 0:
        return
    m = tpv.cosine_matrix([a, b])
    assert m.shape == (2, 2)
    assert torch.equal(m, m.T)
    assert m[0, 0] == 1.0 and m[1, 1] == 1.0
    assert math.isclose((k * a).cosine(b), math.copysign(1.0, k) * a.cosine(b), abs_tol=1e-12)


def test_cosine_compares_across_origins_but_not_shapes() -> None:
    """Vectors of different origins may be compared; different shapes may not; zero vectors are refused."""
    other = tpv.Origin.gaussian(3, 4, seed=99)
    a, b = vec(torch.ones(3, 4)), vec(torch.ones(3, 4), origin=other)
    assert a.cosine(b) == pytest.approx(1.0)
    with pytest.raises(tpv.IncompatibleVectorsError, match="equal shapes"):
        tpv.cosine_matrix([a, torch.ones(2, 4)])
    with pytest.raises(tpv.InvalidVectorError, match="all zeros"):
        a.cosine(a - a)


# -- strictness ---------------------------------------------------------------------------------------------------


def test_different_origins_refuse_to_combine() -> None:
    """Adding vectors of different origins names both sides and the fix."""
    other = tpv.Origin.gaussian(3, 4, seed=99)
    a, b = vec(torch.ones(3, 4), "sst2"), vec(torch.ones(3, 4), "imdb", origin=other)
    with pytest.raises(tpv.IncompatibleVectorsError) as err:
        _ = a + b
    msg = str(err.value)
    assert ORIGIN.id in msg and other.id in msg and "sst2" in msg and "imdb" in msg and "Fix:" in msg


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_model": "other-model"}, "base models"),
        ({"dtype": torch.float32}, "dtypes"),
    ],
)
def test_other_mismatches_refuse_to_combine(kwargs: dict[str, object], needle: str) -> None:
    """Different base models or dtypes raise IncompatibleVectorsError naming what differs."""
    a = vec(torch.ones(3, 4), "a")
    b = vec(torch.ones(3, 4), "b", **kwargs)
    with pytest.raises(tpv.IncompatibleVectorsError, match=needle):
        _ = a - b


def test_shape_mismatch_refuses_to_combine() -> None:
    """Vectors of different shapes (same origin id claimed) do not add."""
    a = tpv.TaskPromptVector.from_tensor(torch.ones(3, 4), origin_id="sha256:x", task="a")
    b = tpv.TaskPromptVector.from_tensor(torch.ones(2, 4), origin_id="sha256:x", task="b")
    with pytest.raises(tpv.IncompatibleVectorsError, match="shapes"):
        _ = a + b


def test_apply_to_another_origin_is_refused_unless_asked() -> None:
    """apply_to checks the origin's content hash; strict=False applies it anyway."""
    other = tpv.Origin.gaussian(3, 4, seed=5)
    a = vec(torch.ones(3, 4))
    with pytest.raises(tpv.IncompatibleVectorsError, match="was tuned from origin"):
        a.apply_to(other)
    with pytest.raises(tpv.IncompatibleVectorsError, match="was tuned from origin"):
        a.apply_to(other.tensor)
    assert torch.equal(a.apply_to(other, strict=False), (other.tensor.double() + a.tensor).float())


@pytest.mark.parametrize(
    "bad",
    [
        torch.tensor([[float("nan"), 0.0]]),
        torch.tensor([[float("inf"), 0.0]]),
        torch.ones(2, 3, 4),
        torch.ones(0, 4),
        torch.ones(2, 3, dtype=torch.int64),
        [[1.0, 2.0]],
    ],
)
def test_invalid_tensors_are_refused_at_construction(bad: object) -> None:
    """Non-finite, non-2-D, empty, integer or non-tensor values raise InvalidVectorError."""
    with pytest.raises(tpv.InvalidVectorError):
        tpv.TaskPromptVector.from_tensor(bad, origin_id="sha256:x", task="a")  # type: ignore[arg-type]


def test_bad_scalars_and_terms_are_refused() -> None:
    """Non-finite scale factors, division by zero and missing task/terms raise ConfigError."""
    a = vec(torch.ones(3, 4))
    with pytest.raises(tpv.ConfigError, match="finite"):
        _ = a * float("nan")
    with pytest.raises(tpv.ConfigError, match="zero"):
        _ = a / 0
    with pytest.raises(TypeError):
        _ = a * "2"  # type: ignore[operator]
    with pytest.raises(tpv.ConfigError, match="scalars only"):
        _ = a * a
    with pytest.raises(tpv.ConfigError, match="exactly one"):
        tpv.TaskPromptVector.from_tensor(torch.ones(3, 4), origin_id="sha256:x")
    with pytest.raises(tpv.ConfigError, match="at least one"):
        tpv.mean([])


def test_overflow_is_refused() -> None:
    """An operation that overflows to inf raises instead of producing a non-finite vector."""
    a = tpv.TaskPromptVector.from_tensor(torch.full((1, 2), 3e38, dtype=torch.float32), origin_id="o", task="a")
    with pytest.raises(tpv.InvalidVectorError, match="overflowed"):
        _ = a + a


def test_rows_must_match_submodules() -> None:
    """A row count that is not num_virtual_tokens x submodules is refused."""
    with pytest.raises(tpv.InvalidVectorError, match="multiple"):
        tpv.TaskPromptVector.from_tensor(torch.ones(3, 4), origin_id="o", task="a", num_transformer_submodules=2)
    with pytest.raises(tpv.InvalidVectorError, match="does not match"):
        tpv.TaskPromptVector.from_tensor(torch.ones(4, 4), origin_id="o", task="a", num_virtual_tokens=3)


def test_repr_and_describe_name_the_vector() -> None:
    """repr/describe show terms, shape, dtype, origin and model."""
    a = vec(torch.ones(3, 4), "sst2")
    assert "sst2" in repr(a) and "(3, 4)" in repr(a) and ORIGIN.id in a.describe()


def test_allclose_and_to() -> None:
    """allclose tolerates rounding; .to changes the dtype."""
    a = vec(torch.ones(3, 4))
    assert a.allclose(a + 1e-12 * vec(torch.ones(3, 4)) - 1e-12 * vec(torch.ones(3, 4)))
    assert a.to(torch.float32).dtype == torch.float32


# -- model identity and display -------------------------------------------------------------------------------------


def test_a_converted_packaged_folder_is_recorded_under_the_packaged_name(tmp_path: Path) -> None:
    """A vector labelled with the folder tpv converted a packaged model into combines with one labelled by name."""
    import json

    from tests.tiny_models import build_tiny
    from tpv.models import model_name

    folder = tmp_path / "models" / "tiny-packaged"
    model, _ = build_tiny("llama")
    model.save_pretrained(folder)
    (folder / "tpv_source.json").write_text(json.dumps({"source": {"name": "tiny-packaged"}}))
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(folder)
    assert model_name(again) == "tiny-packaged"  # not the cache path
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0, base_model="tiny-packaged")
    by_path = tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="a", base_model=str(folder))
    by_name = tpv.TaskPromptVector.from_prompts(o.tensor - 1, o, task="b")
    assert by_path.base_model == "tiny-packaged"
    assert dict((by_path + by_name).terms) == {"a": 1.0, "b": 1.0}


def test_with_base_model_relabels_explicitly() -> None:
    """Two names of one model refuse to combine until one is relabelled; values, origin and terms are kept."""
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=0, base_model="org/model")
    a = tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="a")
    b = tpv.TaskPromptVector.from_prompts(o.tensor - 1, o, task="b", base_model="/copies/model")
    with pytest.raises(tpv.IncompatibleVectorsError, match="different base models"):
        _ = a + b
    relabelled = b.with_base_model("org/model")
    assert torch.equal(relabelled.tensor, b.tensor) and dict(relabelled.terms) == {"b": 1.0}
    assert dict((a + relabelled).terms) == {"a": 1.0, "b": 1.0}
    moved = o.with_base_model("other")
    assert moved.id == o.id and moved.base_model == "other" and torch.equal(moved.tensor, o.tensor)


def test_notebook_displays_name_what_matters() -> None:
    """The HTML and pretty displays of vectors and origins show terms, shape, norm, origin and model (escaped)."""
    o = tpv.Origin.gaussian(num_virtual_tokens=2, token_dim=4, seed=3, base_model="m<1>")
    v = 2 * tpv.TaskPromptVector.from_prompts(o.tensor + 1, o, task="sst2")
    page = v._repr_html_()
    assert "{sst2: 2}" in page and "m&lt;1&gt;" in page and o.id in page and f"{v.norm():.4g}" in page
    assert "seed 3" in o._repr_html_()
    printed: list[str] = []

    class Printer:  # the one method of IPython's pretty printer that _repr_pretty_ calls
        def text(self, s: str) -> None:
            printed.append(s)

    v._repr_pretty_(Printer(), False)
    assert printed[0].startswith("TaskPromptVector") and "2 x 4 (2 virtual tokens)" in printed[0]
