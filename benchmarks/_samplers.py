"""The built-in samplers every study compares, as path expressions for a budget of ``T`` denoiser calls: defined in
:mod:`snrpaths.samplers` (the one place names and path expressions are read, for ``compare`` and every study)."""

from snrpaths.samplers import ADAPTIVE, BUILTIN, OWN_NFE

__all__ = ["ADAPTIVE", "BUILTIN", "OWN_NFE"]
