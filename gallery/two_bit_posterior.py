"""
==============================================
The two-bit toy and a token table in the plane
==============================================

Left: the paper's two-bit toy, uniform on the sequences (0, 0) and (1, 1), with anchors -1 and +1 on a line, so the
evidence of the two positions is a point ``(z_0, z_1)`` of the plane. The posterior odds of (1, 1) are
``exp(2 (z_0 + z_1))``: the decision boundary is the line ``z_0 + z_1 = 0``, not the axes. A noisy draft at
``(-0.6, 1.5)`` is locally inconsistent (position 0 alone points to token 0) but lies on the (1, 1) side, and the
drift of stochastic localization, the posterior mean ``x̂(z)``, pulls it across ``z_0 = 0`` to the valid solution;
runs with noise mostly follow. Right: one token with five anchors on the unit circle. The direction of ``z`` picks
the token (the regions are wedges) and its length sets how sure the posterior is (the colour deepens outwards);
runs from ``[MASK]`` (``z = 0``) choose a direction, then move out along it.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` uses a coarser grid (for the tests).
import argparse
import math
import pathlib

import torch
from matplotlib.figure import Figure

from snrpaths import TokenTable
from snrpaths.backends.toy import ExactToy
from snrpaths.plot import posterior_field, save

parser = argparse.ArgumentParser(description="The two-bit toy and a token table in the plane")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNG into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
GRID = 61 if args.quick else 241

# %%
# Two toys: the paper's two-bit joint, and one token with five anchors in the plane under a uniform prior.
two_bit = ExactToy.two_bit()
angles = torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5 + 0.3
in_plane = ExactToy(torch.full((5,), 0.2, dtype=torch.float64),
                    TokenTable.from_embeddings(torch.stack([angles.cos(), angles.sin()], dim=1)))

# %%
# Draw both side by side: ``posterior_field`` draws into the axes it is given.
fig = Figure(figsize=(10.5, 7.0), layout="constrained")
left, right = fig.subplots(1, 2)
posterior_field(two_bit, ax=left, resolution=GRID, seed=SEED)
posterior_field(in_plane, ax=right, resolution=GRID, runs=5, seed=SEED)
print("wrote", save(fig, args.out / "two_bit_posterior.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.backends.toy.ExactToy.two_bit`, `snrpaths.backends.toy.ExactToy`
#    - `snrpaths.TokenTable.from_embeddings`
#    - `snrpaths.plot.posterior_field`
#    - `snrpaths.plot.save`
#    - `matplotlib.figure.Figure.subplots`
