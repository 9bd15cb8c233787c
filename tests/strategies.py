"""Hypothesis strategies for the algebraic laws: vectors over small-integer float tensors (exact arithmetic)."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import tpv

ROWS, DIM = 3, 4
ORIGIN = tpv.Origin.gaussian(num_virtual_tokens=ROWS, token_dim=DIM, seed=0)
TASKS = ("sst2", "imdb", "trec", "mnli")

small_ints = st.integers(min_value=-8, max_value=8)
scalars = st.integers(min_value=-4, max_value=4).map(float)
nonzero_scalars = st.sampled_from([-4.0, -2.0, -1.0, 1.0, 2.0, 4.0])


@st.composite
def vectors(draw: st.DrawFn) -> tpv.TaskPromptVector:
    """A vector on ORIGIN with small-integer values and one or two terms with small-integer coefficients."""
    values = draw(st.lists(small_ints, min_size=ROWS * DIM, max_size=ROWS * DIM))
    names = draw(st.lists(st.sampled_from(TASKS), min_size=1, max_size=2, unique=True))
    coefs = draw(st.lists(st.integers(-3, 3).filter(bool).map(float), min_size=len(names), max_size=len(names)))
    tensor = torch.tensor(values, dtype=torch.float64).reshape(ROWS, DIM)
    return tpv.TaskPromptVector.from_tensor(tensor, origin_id=ORIGIN.id, terms=dict(zip(names, coefs)))
