"""The built-in samplers every study compares, as path expressions for a budget of ``T`` denoiser calls."""

from __future__ import annotations

from collections.abc import Callable

#: name -> path expression at budget ``T``; the ReMDM rows are MDLM with each ReMDM remasking strategy.
BUILTIN: dict[str, Callable[[int], str]] = {
    "AR": lambda T: "ar()",
    "ROAR": lambda T: "roar()",
    "MDLM": lambda T: f"mdm({T})",
    **{f"ReMDM-{short}": (lambda T, mode=mode: f"mdm({T}, remask='{mode}')")
       for short, mode in (("cap", "cap"), ("rescale", "rescale"), ("conf", "confidence"), ("loop", "loop"))},
}
OWN_NFE = ("AR", "ROAR")  # these cost L calls whatever the budget
