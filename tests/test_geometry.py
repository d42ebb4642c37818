import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from snrpaths import SNRPathError, ShapeError, SNRTypeError, TokenTable
from snrpaths.testing import strategies as sst


@given(table=sst.token_tables(vocab_sizes=st.integers(1, 50), dims=st.integers(1, 16)))
def test_random_tables_have_unit_norm(table):
    assert torch.allclose(table.anchors.norm(dim=1), torch.ones(table.vocab_size, dtype=torch.float64), atol=1e-12)
    assert table.is_unit_norm


def test_random_is_reproducible_and_seeded():
    assert torch.equal(TokenTable.random(5, 3, seed=7).anchors, TokenTable.random(5, 3, seed=7).anchors)
    assert not torch.equal(TokenTable.random(5, 3, seed=7).anchors, TokenTable.random(5, 3, seed=8).anchors)


def test_random_is_uniform_on_the_sphere():
    """The mean of n uniform unit vectors in R^3 has per-coordinate sd 1/sqrt(3n): 5 sd is the budget."""
    a = TokenTable.random(30_000, 3, seed=0).anchors
    assert float(a.mean(0).abs().max()) < 5 / math.sqrt(3 * 30_000)
    assert torch.allclose(a.T @ a / 30_000, torch.eye(3, dtype=torch.float64) / 3, atol=5 * 0.3 / math.sqrt(30_000))


def test_orthonormal_and_min_distance():
    t = TokenTable.orthonormal(3, 5)
    assert torch.equal(t.anchors @ t.anchors.T, torch.eye(3, dtype=torch.float64))
    assert math.isclose(t.min_distance(), math.sqrt(2), rel_tol=1e-12)
    assert TokenTable.from_embeddings(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])).min_distance() == 0.0
    assert math.isclose(TokenTable.random(300, 4).min_distance(chunk=7), TokenTable.random(300, 4).min_distance())


def test_from_embeddings_normalises_rows_and_keeps_direction():
    e = np.array([[3.0, 4.0], [0.0, -2.0]])
    t = TokenTable.from_embeddings(e)
    assert torch.allclose(t.anchors, torch.tensor([[0.6, 0.8], [0.0, -1.0]], dtype=torch.float64))
    assert TokenTable.from_embeddings(torch.ones(2, 2, dtype=torch.float32)).anchors.dtype == torch.float32


def test_bad_tables_are_rejected_with_the_row_named():
    with pytest.raises(SNRPathError, match=r"rows \[1\] are zero"):
        TokenTable.from_embeddings(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(SNRPathError, match=r"rows \[0\] contain NaN"):
        TokenTable.from_embeddings(torch.tensor([[math.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ShapeError, match=r"\[V, d\]"):
        TokenTable.from_embeddings(torch.ones(3))
    with pytest.raises(SNRPathError, match="unit norm"):
        TokenTable(torch.tensor([[2.0, 0.0]]))
    with pytest.raises(SNRPathError, match="dim >= vocab_size"):
        TokenTable.orthonormal(4, 3)
    with pytest.raises(SNRPathError, match="positive integer"):
        TokenTable.random(0, 3)
    with pytest.raises(SNRTypeError):
        TokenTable.from_embeddings([[1.0]])


def test_check_tokens_names_the_valid_range():
    t = TokenTable.random(4, 2)
    t.check_tokens("tokens", torch.tensor([0, 3]))
    with pytest.raises(SNRPathError, match=r"\[0, 4\].*\[0, 3\]"):
        t.check_tokens("tokens", torch.tensor([0, 4]))
    with pytest.raises(SNRTypeError, match="integer"):
        t.check_tokens("tokens", torch.tensor([0.0]))


def test_with_norms_keeps_norms_for_demonstrations():
    t = TokenTable.with_norms(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    assert not t.is_unit_norm and float(t.anchors[0, 0]) == 2.0
