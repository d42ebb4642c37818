"""
==============================
A custom sampler in five lines
==============================

A sampler is a value built from four primitives, so a new one takes a few lines and runs on any denoiser. This one
writes the first half of a sequence left to right, and meanwhile gives the second half soft evidence with a
continuous ramp, then commits that half's tokens most-confident first. The two halves share every denoiser call
(``|`` runs paths side by side on disjoint positions). In the ``(γ_2, γ_5)`` plane, one position from each half,
the route is new: position 5 climbs continuously while position 2 jumps to clean partway up, a path that is neither
AR, masked diffusion nor a ramp. The generation order below it shows the whole sequence.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` draws fewer runs (for the tests).
import argparse
import pathlib

from snrpaths import Path
from snrpaths.backends.toy import ExactToy
from snrpaths.plot import gamma_plane, generation_order, save

parser = argparse.ArgumentParser(description="A custom sampler in five lines")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNGs into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
RUNS = 3 if args.quick else 12

# %%
# The sampler: five lines.
left_to_right = Path.on(slice(0, 4), Path.ar())                   # positions 0-3: one token per step, in order
soft_then_sure = Path.on(slice(4, 8),                             # positions 4-7, at the same time:
                         Path.ramp(4, gamma_max=4.0)              #   soft evidence rising for 4 steps,
                         >> Path.reveal(count=1, order="confidence"))  # then the surest token first
custom = left_to_right | soft_then_sure

# %%
# Its runs in the plane of one position from each half, and one run's generation order, on an exact toy of eight
# binary tokens (a Markov chain's Bayes denoiser: the figures show the path, not a model's quirks).
print(repr(custom))
toy = ExactToy.markov(2, 8, seed=0)
plane = gamma_plane({"custom sampler": custom}, positions=(2, 5), denoiser=toy, runs=RUNS, seed=SEED,
                    title="A custom sampler in the $(\\gamma_2, \\gamma_5)$ plane: AR on 0-3 beside ramp-then-reveal "
                          "on 4-7")
print("wrote", save(plane, args.out / "custom_sampler_plane.png", dpi=110))
order = generation_order({"custom sampler": custom}, denoiser=toy, seed=SEED)
print("wrote", save(order, args.out / "custom_sampler_order.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.Path.on`, `snrpaths.Path.ar`, `snrpaths.Path.ramp`, `snrpaths.Path.reveal`
#    - ``|`` (paths side by side on disjoint positions), ``>>`` (one path after another)
#    - `snrpaths.plot.gamma_plane`, `snrpaths.plot.generation_order`
#    - `snrpaths.plot.save`
