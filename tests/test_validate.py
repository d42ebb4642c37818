"""One rule for bad values wherever they are declared: a wrong type is an SNRTypeError, a value of the right type
out of range an SNRPathError naming the argument (snrpaths.validate)."""

import re

import numpy as np
import pytest
import torch

from snrpaths.backends import ExactToy
from snrpaths.diagnostics import evidence_curve, unigram_prior
from snrpaths.errors import SNRPathError, SNRTypeError
from snrpaths.objectives import DSL, MDLM
from snrpaths.train import TrainConfig

TOY = ExactToy.markov(3, 4, seed=1)
WINDOWS = TOY.sample(4, torch.Generator().manual_seed(0))


def curve(**change):
    kwargs = dict(prior=unigram_prior(WINDOWS, 3)) | change
    return evidence_curve(TOY, WINDOWS, (1.0,), **kwargs)


# (build, wrong type, out of range): the argument each changes is named by the keyword
CASES = [
    (TrainConfig, dict(steps=2.0), dict(steps=0)),
    (TrainConfig, dict(seed=1.5), dict(seed=-1)),
    (TrainConfig, dict(lr="1e-3"), dict(lr=-1.0)),
    (DSL, dict(roar_fraction="half"), dict(roar_fraction=1.5)),
    (MDLM, dict(eps=None), dict(eps=0)),
    (curve, dict(batch=2.0), dict(batch=0)),
    (lambda **kw: unigram_prior(WINDOWS, **kw), dict(vocab_size=3.0), dict(vocab_size=0)),
]


@pytest.mark.parametrize(("build", "wrong_type", "out_of_range"), CASES)
def test_a_wrong_type_and_a_bad_value_raise_the_rule_s_errors_naming_the_argument(build, wrong_type, out_of_range):
    (name, value), = out_of_range.items()
    with pytest.raises(SNRTypeError, match=f"'{name}' must be"):
        build(**wrong_type)
    with pytest.raises(SNRPathError, match=rf"'{name}' must .* \(got {re.escape(repr(value))}\)") as caught:
        build(**out_of_range)
    assert not isinstance(caught.value, SNRTypeError)


def test_numpy_scalars_become_python_values():
    config = TrainConfig(steps=np.int64(3), lr=np.float32(0.5), calibrate=np.bool_(False))
    assert (type(config.steps), type(config.lr), config.calibrate) == (int, float, False)


def _seeded_builders():
    """Every public constructor or function that takes a seed, core and backends, as ``seed -> call``."""
    from snrpaths import Path, TokenTable, sample, sample_sharded
    from snrpaths.backends import Converter, ConverterConfig, DiTConfig, DSLDenoiser, ExactHMM
    from snrpaths.nll import Piecewise, roar
    from snrpaths.streams import Streams

    ok = TOY.sample(1, torch.Generator().manual_seed(0))
    return {
        "TokenTable.random": lambda seed: TokenTable.random(3, 2, seed=seed),
        "ExactToy.markov": lambda seed: ExactToy.markov(2, 2, seed=seed),
        "ExactToy.random": lambda seed: ExactToy.random(2, 2, seed=seed),
        "ExactHMM.random": lambda seed: ExactHMM.random(2, 2, 3, seed=seed),
        "ExactHMM.entropy_rate": lambda seed: ExactHMM.random(2, 2, 3).entropy_rate(4, seed=seed),
        "Converter": lambda seed: Converter(3, ConverterConfig(anchor_dim=2), seed=seed),
        "DSLDenoiser.build": lambda seed: DSLDenoiser.build(DiTConfig(3, seq_len=4, hidden=8, cond_dim=4, n_blocks=1,
                                                                      n_heads=2), seed=seed),
        "Streams": lambda seed: Streams(seed, [0]),
        "sample": lambda seed: sample(Path.ar(), TOY, seed=seed),
        "sample_sharded": lambda seed: sample_sharded(Path.ar(), TOY, 2, seed=seed),
        "roar": lambda seed: roar(TOY, ok, 1, seed=seed),
        "Piecewise.random": lambda seed: Piecewise.random(3, seed=seed),
        "evidence_curve": lambda seed: curve(seed=seed),
        "TrainConfig": lambda seed: TrainConfig(seed=seed),
    }


@pytest.mark.parametrize("name", sorted(_seeded_builders()))
def test_one_seed_rule_everywhere(name):
    """A seed is an integer in [0, 2**64 - 1] wherever one is taken: 1.9 never runs as seed 1, nor True as 1, and -1
    never folds onto 2**64 - 1."""
    build = _seeded_builders()[name]
    for wrong_type in (1.9, True, "0", None):
        with pytest.raises(SNRTypeError, match=r"'seed' must be an integer in \[0, 2\*\*64 - 1\]"):
            build(wrong_type)
    for out_of_range in (-1, 2**64):
        with pytest.raises(SNRPathError, match=r"'seed' must be an integer in \[0, 2\*\*64 - 1\]") as caught:
            build(out_of_range)
        assert not isinstance(caught.value, SNRTypeError)
    build(np.int64(3))
    build(2**64 - 1)


def test_backends_raise_the_core_s_families():
    """A wrong type is an SNRTypeError in the backends too, a wrong value an SNRPathError only."""
    from snrpaths.backends import ConverterConfig, DiTConfig, ExactHMM, load

    for build in (lambda: ExactToy.markov(2.0, 2), lambda: ExactToy.markov(2, 2, concentration="1"),
                  lambda: ExactToy.ended(3, 2, p_end="0.5"), lambda: ExactHMM.random(2, 2, 3, stationary=1),
                  lambda: ExactHMM.from_arrays(object(), [[1.0]], [[1.0]], 2), lambda: DiTConfig(3, dropout="0"),
                  lambda: ConverterConfig(anchor_dim=1.5), lambda: load(3), lambda: load("x", max_bytes=1.0)):
        with pytest.raises(SNRTypeError):
            build()
    for build in (lambda: ExactToy.markov(0, 2), lambda: ExactToy.ended(3, 2, p_end=1.0),
                  lambda: DiTConfig(3, dropout=1.0), lambda: ConverterConfig(head="soft")):
        with pytest.raises(SNRPathError) as caught:
            build()
        assert not isinstance(caught.value, SNRTypeError)
