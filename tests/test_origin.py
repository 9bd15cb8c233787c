"""Tests of tpv.origin: reproducible inits, content ids and refusals."""

from __future__ import annotations

import pytest
import torch

import tpv

EMB = torch.randn(7000, 6, generator=torch.Generator().manual_seed(0))  # (vocab, dim)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: tpv.Origin.gaussian(5, 6, seed=s),
        lambda s: tpv.Origin.sample_vocab(EMB, 5, seed=s),
        lambda s: tpv.Origin.first_n_vocab(EMB, 5, seed=s),
    ],
    ids=["gaussian", "sample-vocab", "first-n-vocab"],
)
def test_same_seed_same_origin_other_seed_other_origin(make: object) -> None:
    """The same seed and inputs give the bit-identical origin and id; another seed another one."""
    a, b, c = make(1), make(1), make(2)  # type: ignore[operator]
    assert a == b and a.id == b.id and torch.equal(a.tensor, b.tensor)
    assert a.id != c.id


def test_global_rng_is_untouched() -> None:
    """Drawing an origin does not consume the global torch RNG."""
    torch.manual_seed(3)
    want = torch.rand(1)
    torch.manual_seed(3)
    tpv.Origin.gaussian(5, 6, seed=0)
    assert torch.equal(torch.rand(1), want)


def test_vocab_inits_are_embedding_rows() -> None:
    """sample-vocab and first-n-vocab rows are rows of the embedding matrix; first-n within the first n, distinct."""
    o = tpv.Origin.first_n_vocab(EMB, 20, seed=0, n=100)
    rows = o.tensor
    for r in rows:
        idx = torch.nonzero((r == EMB).all(dim=1)).flatten()
        assert len(idx) == 1 and int(idx[0]) < 100
    ids = {int(torch.nonzero((r == EMB).all(dim=1))[0]) for r in rows}
    assert len(ids) == 20
    s = tpv.Origin.sample_vocab(EMB, 20, seed=0)
    assert all(bool((r == EMB).all(dim=1).any()) for r in s.tensor)
    assert o.params["n"] == 100 and s.params["vocab_size"] == 7000


def test_text_init_tiles_the_token_ids() -> None:
    """The text init repeats the text's token embeddings to the prompt length (PEFT's TEXT init)."""
    o = tpv.Origin.from_text(EMB, [4, 9], 5, text="hi")
    assert torch.equal(o.tensor, EMB[[4, 9, 4, 9, 4]])
    assert o.init == "text" and o.seed is None and o.params["text"] == "hi"


def test_gaussian_std_and_shape() -> None:
    """gaussian has the requested std and (tokens * submodules, dim) rows."""
    o = tpv.Origin.gaussian(100, 64, seed=0, std=0.5, num_transformer_submodules=2)
    assert o.shape == (200, 64)
    assert abs(float(o.tensor.std()) - 0.5) < 0.02


def test_id_is_content_hash_including_dtype() -> None:
    """The id changes with the values and the dtype, not with metadata."""
    t = torch.ones(2, 3)
    assert tpv.Origin.from_tensor(t).id == tpv.Origin.from_tensor(t, base_model="m").id
    assert tpv.Origin.from_tensor(t).id != tpv.Origin.from_tensor(t.double()).id
    assert tpv.Origin.from_tensor(t).id != tpv.Origin.from_tensor(t * 2).id


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: tpv.Origin.gaussian(0, 6), "num_virtual_tokens"),
        (lambda: tpv.Origin.gaussian(5, 6, seed=-1), "seed"),
        (lambda: tpv.Origin.gaussian(5, 6, std=0), "std"),
        (lambda: tpv.Origin.sample_vocab(torch.ones(5), 3), "embedding matrix"),
        (lambda: tpv.Origin.from_text(EMB, [], 3), "empty"),
        (lambda: tpv.Origin.from_text(EMB, [99999], 3), "outside the vocabulary"),
        (lambda: tpv.Origin(torch.ones(2, 2), init="bogus"), "init must be one of"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_refused(call: object, needle: str) -> None:
    """Each bad argument raises a TPVError naming it."""
    with pytest.raises(tpv.TPVError, match=needle):
        call()  # type: ignore[operator]


def test_origin_is_immutable() -> None:
    """Origins cannot be changed after creation."""
    o = tpv.Origin.gaussian(2, 2)
    with pytest.raises(AttributeError):
        o.seed = 3  # type: ignore[misc]
