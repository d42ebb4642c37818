import math

import pytest
import torch

from snrpaths import SNRPathError, SNRState, SNRTypeError, ShapeError, TokenTable
from snrpaths.state import UNKNOWN

TABLE = TokenTable.random(5, 3, seed=0)


def test_masked_state():
    s = SNRState.masked(2, 4, TABLE)
    s.validate(TABLE)
    assert s.batch == 2 and s.seq_len == 4 and bool(s.masked_positions.all()) and not bool(s.clean.any())
    assert bool((s.tokens == UNKNOWN).all()) and s.z.shape == (2, 4, 3)


def test_prompt_fixes_given_positions():
    s = SNRState.from_prompt(torch.tensor([3, -1, -1, 0]), TABLE, batch=2)
    s.validate(TABLE)
    assert s.fixed.tolist() == [[True, False, False, True]] * 2
    assert s.tokens[0].tolist() == [3, UNKNOWN, UNKNOWN, 0]
    assert s.confidence[0].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert bool(torch.isinf(s.gamma[:, [0, 3]]).all()) and bool((s.z == 0).all())


def test_from_tokens_corrupts_at_the_given_gammas():
    tokens = torch.tensor([[1, 2, 3]])
    gamma = torch.tensor([[0.0, 2.0, math.inf]], dtype=torch.float64)
    s = SNRState.from_tokens(tokens, gamma, TABLE, torch.Generator().manual_seed(0))
    s.validate(TABLE)
    assert s.tokens.tolist() == [[UNKNOWN, UNKNOWN, 3]] and not bool(s.fixed.any())
    assert bool((s.z[0, 0] == 0).all()) and bool((s.z[0, 1] != 0).all())


def test_bad_states_are_named():
    with pytest.raises(ShapeError, match="'tokens' must have shape"):
        SNRState(gamma=torch.zeros(1, 2), z=torch.zeros(1, 2, 3), tokens=torch.zeros(1, 3, dtype=torch.int64),
                 fixed=torch.zeros(1, 2, dtype=torch.bool), confidence=torch.zeros(1, 2))
    with pytest.raises(SNRPathError, match=r"valid ids are in \[0, 4\]"):
        SNRState.from_prompt(torch.tensor([7, -1]), TABLE)
    with pytest.raises(ShapeError, match=r"\[L\] or \[B, L\]"):
        SNRState.from_prompt(torch.zeros(1, 1, 2, dtype=torch.int64), TABLE)
    with pytest.raises(ShapeError, match="3 rows"):
        SNRState.from_prompt(torch.zeros(3, 2, dtype=torch.int64), TABLE, batch=2)
    with pytest.raises(SNRPathError, match=r"'batch' must be a positive integer \(got 0\)"):
        SNRState.masked(0, 3, TABLE)
    with pytest.raises(SNRTypeError, match="'seq_len' must be a positive integer"):
        SNRState.masked(1, 3.0, TABLE)
    broken = SNRState.masked(1, 2, TABLE)
    broken = SNRState(gamma=broken.gamma, z=broken.z, tokens=broken.tokens, fixed=torch.tensor([[True, False]]),
                      confidence=broken.confidence)
    with pytest.raises(SNRPathError, match="fixed"):
        broken.validate(TABLE)
