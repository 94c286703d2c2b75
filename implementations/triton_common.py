"""What both Triton kernel modules (triton_yolo.py, triton_ssd.py) share: the decorators that
build a kernel or a helper in one execution mode, and the reductions, exp and log they call.

Execution modes. implementations/triton_loss.py (``load``) loads this module and each kernel
module once per mode, setting ``INTERPRET`` in the module's namespace before its code runs:
True builds every kernel (``kernel``) as a ``triton.runtime.interpreter.InterpretedFunction``
(CPU tensors, NumPy over each block) and every helper (``helper``) as a plain Python function,
False both as ``triton.runtime.jit.JITFunction`` (compiled for CUDA). A kernel module takes
the copy of its own mode (``load("triton_common", INTERPRET)``) and binds these names as its
globals, as a kernel calls its helpers by global name. Imported directly, a module is native.

Helpers take and return blocks (tl tensors) of the caller's shape and dtype; ``axis`` is a
constexpr.
"""

from __future__ import annotations

import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction

INTERPRET: bool = globals().get("INTERPRET", False)  # set by triton_loss.load before the code runs

if INTERPRET:
    _math = tl  # tl.exp / tl.log: NumPy's, in float32
else:
    from triton.language.extra import libdevice as _math  # expf / logf; tl.exp on CUDA is ex2.approx


def kernel(fn):
    """@triton.jit for a kernel, in this module's mode (INTERPRET) whatever TRITON_INTERPRET says."""
    return InterpretedFunction(fn) if INTERPRET else JITFunction(fn)


def helper(fn):
    """@triton.jit for a function the kernels call: compiled with them for CUDA; a plain Python
    function in the interpreter, which runs kernels as Python (an interpreted helper would
    re-patch triton.language on every call, about 0.5 ms each)."""
    return fn if INTERPRET else JITFunction(fn)


# The combine functions of tl.sum / tl.max / tl.argmax / tl.cumsum. Those wrappers are @jit
# functions built at triton's import (native unless TRITON_INTERPRET was set then), so the
# interpreter cannot call them; it recognises these combine functions by identity and runs
# NumPy's sum, max, argmax (first index on ties) and cumsum instead.
_SUM = tl.standard._sum_combine
_MAX = tl.standard._elementwise_max
_ARGMAX = tl.standard._argmax_combine_tie_break_left


@helper
def sum_(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _SUM)


@helper
def max_(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _MAX)


@helper
def cumsum(x, axis: tl.constexpr):
    return tl.associative_scan(x, axis, _SUM)


@helper
def argmax(x, index, axis: tl.constexpr):
    """Argmax of a 2-D x along ``axis``, lowest index on ties; index = tl.arange over that axis."""
    if axis == 0:
        idx = tl.broadcast_to(index[:, None], x.shape)
    else:
        idx = tl.broadcast_to(index[None, :], x.shape)
    _, i = tl.reduce((x, idx), axis, _ARGMAX)
    return i


@helper
def exp(x):
    return _math.exp(x)


@helper
def log(x):
    return _math.log(x)
