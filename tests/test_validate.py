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
