import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# "ci" is derandomized so a clean clone always runs the same examples; "dev" explores more.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest runs two workers on two cores (pyproject's addopts): one torch thread each, and one for every process a
    # test starts, since two OpenMP pools on two cores wait on each other (studies ran 4-5x slower so)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def tiny_denoiser(vocab_size=7, seq_len=12, seed=0, tokenizer=None, **sizes):
    """A DSLDenoiser small enough for a training step in milliseconds (no dropout, so steps are deterministic)."""
    from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser

    config = dict(hidden=32, cond_dim=16, n_blocks=1, n_heads=2, dropout=0.0) | sizes
    return DSLDenoiser.build(DiTConfig(vocab_size=vocab_size, seq_len=seq_len, **config), ConverterConfig(anchor_dim=8),
                             seed=seed, tokenizer=tokenizer)


@pytest.fixture
def make_denoiser():
    """The :func:`tiny_denoiser` factory, for tests that build models."""
    return tiny_denoiser


def taught_pair(vocab_size=5, seq_len=6, anchor_dim=4, frozen=True, dropout=0.0):
    """``(hmm, model)``: an exact HMM and a tiny DSLDenoiser reading evidence through the HMM's anchors, frozen unless
    ``frozen=False`` (a teacher needs them frozen)."""
    from snrpaths.backends import ConverterConfig, DiTConfig, DSLDenoiser, ExactHMM

    hmm = ExactHMM.random(3, vocab_size, seq_len, seed=1, dim=anchor_dim)
    backbone = DiTConfig(vocab_size=vocab_size, seq_len=seq_len, hidden=32, cond_dim=16, n_blocks=1, n_heads=2,
                         dropout=dropout)
    model = DSLDenoiser.build(backbone, ConverterConfig(anchor_dim=anchor_dim, learn_anchors=not frozen), seed=0)
    with torch.no_grad():
        model.converter.anchor_weight.copy_(hmm.table.anchors)
    return hmm, model


@pytest.fixture
def make_taught():
    """The :func:`taught_pair` factory: an exact teacher and a model that can learn from it."""
    return taught_pair


#: One line of Hamlet, the text of the tiny corpora that training and CLI tests write (17 distinct characters).
HAMLET = "to be or not to be that is the question whether tis nobler in the mind to suffer\n"


@pytest.fixture(scope="session")
def write_corpus():
    """``write_corpus(folder, repeats, text=HAMLET)``: a corpus folder with document ``k`` holding ``text`` repeated
    ``repeats[k]`` times; returns the folder."""
    def write(folder, repeats, text=HAMLET):
        folder.mkdir(parents=True)
        for k, count in enumerate(repeats):
            (folder / f"doc{k}.txt").write_text(text * count)
        return folder
    return write


@pytest.fixture
def one_thread():
    """One torch thread for tests of many small tensor ops: faster, and far faster on a loaded 2-core machine, where
    two intra-op threads wait on each other (an AR run of the exact HMM took 10.6 s with two, 0.3 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
