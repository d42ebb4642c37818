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
#: the adaptive reveals (issue 17): a linear clock of ``T`` steps as the floor, plus every position whose confidence
#: reaches 0.9 (Fast-dLLM), or positions in increasing entropy while the step's summed entropy stays within 1 nat;
#: ``T`` bounds their calls, and they stop calling once every position is revealed
ADAPTIVE: dict[str, Callable[[int], str]] = {
    "threshold 0.9": lambda T: f"reveal({T}, order='confidence', threshold=0.9)",
    "entropy bound 1": lambda T: f"reveal({T}, order='entropy', entropy_bound=1.0)",
}
