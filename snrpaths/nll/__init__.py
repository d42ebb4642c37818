"""Likelihoods along any path: the path-integral NLL, ROAR NLL and the masked-diffusion ELBO.

Three views of ``-log P(s)`` from one denoiser ``p(s_i | z)``:

* :func:`path_integral`: ``1/2 int_C E(s, gamma) . dgamma`` along a monotone per-token SNR curve ``C``
  (:class:`Joint`, :class:`Sequential`, :class:`RandomOrder`, :class:`Piecewise`, or any sampler ``Path`` whose
  route is monotone and ignores the evidence, as a :class:`SamplerCurve`), to infinite SNR or, with ``gamma_max``,
  to a finite SNR plus the endpoint term ``-log p(s | z(gamma_max))`` (``ENDPOINTS``);
* :func:`roar` and :func:`roar_steps`: ``-sum_j log p(s_sigma_j | s_sigma_<j)`` over random orders, or its random-step
  form ``-L E_{k, A, i} log p(s_i | s_A)``;
* :func:`mdm_elbo`: MDLM's continuous-time bound with the log-linear schedule.

Each returns an :class:`NLLEstimate` (nats per sequence, standard error, bits per token, denoiser calls spent).
"""

from ._common import NLLEstimate
from .curves import (
    Curve,
    Joint,
    Piecewise,
    RandomOrder,
    SamplerCurve,
    Sequential,
    as_curve,
    kappa,
    truncate,
)
from .endpoint import all_orders, mdm_elbo, roar, roar_steps
from .integral import CONTROLS, ENDPOINTS, path_integral

__all__ = [
    "CONTROLS",
    "ENDPOINTS",
    "Curve",
    "Joint",
    "NLLEstimate",
    "Piecewise",
    "RandomOrder",
    "SamplerCurve",
    "Sequential",
    "all_orders",
    "as_curve",
    "kappa",
    "mdm_elbo",
    "path_integral",
    "roar",
    "roar_steps",
    "truncate",
]
