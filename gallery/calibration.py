"""
===============================
Calibration and self-correction
===============================

Left: is the denoiser's confidence honest? Held-out sequences from an exact toy (a Markov chain, three tokens, six
positions) are masked at random, each denoiser predicts the hidden tokens, and predictions are binned by
confidence. The exact Bayes denoiser is calibrated (its curve follows the diagonal, ECE near 0); sharpening its
logits makes it over-confident (below the diagonal), flattening them under-confident (above). Right: what ReMDM's
remasking does. Each time a clean token is sent back to ``[MASK]``, the token that later replaces it is either the
same one or another; with the true joint as the reference, a change is judged by whether the final sequence became
more or less likely.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` uses little data (for the tests).
import argparse
import pathlib

import torch

from snrpaths import Path, sample
from snrpaths.backends.toy import ExactToy
from snrpaths.plot import calibration, save

parser = argparse.ArgumentParser(description="Calibration and self-correction")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNG into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
N = 200 if args.quick else 3_000
T = 8 if args.quick else 32
RUNS = 30 if args.quick else 300

toy = ExactToy.markov(3, 6, seed=1, concentration=0.5)
held_out = toy.sample(N, torch.Generator().manual_seed(SEED))


# %%
# Miscalibrated denoisers: any object with vocab_size, seq_len, table and logits(state) is a denoiser.
class Tempered:
    """The toy's posterior at temperature ``t``: ``t < 1`` sharpens it, ``t > 1`` flattens it."""

    def __init__(self, inner, t):
        self.inner, self.t = inner, t
        self.vocab_size, self.seq_len, self.table = inner.vocab_size, inner.seq_len, inner.table

    def logits(self, state):
        return self.inner.logits(state) / self.t


denoisers = {"exact Bayes denoiser": toy, "over-confident (logits x 2)": Tempered(toy, 0.5),
             "under-confident (logits / 2)": Tempered(toy, 2.0)}

# %%
# ReMDM runs with a trace (remasking rates raised above the OpenWebText defaults for a short toy run).
remdm = {f"ReMDM {policy}": sample(Path.mdm(T, remask=policy, **kw), toy, batch=RUNS, seed=SEED, trace=True)
         for policy, kw in (("cap", {"eta": 0.05}), ("confidence", {}), ("loop", {"eta": 0.1}))}

fig = calibration(denoisers, held_out, remdm, log_prob=toy.log_prob, seed=SEED)
print("wrote", save(fig, args.out / "calibration.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.backends.toy.ExactToy.markov`, `snrpaths.backends.toy.ExactToy.log_prob`
#    - `snrpaths.sample` with ``trace=True``, `snrpaths.Path.mdm`
#    - `snrpaths.plot.calibration` (numbers: `snrpaths.plot.reliability`, `snrpaths.plot.self_correction`)
#    - `snrpaths.plot.save`
