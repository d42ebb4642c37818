"""
============================================
Every built-in sampler in the (γ₀, γ₁) plane
============================================

A sampler is a route through per-token SNR space. This figure runs every built-in sampler of snrpaths on a
two-token sequence and draws the SNRs ``(γ₀, γ₁)`` of the two positions after every step, on axes compactified
by ``γ / (1 + γ)`` so that ``[MASK]`` (γ = 0) and a clean token (γ = ∞) are the edges of the square. Twelve runs of
each sampler are overlaid. Autoregression runs along the edges, masked diffusion (MDLM) jumps from corner to
corner, ReMDM adds red jumps back to ``[MASK]``, a continuous ramp climbs the diagonal, and the DSL hybrid climbs
the diagonal, then jumps. The remasking rates ``eta`` are raised above ReMDM's OpenWebText defaults so that a
remask shows up in a dozen two-token runs; the hybrids ramp to ``gamma_max = 4`` so that the hand-over is visible:
at the default ``gamma_max = 40`` the ramp ends at 40/41 of the way, right next to the clean corner (last panel).
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` draws fewer runs (used by the tests).
import argparse
import pathlib

from snrpaths import Path
from snrpaths.backends.toy import ExactToy
from snrpaths.plot import gamma_plane, save

parser = argparse.ArgumentParser(description="Every built-in sampler in the (gamma_0, gamma_1) plane")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNG into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
RUNS = 3 if args.quick else 12
T = 8 if args.quick else 16

# %%
# The samplers: each is a named composition of the four primitives (reveal, remask, ramp, switch).
samplers = {
    "AR": Path.ar(),
    "random-order AR": Path.roar(),
    "MDLM": Path.mdm(T),
    "MDLM, cosine clock": Path.mdm(T, schedule="cosine"),
    "ReMDM cap": Path.mdm(T, remask="cap", eta=0.1),
    "ReMDM rescale": Path.mdm(T, remask="rescale", eta=0.3),
    "ReMDM confidence": Path.mdm(T, remask="confidence"),
    "ReMDM loop": Path.mdm(T, remask="loop", eta=0.2),
    "continuous ramp": Path.ramp(T) >> Path.switch("commit"),
    "DSL hybrid": Path.hybrid(T // 2, T // 2, gamma_max=4.0),
    "hybrid, switch to [MASK]": Path.hybrid(T // 2, T // 2, gamma_max=4.0, switch="mask"),
    "DSL hybrid, default gamma_max": Path.hybrid(T // 2, T // 2),
}

# %%
# Run each one on an exact toy (the Bayes denoiser of a binary Markov chain, L = 2: the paper's two-token picture) with
# a trace, and draw the plane.
fig = gamma_plane(samplers, positions=(0, 1), denoiser=ExactToy.markov(2, 2, seed=0), runs=RUNS, seed=SEED)
print("wrote", save(fig, args.out / "gamma_plane_builtin.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.Path.ar`, `snrpaths.Path.roar`, `snrpaths.Path.mdm`, `snrpaths.Path.ramp`,
#      `snrpaths.Path.switch`, `snrpaths.Path.hybrid`
#    - `snrpaths.plot.gamma_plane`
#    - `snrpaths.plot.save`
