"""Implementations of the :class:`snrpaths.Denoiser` protocol, installed as ``snrpaths.backends``.

The core never imports this package; backends depend on the core's protocol only.
"""

from .toy import ExactToy

__all__ = ["ExactToy"]
