"""Compiling and running `@ft.function`s: trace, lower, run the pass pipeline, build the backend.

This module wires the layers together (language -> lowering -> backend), which is why it
lives at the top of the package.  It names no backend: a call's target (`ft.targets`;
`ft.targets.default()`, this machine, when it names none) names one, and the registry (`fractal.backends.registry`) has it.  A
`Compiled` object is specific to the argument types *and sizes* (every list length): the
lowering unrolls the list structure into constant tables, the data of const buffers in its
tile IR.  The language layer cannot import this one, so `RUNNER` is what the `fractal`
package installs for `Function` to delegate to (`fractal.lang.runner`):

* `f.compile(*args, target=t)` (or `backend="cpu"`: that backend's default target) ->
  `compile_cached`: a `Compiled`, cached per function, program, argument sizes and target
  (in the function's `runner_cache`);
* `f(*args, target=t)` -> `run_call`: compile and run; a program the backend cannot lower yet
  runs in the NumPy reference interpreter instead, with a warning (once per function);
  `backend="interpreter"` interprets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from . import targets
from .backends import registry
from .lang.errors import ArgumentError, FractalTypeError, LengthError, UnsupportedError, located
from .lang.function import is_static, leaf_names
from .lang.runner import Runner
from .lang.tree import unflatten
from .lang.types import FractalTensorType, TensorType, tensor_type
from .lang.values import FractalTensor, type_of
from .lower.lower_program import lower_program
from .lower.memory import check_memory
from .lower.pipeline import run_pipeline
from .lower.target import Target
from .lower.tile_ir import TileProgram

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
    """A program compiled for one target and one set of argument types and sizes.

    `tile_ir` is the tile program the backend built from (None for a backend that consumes
    the program IR itself, the interpreter); `source` the code the backend generated where it
    generates code (the CUDA C++ of the cuda backends), else None.

    `run(*args, keep_on_device=True)` (a device backend's: cuda, cuda-emulated) returns tensor
    outputs as the device's arrays (CuPy arrays; NumPy arrays on the emulated GPU, whose
    memory is the host's) without copying them to the host, and list outputs as FractalTensors
    on the host.  A device backend also takes tensor arguments that are already in its memory
    (CuPy arrays, or DLPack tensors such as torch CUDA tensors) and reads them in place; other
    backends refuse both with an `ArgumentError`."""

    name: str
    target: Target
    tile_ir: TileProgram | None
    seconds: dict  # trace / lower / passes / backend build times
    _function: object
    _lowered: object
    _executable: object
    _sizes: tuple
    _out_tree: object
    _args: tuple = ()  # (tree, leaf names, each leaf's type or ("static", value)) compiled for
    # the arrays the function captured: implicit arguments, read every run (not compared: arrays)
    _captured: tuple = field(default=(), compare=False, repr=False)

    @property
    def compile_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def source(self) -> str | None:
        return getattr(self._executable, "source", None)

    @property
    def report(self):
        """What a run costs, where the backend models it (the dataflow backend's
        `CostSummary`: makespan, per-PE time, link bytes, SRAM), else None."""
        return getattr(self._executable, "report", None)

    def run(self, *args, profile: dict | None = None, keep_on_device: bool = False, executor: str | None = None,
            ranks: int | None = None, timeout: float | None = None, **kwargs):
        leaves, tree, names = self._function.flatten_args(args, kwargs)
        options = {k: v for k, v in (("executor", executor), ("ranks", ranks), ("timeout", timeout)) if v is not None}
        if options and not hasattr(self._executable, "report"):
            raise ArgumentError(f"{', '.join(f'{k}=' for k in options)}: only the dataflow backend has executors "
                                f"and ranks; {self.name} runs on {self.target.backend!r}")
        device = getattr(self._executable, "device", None)  # a device backend's (cuda.runtime.Device)
        if keep_on_device and device is None:
            raise ArgumentError(f"keep_on_device=True: the {self.target.backend!r} backend runs on the host and "
                                f"keeps nothing on a device; drop it, or compile for a GPU target "
                                f"(ft.targets.cuda(...))")
        leaves = self._adopted(leaves, leaf_names(tree, names), device)
        self._check_args(leaves, tree, names)
        leaves = [x for x in leaves if not is_static(x)] + list(self._captured)
        sizes = sizes_key(leaves)
        if sizes != self._sizes:
            names = [n for n, kind in zip(*self._args[1:]) if not _is_static_kind(kind)] if self._args else []
            name = next((f" (argument {n!r} differs)" for n, a, b in zip(names, sizes, self._sizes) if a != b), "")
            raise ArgumentError(f"{self.name} was compiled for other list lengths{name}; "
                                f"call the function (it compiles per size) or compile it again for these "
                                f"arguments")
        if self._lowered is None:  # a backend of the program IR: flat arguments in, flat results out
            return unflatten(self._out_tree, list(self._executable.run(leaves, profile=profile)))
        inputs = {}
        for x, (buffer, kind) in zip(leaves, self._lowered.inputs):
            if kind == "tensor":
                on_device = device is not None and device.adopt(x) is not None  # (read in place)
                inputs[buffer] = (x if on_device else np.asarray(x))[None]
            else:
                inputs[buffer] = x.compact()[0]
        try:
            outs = (self._executable.run(inputs, profile=profile, keep_on_device=True) if keep_on_device
                    else self._executable.run(inputs, profile=profile, **options))
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
                value = device.to_host(value) if keep_on_device else value  # a FractalTensor lives on the host
                value.flags.writeable = False
                flat.append(info.with_leaves(value, self._lowered.output_types[buffer]))
        return unflatten(self._out_tree, flat)

    __call__ = run

    def _adopted(self, leaves, names, device) -> list:
        """The arguments, those in a device's memory (CuPy arrays, DLPack tensors) as the
        device's arrays; such an argument for a backend without a device, or one its device
        does not take (a tensor on the CPU, on another GPU), is an `ArgumentError`."""
        out = []
        for name, x in zip(names, leaves):
            if _device_like(x):
                adopted = device.adopt(x) if device is not None else None
                if adopted is None:
                    kind = f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"
                    takes = ("NumPy arrays and arrays on its GPU" if getattr(device, "xp", np) is not np else
                             "NumPy arrays (device arrays go to a GPU target, ft.targets.cuda(...))")
                    raise ArgumentError(f"argument {name!r} of {self.name} is a {kind} that the "
                                        f"{self.target.backend!r} backend cannot take: it takes {takes}; pass "
                                        f"np.asarray(x) (x.cpu().numpy() for a torch tensor on a GPU)")
                x = adopted
            out.append(x)
        return out

    def _check_args(self, leaves, tree, names) -> None:
        """The call passes what this program was compiled for: the same nesting, each tensor or
        list of the same type, each static argument (a Python number, string, None) equal."""
        if not self._args:
            return
        want_tree, want_names, kinds = self._args
        if tree != want_tree:
            raise ArgumentError(f"the arguments of this call to {self.name} are nested differently from "
                                f"those it was compiled for ({', '.join(want_names)})")
        for name, x, kind in zip(want_names, leaves, kinds):
            if _is_static_kind(kind):
                if not is_static(x) or not _same_static(x, kind[1]):
                    raise ArgumentError(f"argument {name!r} of {self.name} was {kind[1]!r} when it was compiled "
                                        f"(a static argument), got {_show(x)}; call the function, which "
                                        f"compiles per static value, or compile it again")
                continue
            if is_static(x):
                raise FractalTypeError(f"argument {name!r} of {self.name} must be a {_describe(kind)} "
                                       f"as compiled, got {_show(x)}")
            try:
                got = tensor_type(tuple(x.shape), np.dtype(x.dtype)) if _device_like(x) else type_of(x)
            except FractalTypeError:
                got = None
            if got != kind:
                raise FractalTypeError(f"argument {name!r} of {self.name} must be a {_describe(kind)} as "
                                       f"compiled, got {_show(x) if got is None else _describe(got)}")

    def _repr_html_(self) -> str:
        return self.tile_ir._repr_html_() if self.tile_ir is not None else f"<pre>{self.name}: {self.target.name}</pre>"


def _args_signature(function, args, kwargs) -> tuple:
    """What `Compiled.run` checks a call against: the arguments' nesting, their leaf names, and
    each leaf's type (or `("static", value)`)."""
    leaves, tree, names = function.flatten_args(args, kwargs)
    kinds = tuple(("static", x) if is_static(x) else type_of(x) for x in leaves)
    return tree, tuple(leaf_names(tree, names)), kinds


def _device_like(x) -> bool:
    """An array that may live in a device's memory: not NumPy's, and one that CUDA or DLPack
    can hand over (a CuPy array, a torch tensor)."""
    return (not isinstance(x, (np.ndarray, np.generic, FractalTensor))
            and (hasattr(x, "__cuda_array_interface__") or hasattr(x, "__dlpack__")))


def _is_static_kind(kind) -> bool:
    return isinstance(kind, tuple)


def _same_static(a, b) -> bool:
    return type(a) is type(b) and (a == b or a != a and b != b)  # (NaN is itself here)


def _describe(t) -> str:
    return f"list {t}" if isinstance(t, FractalTensorType) else f"tensor {t}" if isinstance(t, TensorType) else str(t)


def _show(x) -> str:
    if isinstance(x, (np.ndarray, FractalTensor)):
        try:
            return _describe(type_of(x))
        except FractalTypeError:
            return f"array of {x.dtype}"
    r = repr(x)
    return f"{type(x).__name__} {r if len(r) <= 40 else r[:37] + '...'}"


def resolve_target(backend: str | None = None, target: Target | str | None = None) -> Target:
    """The target a call compiles for: `target` (a `Target` or a target's name), else the
    default target of `backend`, else `ft.targets.default()` (this machine, by C++ where a
    compiler is found)."""
    if target is None and backend is None:
        return targets.default()
    if target is None:
        return registry.get(backend).default_target()
    if isinstance(target, str):
        target = targets.get(target)
    if not isinstance(target, Target):
        raise ArgumentError(f"target must be a Target (see ft.targets) or a target's name, got {type(target).__name__}")
    if backend is not None and backend != target.backend:
        raise ArgumentError(f"target {target.name!r} runs on the {target.backend!r} backend, not {backend!r}: "
                            f"pass one of the two")
    registry.get(target.backend)  # (an unknown backend: the registry's error)
    return target


def compile_function(function, args, kwargs, target: Target, *, verify: bool | None = None) -> Compiled:
    """Trace, lower, run the passes for `target` (verified after each with `verify`, default
    `FRACTAL_VERIFY=1`) and build `target`'s backend."""
    backend = registry.get(target.backend)
    t0 = perf_counter()
    program, out_tree, leaves, captured = function.traced_call(args, kwargs)
    t1 = perf_counter()
    if backend.consumes == "program":
        executable = backend.build(program, target)
        seconds = {"trace": t1 - t0, "lower": 0.0, "passes": 0.0, "backend": perf_counter() - t1}
        return Compiled(program.name, target, None, seconds, function, None, executable, sizes_key(leaves), out_tree,
                    _args_signature(function, args, kwargs), captured)
    lowered = lower_program(program, leaves)
    t2 = perf_counter()
    tile_ir, _ = run_pipeline(lowered.program, target=target, verify=verify)
    check_memory(tile_ir, target, lowered.buffer_locs)  # refused before the backend allocates it
    t3 = perf_counter()
    executable = backend.build(tile_ir, target)
    t4 = perf_counter()
    seconds = {"trace": t1 - t0, "lower": t2 - t1, "passes": t3 - t2, "backend": t4 - t3}
    return Compiled(program.name, target, tile_ir, seconds, function, lowered, executable, sizes_key(leaves), out_tree,
                    _args_signature(function, args, kwargs), captured)


def compile_cached(function, args, kwargs, backend: str | None = None, target: Target | str | None = None) -> Compiled:
    """`f.compile(*args, backend=..., target=...)`: the `Compiled` for these arguments' program
    and sizes and the target, compiled once (the cache lives in the function, and goes with it;
    threads making the same first call wait for one compile).  Equal programs of two traces
    may read different captured arrays: the key names them (the `Compiled` keeps them alive,
    so their ids stay theirs while it is cached)."""
    target = resolve_target(backend, target)
    program, _, leaves, captured = function.traced_call(args, kwargs)
    key = (program, sizes_key(leaves), tuple(id(x) for x in captured), target)
    return function.runner_cache.get_or_make(key, lambda: compile_function(function, args, kwargs, target))


def run_call(function, args, kwargs, backend: str | None = None, target: Target | str | None = None):
    """`f(*args, backend=..., target=...)`: compile and run; the interpreter for programs the
    target's backend cannot compile yet."""
    resolved = resolve_target(backend, target)
    try:
        compiled = compile_cached(function, args, kwargs, target=resolved)
    except UnsupportedError as e:
        if function.name not in _WARNED:
            _WARNED.add(function.name)
            # stacklevel 3: the line that called the function (through Function.__call__)
            warnings.warn(f"{function.name}: running in the interpreter; the {resolved.backend} backend cannot "
                          f"compile it yet: {e.message}", stacklevel=3)
        return function.interpret(*args, **kwargs)
    return compiled.run(*args, **kwargs)


def host_memory() -> int:
    """The host's main memory in bytes: the last (largest) level of its record."""
    return targets.host().hardware.levels[-1].size_bytes


RUNNER = Runner(call=run_call, compile=compile_cached, call_options=frozenset({"backend", "target"}),
                memory=host_memory)
