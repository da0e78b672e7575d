"""Tracing: symbolic values that record equations instead of computing.

A `Trace` owns a stack of `Frame`s, one per region being built (the function
body, then one per nested combinator body).  `bind(op, *inputs, **params)` is
the single entry point of every primitive op: with a traced input it checks
types with the op's shape rule and appends an `Eqn` to the innermost frame;
otherwise it runs the op's NumPy rule eagerly (so one op definition serves
eager execution, tracing and the interpreter).

Traced values are `Tracer`s: `ListTracer` (a list, here) and `TensorTracer` (a tensor
with NumPy-like operators, in `tensor_tracer`, which builds on `bind` and `fractal.lang.api`
and so on this module).  A subclass names the static type it traces (`traces=`), and
`wrap` picks the class by the variable's type, so this module need not import them.

Traces are per thread (`_STATE`, a `threading.local`): while one thread traces, another's
ops run eagerly, or into its own trace.  A NumPy array (not 0-d) that traced code uses
without receiving it is *captured* (`Trace.capture`): a parameter of the function body after
its own, which the caller passes at every call (README, "Captured arrays"); numbers, NumPy
scalars and 0-d arrays are constants.
"""

from __future__ import annotations

import threading

import numpy as np

from .errors import FractalError, FractalTypeError, TraceError, user_location
from .ir_nodes import Const, Eqn, Region, Var, make_params
from .limits import check_eager
from .registry import OPS
from .types import FractalTensorType, TupleType, tensor_type
from .values import FractalTensor, type_of


class Trace:
    """One tracing session: variable numbering and the frame stack."""

    def __init__(self):
        self.counter = 0
        self.frames: list[Frame] = []
        self.names: set[str] = set()
        self.root: Frame | None = None  # the outermost frame: the function body
        self.captured: dict[int, tuple] = {}  # id(array) -> (array, its parameter); the array is kept alive

    def fresh_name(self, hint: str | None = None) -> str:
        if hint is not None:
            name, k = hint, 1
            while name in self.names:
                name, k = f"{hint}_{k}", k + 1
        else:
            name = str(self.counter)
            self.counter += 1
            while name in self.names:
                name = str(self.counter)
                self.counter += 1
        self.names.add(name)
        return name

    def capture(self, x: np.ndarray, type_) -> Var:
        """The parameter standing for the NumPy array `x` the traced code captured (see
        "Captured arrays" in the README): an implicit argument of the function body, read at
        every call, not a constant baked in at the first trace; one per array, wherever used."""
        found = self.captured.get(id(x))
        if found is None:
            var = self.root.new_var(type_, "captured")
            self.root.params.append(var)  # after the function's own parameters
            found = self.captured[id(x)] = (x, var)
        return found[1]

    def captured_arrays(self) -> tuple[np.ndarray, ...]:
        """The captured arrays, in the order of their parameters."""
        return tuple(x for x, _ in self.captured.values())


class Frame:
    """A region under construction."""

    def __init__(self, trace: Trace, parent: "Frame | None"):
        self.trace, self.parent = trace, parent
        self.params: list[Var] = []
        self.eqns: list[Eqn] = []

    def new_var(self, type_, hint: str | None = None) -> Var:
        return Var(self.trace.fresh_name(hint), type_)

    def param(self, type_, hint: str | None = None, static_len: int | None = None) -> "Tracer":
        var = self.new_var(type_, hint)
        self.params.append(var)
        return wrap(var, self, static_len)

    def is_active(self) -> bool:
        return self in self.trace.frames

    def encloses(self, other: "Frame") -> bool:
        f = self
        while f is not None:
            if f is other:
                return True
            f = f.parent
        return False

    def region(self, results) -> Region:
        return Region(tuple(self.params), tuple(self.eqns), tuple(results))

    def lift(self, x) -> Var:
        """The variable for `x` in this frame: a tracer's own, or a new constant."""
        if isinstance(x, Tracer):
            if not self.encloses(x.frame) or not x.frame.is_active():
                made = next((e.loc for e in x.frame.eqns if x.var in e.outputs), None)
                raise TraceError("a value computed inside a combinator body is used outside it "
                                 + (f"(it was computed at {made}; " if made else "(")
                                 + "return it from the body instead of storing it in a Python variable)")
            return x.var
        if isinstance(x, FractalTensor):
            if x._parts is not None:
                raise TraceError("a zipped list cannot be used as a single value here")
            leaves, offsets = x.compact()
            return self.emit("const_list", (), (x.type,), dict(
                type=x.type, leaves=Const(leaves), offsets=tuple(Const(o) for o in offsets),
                length=len(x)))[0]
        if isinstance(x, (np.ndarray, np.generic, int, float, bool)):
            arr = np.asarray(x)
            try:
                t = tensor_type(arr.shape, arr.dtype)
            except FractalError:
                raise FractalTypeError(f"the constant {x!r} has unsupported dtype {arr.dtype}") from None
            if not isinstance(x, np.ndarray) or x.ndim == 0:  # numbers stay where they are used
                return self.emit("const", (), (t,), dict(value=Const(arr)))[0]
            return self.trace.capture(x, t)
        raise FractalTypeError(f"{type(x).__name__} {x!r:.60} cannot be used as a fractal value "
                               f"(expected a tensor, a FractalTensor or a number)")

    def emit(self, op, in_vars, out_types, params, regions=()) -> tuple[Var, ...]:
        outs = tuple(self.new_var(t) for t in out_types)
        self.eqns.append(Eqn(op, tuple(in_vars), outs, make_params(**params), tuple(regions), user_location()))
        return outs


class _State(threading.local):
    """The calling thread's traces, innermost last: tracing is per thread, so one thread's
    eager ops never join another thread's trace."""

    def __init__(self):
        self.traces: list[Trace] = []


_STATE = _State()


def current_frame() -> Frame | None:
    """The innermost frame being built by the calling thread, or None when it runs eagerly."""
    traces = _STATE.traces
    if traces and traces[-1].frames:
        return traces[-1].frames[-1]
    return None


class trace_scope:
    """`with trace_scope() as trace:` starts a new trace in the calling thread (tracing may
    nest: eval_shape inside a trace)."""

    def __enter__(self) -> Trace:
        self.trace = Trace()
        _STATE.traces.append(self.trace)
        return self.trace

    def __exit__(self, *exc):
        _STATE.traces.remove(self.trace)


class frame_scope:
    """`with frame_scope(parent) as frame:` builds a nested region."""

    def __init__(self, trace: Trace, parent: Frame | None):
        self.trace, self.parent = trace, parent

    def __enter__(self) -> Frame:
        self.frame = Frame(self.trace, self.parent)
        if self.parent is None and self.trace.root is None:
            self.trace.root = self.frame
        self.trace.frames.append(self.frame)
        return self.frame

    def __exit__(self, *exc):
        self.trace.frames.remove(self.frame)


def any_tracer(values) -> bool:
    return any(isinstance(v, (Tracer, ZipTracer)) for v in values)


def bind(op: str, *inputs, **params):
    """Apply primitive `op`: record it if an input is traced, else compute it with NumPy.

    Returns a tuple of outputs."""
    opdef = OPS[op]
    tracers = [x for x in inputs if isinstance(x, Tracer)]
    if not inputs and current_frame() is not None:
        tracers = [None]  # a constructor like ft.zeros inside a trace is recorded, not baked in
    if not tracers:
        check_eager(op, opdef.type_rule(tuple(type_of(x) for x in inputs), **params))  # traced code's errors
        return opdef.impl(*inputs, **params)
    frame = _innermost(tracers)
    in_vars = [frame.lift(x) for x in inputs]
    out_types = opdef.type_rule(tuple(v.type for v in in_vars), **params)
    return tuple(wrap(v, frame) for v in frame.emit(op, in_vars, out_types, params))


def _innermost(tracers) -> Frame:
    frame = current_frame()
    if frame is None:
        raise TraceError("a traced value is used after its function finished tracing "
                         "(keep traced values inside the @ft.function)")
    return frame


def wrap(var: Var, frame: Frame, static_len: int | None = None):
    """The tracer of `var`: a `ListTracer` for a list, a `TensorTracer` for a tensor."""
    return Tracer.BY_TYPE[type(var.type)](var, frame, static_len)


class Tracer:
    """A symbolic value: a variable of the region being traced.

    Subclasses declare the static type they trace, `class TensorTracer(Tracer,
    traces=TensorType)`, which enters them in `BY_TYPE` for `wrap`."""

    __slots__ = ("var", "frame", "static_len")
    __array_priority__ = 1000
    BY_TYPE: dict[type, type] = {}  # static type class -> the Tracer subclass of its values

    def __init_subclass__(cls, traces: type | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if traces is not None:
            Tracer.BY_TYPE[traces] = cls

    def __init__(self, var: Var, frame: Frame, static_len: int | None = None):
        self.var, self.frame, self.static_len = var, frame, static_len

    @property
    def type(self):
        return self.var.type

    def __bool__(self):
        raise TraceError(
            "Python control flow on traced data (an `if`, `while`, `and`/`or` or `bool()` on a traced value) "
            "cannot be traced; use ft.where for a choice per element, or ft.scan/ft.fold for loops")

    def __repr__(self):
        return f"Traced<{self.var.type}>"


class ListTracer(Tracer, traces=FractalTensorType):
    """A traced FractalTensor. `static_len` is its length when known at trace time."""

    __slots__ = ()

    @property
    def depth(self) -> int:
        return self.var.type.depth

    def __len__(self):
        if self.static_len is None:
            raise TraceError("the length of a traced FractalTensor is runtime data; use ft.length(xs) "
                             "for a traced length, or ft.map/ft.scan/ft.fold instead of a Python loop")
        return self.static_len

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key):
        """`xs[i]` (a static int) and `xs[a:b:s]`."""
        if isinstance(key, slice):
            if any(isinstance(p, Tracer) for p in (key.start, key.stop, key.step)):
                raise TraceError("list slice bounds must be Python ints known at trace time")
            n = known_length(self)
            out = bind("list_slice", self, start=key.start, stop=key.stop, step=key.step)[0]
            return with_length(out, None if n is None else len(range(n)[key]))
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return bind("list_index", self, i=int(key))[0]
        if isinstance(key, Tracer):
            raise TraceError("indexing a list with a traced int is data-dependent; use "
                             "ft.gather(xs, indices) with a traced index tensor")
        raise FractalTypeError(f"a FractalTensor is indexed by an int or a slice, not {type(key).__name__}")


class ZipTracer:
    """A traced list of tuples: its component lists (never an IR variable itself)."""

    def __init__(self, type_: FractalTensorType, parts: tuple):
        self.type, self.parts = type_, tuple(parts)

    @property
    def depth(self) -> int:
        return self.type.depth

    @property
    def static_len(self):
        return next((p.static_len for p in self.parts if p.static_len is not None), None)

    def __len__(self):
        return len(self.parts[0]) if self.static_len is None else self.static_len

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, key):
        items = tuple(p[key] for p in self.parts)
        if isinstance(key, slice):
            return ZipTracer(self.type, items)
        if isinstance(self.type.elem, TupleType):
            return items
        return ZipTracer(self.type.elem, items)

    def __bool__(self):
        Tracer.__bool__(self)

    def __repr__(self):
        return f"Traced<{self.type}>"


def known_length(xs) -> int | None:
    """The length of a list (value or tracer) when known at trace time, else None."""
    return len(xs) if isinstance(xs, FractalTensor) else getattr(xs, "static_len", None)


def with_length(result, n: int | None):
    """`result` (a traced list or zipped list) marked as having static length `n`."""
    if isinstance(result, ListTracer):
        result.static_len = n
    elif isinstance(result, ZipTracer):
        for p in result.parts:
            with_length(p, n)
    return result
