"""Compiling and running `@ft.function`s: trace, lower, run the pass pipeline, build the backend.

This module wires the layers together (language -> lowering -> backend), which is why it
lives at the top of the package.  A `Compiled` object is specific to the argument types
*and sizes* (every list length): the lowering unrolls the list structure into constant
tables, the data of const buffers in its tile IR.  The language layer cannot import this
one, so `RUNNER` is what the `fractal` package installs for `Function` to delegate to (`fractal.lang.runner`):

* `f.compile(*args, backend="cpu")` -> `compile_cached`: a `Compiled`, cached per function,
  program, argument sizes and backend (in the function's `runner_cache`);
* `f(*args)` -> `run_call`: compile for the cpu backend and run; a program the backend cannot
  lower yet runs in the NumPy reference interpreter instead, with a warning (once per
  function); `f(*args, backend="interpreter")` interprets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from .backends.cpu import CpuExecutable
from .backends.cpu.policy import CpuPolicy
from .lang.errors import ArgumentError, LengthError, UnsupportedError, located
from .lang.function import is_static
from .lang.runner import Runner
from .lang.tree import unflatten
from .lang.values import FractalTensor
from .lower.lower_program import lower_program
from .lower.hardware import this_cpu
from .lower.pipeline import run_pipeline
from .lower.target import Target
from .lower.tile_ir import TileProgram

BACKENDS = ("cpu", "interpreter")
_WARNED: set[str] = set()  # functions already warned about an interpreter fallback


def sizes_key(leaves) -> tuple:
    """What a compiled program depends on beyond types: every list's structure."""
    key = []
    for x in leaves:
        if isinstance(x, FractalTensor):
            _, offsets = x.compact()
            key.append((len(x),) + tuple(o.tobytes() for o in offsets))
        else:
            key.append(None)
    return tuple(key)


@dataclass
class Compiled:
    """A program compiled for one set of argument types and sizes."""

    name: str
    tile_ir: TileProgram
    seconds: dict  # trace / lower / passes / backend build times
    _function: object
    _lowered: object
    _executable: object
    _sizes: tuple
    _out_tree: object

    @property
    def compile_seconds(self) -> float:
        return sum(self.seconds.values())

    def run(self, *args, profile: dict | None = None, **kwargs):
        leaves, _, _ = self._function.flatten_args(args, kwargs)
        leaves = [x for x in leaves if not is_static(x)]
        if sizes_key(leaves) != self._sizes:
            raise ArgumentError(f"{self.name} was compiled for other list lengths; call the function "
                                f"(it compiles per size) or compile it again for these arguments")
        inputs = {}
        for x, (buffer, kind) in zip(leaves, self._lowered.inputs):
            if kind == "tensor":
                inputs[buffer] = np.asarray(x)[None]
            else:
                inputs[buffer] = x.compact()[0]
        try:
            outs = self._executable.run(inputs, profile=profile)
        except LengthError as e:  # a traced gather index out of range: point at its line
            loc = self._lowered.runtime_checks.get(getattr(e, "index_buffer", None))
            if loc is None:
                raise
            raise located(e, loc) from None
        flat = []
        for kind, buffer, info in self._lowered.outputs:
            value = outs[buffer]
            if kind == "tensor":
                flat.append(value[0])
            else:
                value.flags.writeable = False
                flat.append(info.with_leaves(value, self._lowered.output_types[buffer]))
        return unflatten(self._out_tree, flat)

    __call__ = run

    def _repr_html_(self) -> str:
        return self.tile_ir._repr_html_()


def compile_function(function, args, kwargs, backend: str = "cpu", *, verify: bool = False) -> Compiled:
    if backend != "cpu":
        raise ArgumentError(f"unknown backend {backend!r}: compile supports 'cpu' (call with "
                            f"backend='interpreter' to interpret)")
    t0 = perf_counter()
    program, out_tree, leaves = function.traced(args, kwargs)
    t1 = perf_counter()
    lowered = lower_program(program, leaves)
    t2 = perf_counter()
    tile_ir, _ = run_pipeline(lowered.program, verify=verify, target=Target("host", "cpu", this_cpu(), CpuPolicy()))
    t3 = perf_counter()
    executable = CpuExecutable(tile_ir)
    t4 = perf_counter()
    seconds = {"trace": t1 - t0, "lower": t2 - t1, "passes": t3 - t2, "backend": t4 - t3}
    return Compiled(program.name, tile_ir, seconds, function, lowered, executable, sizes_key(leaves), out_tree)


def compile_cached(function, args, kwargs, backend: str = "cpu") -> Compiled:
    """`f.compile(*args, backend=...)`: the `Compiled` for these arguments' program and sizes,
    compiled once per function (the cache lives in the function, and goes with it)."""
    program, _, leaves = function.traced(args, kwargs)
    key = (program, sizes_key(leaves), backend)
    compiled = function.runner_cache.get(key)
    if compiled is None:
        compiled = function.runner_cache[key] = compile_function(function, args, kwargs, backend)
    return compiled


def run_call(function, args, kwargs, backend: str = "cpu"):
    """`f(*args, backend=...)`: run on `backend`; the interpreter for programs it cannot compile."""
    if backend == "interpreter":
        return function.interpret(*args, **kwargs)
    try:
        compiled = compile_cached(function, args, kwargs, backend)
    except UnsupportedError as e:
        if function.name not in _WARNED:
            _WARNED.add(function.name)
            # stacklevel 3: the line that called the function (through Function.__call__)
            warnings.warn(f"{function.name}: running in the interpreter; the {backend} backend cannot "
                          f"compile it yet: {e.message}", stacklevel=3)
        return function.interpret(*args, **kwargs)
    return compiled.run(*args, **kwargs)


RUNNER = Runner(call=run_call, compile=compile_cached, call_options=frozenset({"backend"}))
