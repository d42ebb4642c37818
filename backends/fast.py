"""Faster forward passes for the neural backends, chosen when a model is loaded: bfloat16 autocast and
``torch.compile``.

    den = load("tiny-shakespeare-dsl", precision="bf16", compile=True)           # the DiT (DSLDenoiser)
    lm = MaskedLM.from_pretrained(folder, precision="bf16", compile=True)      # a Hugging Face masked LM

``precision``: ``'fp32'`` (the default: the weights' own dtype, no autocast) or ``'bf16'``: the forward pass runs under
``torch.autocast(device, torch.bfloat16)``, so matrix products read bfloat16 operands (8 significant bits, unit
roundoff ``2^-8``) and accumulate in float32, while autocast's float32 list (norms, softmax) and our own float32
islands stay as they are: the DSL converter computes its logits and softmax with autocast off (only its ``q @ E``
product follows autocast), the DiT's LayerNorm normalises in float32, and the evidence head adds ``z . x`` in float32.
The weights stay as stored (``load(..., dtype=torch.bfloat16)`` is the other option: weights cast, no autocast).
Logits come back in float32 (their values carry bf16's rounding), so that the runner's draws see one dtype.

``compile``: ``True`` (inductor, torch's default backend), a backend name (``'aot_eager'`` traces without generating
code: a quick check), or ``False``. What is compiled is the network (the DiT backbone, or the masked LM): the DSL
converter in front of the DiT runs eagerly, since how many positions it mixes is data-dependent. Shapes are static
(``dynamic=False``): each input shape compiles once, on first use (seconds on the CPU; reruns read inductor's
on-disk cache). The length is fixed by the denoiser (``seq_len``). The batch changes when the runner calls only the
rows whose state changed, so rows are padded up to the next power of two (copies of the first row, their outputs
dropped): a run at batch ``B`` compiles at most ``log2(B) + 1`` graphs (7 up to batch 64); past torch's
recompile limit (``torch._dynamo.config.recompile_limit``, 8: batches above 128) dynamo runs further shapes eagerly,
with a warning.

Cached block decoding (``blocks(..., cache=...)``, the DiT only) runs under the same options: the refresh (a full
call that also keeps every block's keys and values) under the same autocast, and under ``compile`` as its own
static-shape graph (the same input shape as the plain forward, batches padded the same way; it compiles on the first
refresh), since the protocol wants its logits bit for bit those of ``logits(state)`` (the two graphs share their
kernels, and the tests check they agree bit for bit; inductor itself does not promise it). The cached calls on the
active block run under the same autocast but eagerly: their shapes change with the block's length, and the work is a
block's worth of positions. Under bf16 the cache holds bfloat16 keys and values (half the memory).

These options apply to ``logits(state)`` (sampling, likelihoods, diagnostics); a trainer's ``forward`` runs eagerly
in float32 (it sets its own autocast). Where ``compile`` cannot run (no C++ compiler for inductor on the CPU, no
triton on CUDA, a Python torch.compile does not support), asking for it raises :class:`snrpaths.errors.CapabilityError`
saying what is missing, when the option is set and again if the model moves to another kind of device.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable

import torch

from snrpaths import validate
from snrpaths.errors import CapabilityError, SNRTypeError, one_of

#: ``precision`` values: the weights' own dtype, or bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` with inductor cannot run on ``device``'s kind, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support this Python ({sys.version.split()[0]}) or platform"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "inductor on CUDA needs triton (pip install triton)"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception:  # torch raises InvalidCxxCompiler; an older torch may lack the helper
            return "inductor on the CPU needs a C++ compiler (g++ or clang++ on PATH, or one named by $CXX)"
    return None


def check_options(precision: object, compile: object, device: torch.device | str | None = None) -> None:
    """Raise for a ``precision`` or ``compile`` value :class:`FastForward` would refuse, and for ``compile=True`` where
    inductor cannot run on ``device`` (default the CPU): before a model is loaded."""
    validate.choice("precision", precision, PRECISIONS)
    if not isinstance(compile, (bool, str)):
        raise SNRTypeError(f"'compile' must be True, False or a torch.compile backend name such as 'aot_eager' "
                           f"(got {compile!r})")
    backends = torch.compiler.list_backends(exclude_tags=())
    if isinstance(compile, str) and compile not in backends:
        raise one_of("compile", compile, (True, False, *torch.compiler.list_backends()))
    if compile is True or compile == "inductor":
        _require_compiler(torch.device(device or "cpu"))


def _require_compiler(device: torch.device) -> None:
    problem = compile_problem(device)
    if problem is not None:
        raise CapabilityError(f"compile=True is not available on {device.type}: {problem}; load the model with "
                              "compile=False (or a backend that generates no code, such as compile='aot_eager')")


def batch_bucket(n: int) -> int:
    """The padded batch of ``n`` rows: the next power of two (``1, 2, 4, ...``)."""
    return 1 << max(0, n - 1).bit_length()


class FastForward:
    """``fn`` (``[B, ...]`` input -> ``[B, ...]`` output tensor) run under ``precision`` and, with ``compile``,
    compiled with static shapes, batches padded to :func:`batch_bucket` with copies of the first row (a valid input
    of any kind: ids or embeddings; their outputs are dropped; see the module docstring).

    Not an ``nn.Module``: kept as a plain attribute, it adds no keys to its owner's ``state_dict``.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, precision: str = "fp32",
                 compile: bool | str = False, device: torch.device | str = "cpu"):
        check_options(precision, compile, device)
        self.precision, self.backend = precision, ("inductor" if compile is True else compile) or None
        self.fn = fn
        self.compiled = None if self.backend is None else torch.compile(fn, backend=self.backend, dynamic=False)
        self._checked = {torch.device(device).type}  # device kinds the compiler was found for

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The precision's context on ``device``: bfloat16 autocast, or nothing."""
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def options(self) -> dict:
        """``{"precision": ..., "compile": ...}`` as given (for a repr or a results table)."""
        return {"precision": self.precision, "compile": self.backend or False}

    def __call__(self, x: torch.Tensor):
        """``fn(x)`` under the options: a tensor (the logits), or a tuple whose first entry is the logits (the rest,
        such as a key/value cache, come back in the dtype they were computed in); the logits come back in float32."""
        with self.autocast(x.device):
            if self.compiled is None:
                out = self.fn(x)
            else:
                self._check_device(x.device)
                n = x.shape[0]
                extra = batch_bucket(n) - n
                padded = torch.cat([x, x[:1].expand(extra, *x.shape[1:])]) if extra else x
                out = self.compiled(padded)
                out = out[:n] if isinstance(out, torch.Tensor) else tuple(o[:n] for o in out)
        if self.precision != "bf16":
            return out
        return out.float() if isinstance(out, torch.Tensor) else (out[0].float(), *out[1:])

    def _check_device(self, device: torch.device) -> None:
        """The compiler check again, once per kind of device the model moves to."""
        if self.backend == "inductor" and device.type not in self._checked:
            _require_compiler(device)
            self._checked.add(device.type)
