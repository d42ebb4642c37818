"""Figures of paths, traces and denoisers (matplotlib only).

Every function returns a :class:`matplotlib.figure.Figure` and never shows it. Figures are made without pyplot, so
they hold no global state and need no closing; save one with :func:`save` (atomic) or ``fig.savefig``, or let
Jupyter display it.

* :func:`gamma_plane` (also ``path.plot()``): trajectories in the ``(gamma_i, gamma_j)`` plane on compactified
  axes ``gamma / (1 + gamma)``, several runs overlaid.
* :func:`generation_order`: positions x steps heatmaps of how much information each position holds, with the
  number of positions each step revealed.
* :func:`posterior_field`: the posterior over a 2-D evidence space of an exact toy (the paper's two-bit toy;
  a token table in the plane) with the localization drift and paths through it.
* :func:`calibration`: a reliability diagram with ECE on held-out data, and the self-correction view of ReMDM
  traces (numbers from :func:`reliability` and :func:`self_correction`).
* :func:`nfe_curves`: quality against denoiser calls, one curve per sampler.
* :func:`evidence`: a denoiser's cross-entropy against SNR beside the context-free Bayes rule's
  (:func:`snrpaths.diagnostics.evidence_curve`).
* :func:`trajectory`: a denoiser's KL to the exact posterior at every call of a path, stages shaded
  (:func:`snrpaths.diagnostics.trajectory`).

A bare path has no trace until it runs: the plots that take paths run them on the ``denoiser=...`` they are given
(an exact toy draws the path itself, see :func:`gamma_plane`); the plots never choose a backend themselves.
"""

from ..path import provide
from ._common import compactify, save
from .calibration import Reliability, SelfCorrection, calibration, reliability, self_correction
from .curves import nfe_curves
from .evidence import evidence
from .field import posterior_field
from .order import generation_order, order_image, revealed_per_step
from .plane import PlaneSegments, gamma_plane, plane_segments
from .trajectory import trajectory

provide("plot", gamma_plane)  # Path.plot

__all__ = [
    "PlaneSegments",
    "Reliability",
    "SelfCorrection",
    "calibration",
    "compactify",
    "evidence",
    "gamma_plane",
    "generation_order",
    "nfe_curves",
    "order_image",
    "plane_segments",
    "posterior_field",
    "reliability",
    "revealed_per_step",
    "save",
    "self_correction",
    "trajectory",
]
