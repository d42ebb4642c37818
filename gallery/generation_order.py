"""
============================
Token-level generation order
============================

How information enters the positions of a sequence, step by step: the paper's figure of autoregression, masked
diffusion, continuous diffusion and DSL side by side. Each row is one run of one sampler on the same exact toy
(a binary Markov chain of twelve tokens); a cell is one position after one step, white where the position is
``[MASK]``, blue where it holds soft evidence at a finite SNR, near-black once it is a clean token. AR fills a
staircase; masked diffusion reveals positions in a random order and each one jumps straight from white to black; the
continuous ramp raises every position together and commits them all at the end; the DSL hybrid ramps first (to the
orange line), then reveals tokens from that soft evidence as masked diffusion does. Two samplers of today's
masked-diffusion LMs follow: confidence-threshold reveals (Fast-dLLM) take every position the denoiser is sure
enough of, so the number per step (on top of each column) varies and the run stops early, and LLaDA's
semi-autoregressive blocks run masked diffusion on one span after another.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` uses a shorter sequence (for the tests).
import argparse
import pathlib

from snrpaths import Path
from snrpaths.backends.toy import ExactToy
from snrpaths.plot import generation_order, save

parser = argparse.ArgumentParser(description="Token-level generation order")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNG into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
L = 6 if args.quick else 12

# %%
# Six samplers at (about) the same budget of L steps.
samplers = {
    "autoregressive": Path.ar(),
    "masked diffusion": Path.mdm(L),
    "continuous ramp": Path.ramp(L) >> Path.switch("commit"),
    "DSL hybrid": Path.hybrid(L // 2, L // 2),
    "confidence threshold 0.8": Path.reveal(L, order="confidence", threshold=0.8),
    "semi-AR blocks": Path.blocks(3, Path.reveal(L // 3, order="confidence", schedule="linear")),
}

# %%
# Run each on an exact toy (the Bayes denoiser of a binary Markov chain of L tokens) with a trace and draw run 0.
fig = generation_order(samplers, denoiser=ExactToy.markov(2, L, seed=0), seed=SEED)
print("wrote", save(fig, args.out / "generation_order.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.Path.ar`, `snrpaths.Path.mdm`, `snrpaths.Path.ramp`, `snrpaths.Path.switch`,
#      `snrpaths.Path.hybrid`, `snrpaths.Path.reveal`, `snrpaths.Path.blocks`
#    - `snrpaths.plot.generation_order`
#    - `snrpaths.plot.save`
