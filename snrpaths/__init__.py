"""snrpaths: samplers for diffusion language models as paths through per-token SNR space.

Implements Discrete Stochastic Localization (DSL; Wu et al. 2026): tokens are unit-norm anchors, each position
carries its own SNR ``gamma_i in [0, inf]``, and one time-invariant denoiser ``p(s_i | z)`` serves every path.
"""

from . import limits, nll
from .comparison import Comparison, Judge, compare
from .compile import Program
from .channel import corrupt, localize, posterior_logits, posterior_mean
from .denoiser import Denoiser
from .errors import CapabilityError, DenoiserError, LimitError, ShapeError, SNRPathError, SNRTypeError
from .geometry import TokenTable
from .parse import PathSyntaxError, parse_path
from .path import Path
from .runner import Result, Trace, sample
from .shards import Samples, sample_sharded
from .state import SNRState
from .tuning import Tuned, tune

__all__ = [
    "CapabilityError",
    "Denoiser",
    "DenoiserError",
    "LimitError",
    "Path",
    "PathSyntaxError",
    "Program",
    "Result",
    "Trace",
    "parse_path",
    "sample",
    "sample_sharded",
    "Samples",
    "SNRPathError",
    "SNRState",
    "SNRTypeError",
    "ShapeError",
    "limits",
    "nll",
    "TokenTable",
    "Tuned",
    "tune",
    "Comparison",
    "Judge",
    "compare",
    "corrupt",
    "localize",
    "posterior_logits",
    "posterior_mean",
]
__version__ = "0.1.0"
