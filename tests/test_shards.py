"""Sharded sampling changes no sample: chunks of one seeded run are the rows of that run (the torchrun case, two
processes gathered on rank 0, runs in tests/test_cli_model.py)."""

import pytest
import torch

from snrpaths import SNRPathError, SNRTypeError, ShapeError, parse_path, sample, sample_sharded
from snrpaths.backends.toy import ExactToy
from snrpaths.testing.denoisers import Counting

TOY = ExactToy.markov(3, 4, seed=3)
PATH = parse_path("ramp(2) >> mdm(3, remask='confidence')")


@pytest.mark.parametrize("seed", [0, 7])
def test_chunks_are_the_rows_of_one_seeded_run(seed):
    whole = sample(PATH, TOY, batch=7, seed=seed)
    chunked = sample_sharded(PATH, TOY, 7, seed=seed, chunk=3)
    assert torch.equal(chunked.tokens, whole.tokens) and torch.equal(chunked.calls, whole.calls)
    assert torch.equal(sample_sharded(PATH, TOY, 2, seed=seed).tokens, whole.tokens[:2])  # any n: the same sample i


def test_a_prompt_per_sample_follows_its_row_into_its_chunk():
    prompt = torch.tensor([[0, -1, -1, -1], [-1, 1, -1, -1], [-1, -1, 2, -1], [-1, -1, -1, 0], [1, 1, -1, -1]])
    whole = sample(PATH, TOY, seed=2, prompt=prompt)
    assert torch.equal(sample_sharded(PATH, TOY, 5, seed=2, prompt=prompt, chunk=2).tokens, whole.tokens)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(n=0), SNRPathError, r"'n' must be a positive integer \(got 0\)"),
    (dict(n=2.0), SNRTypeError, r"'n' must be a positive integer \(got 2.0\)"),
    (dict(chunk=0), SNRPathError, r"'chunk' must be a positive integer \(got 0\)"),
    (dict(seed=-1), SNRPathError, r"'seed' must be an integer in \[0, 2\*\*64 - 1\]"),
    (dict(prompt=torch.full((2, 4), -1)), ShapeError, "'prompt' has 2 rows for n=3 samples"),
])
def test_bad_arguments_are_refused_before_any_work(kwargs, error, message):
    counting, args = Counting(TOY), dict(n=3) | kwargs
    with pytest.raises(error, match=message):
        sample_sharded(PATH, counting, args.pop("n"), **args)
    assert counting.calls == 0
