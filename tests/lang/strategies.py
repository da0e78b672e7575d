"""Hypothesis strategies for random fractal programs with matching random inputs.

A generated program is a small *data description* (`ProgramDesc`, a tree of frozen
dataclasses whose `repr` is valid Python, so a shrunk failure can be pasted into a
regression test).  `build(desc)` turns it into one plain Python function written with
`ft.*`, so the very same function can be

1. run eagerly on FractalTensor values (`build(desc)(*make_args(desc))`), and
2. traced and interpreted (`ft.function(build(desc)).interpret(*make_args(desc))`).

What the generator covers:

* nests (up to `GenConfig.max_nest` deep) of `ft.map` (one or two zipped lists, one or
  several results), `ft.scan` / `ft.fold` (`reverse=True/False`, single or tuple states)
  and `ft.reduce` (always with an associative body `acc (+|max|min) x`, since backends
  may re-associate it);
* access operators before iterating: `reverse`, `window` (size/stride/dilation/padding, one- or
  two-sided, of tensor or list elements),
  `shifted_window`, `dilate`, `interleave(dilate(.))`, `split`, `flatten`, list slices,
  `gather` with static indices, `repeat`, `zip`, `product`, `enumerate`, `join`, and lists
  made from tensors (`slices`, `repeat`); list indexing `xs[i]`, `ft.length`, `ft.stack`;
* cell ops: unary (`tanh`, `sigmoid`, `relu`, `gelu`, `sin`, `cos`, `abs`, negation,
  `softplus`, `log_sigmoid`, `elu`, and bounded `exp(tanh x)`, `sqrt(|x|)`, `log(|x| + 1)`,
  `log1p(|x|)`), binary ops with broadcasting,
  Python-scalar operands, `@` / `ft.matmul` with a captured constant or an argument
  weight, reductions with `axis`/`keepdims`, `softmax`, `layer_norm`, `where` with
  comparisons, transposes, static tensor indexing and slicing, `ft.full`;
* closures: bodies read any value of enclosing scopes (outer elements, outer states,
  outer lists), and captured NumPy constants;
* ragged inputs: every list has its own length in 0..`max_len` (empty lists included).

Programs are well typed by construction: the generator tracks static types, and for
lists a *length id*: `("n", k)` when every list of that position has length k (so static
`gather`/`xs[i]`/`stack` are safe), or a fresh token otherwise (two lists may be zipped
only when their ids are equal).  Data is float64 in [-1, 1], tensors have dims 1..3, and
unbounded functions are only applied to bounded values, so nothing overflows.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

import fractal as ft
from fractal.lang.tree import flatten as tree_flatten
from fractal.lang.values import FractalTensor

# ---------------------------------------------------------------------------------------------
# The program description
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgSpec:
    """A program argument: a tensor (`lengths is None`) or a list of `depth` levels.

    `lengths` nests like the list: an int for a depth-1 list, a tuple of those for depth 2,
    and so on.  The data is `uniform(-1, 1)` float64 drawn from `seed`."""

    name: str
    shape: tuple
    lengths: Any = None
    depth: int = 0
    seed: int = 0


@dataclass(frozen=True)
class Ref:
    """A bound name: a program argument, a combinator element or state."""

    name: str


@dataclass(frozen=True)
class Const:
    """A NumPy constant captured by the function (closure), `uniform(-1, 1)` from `seed`."""

    shape: tuple
    seed: int


@dataclass(frozen=True)
class Full:
    """`ft.full(shape, value, ft.float64)` (recorded as an op when tracing)."""

    shape: tuple
    value: float


@dataclass(frozen=True)
class Unary:
    """`op(x)`; `style` "ft" calls `ft.<op>`, "np" calls the NumPy function on the value."""

    op: str
    x: Any
    style: str = "ft"


@dataclass(frozen=True)
class Binary:
    """`a op b` with broadcasting; `style` "op" uses Python operators, "fn" `ft.*` functions.

    `div` is the safe `a / (|b| + 1)`."""

    op: str
    a: Any
    b: Any
    style: str = "op"


@dataclass(frozen=True)
class Scalar:
    """`x op c` (or `c op x` when `right`) with a Python number `c`."""

    op: str
    x: Any
    c: Any
    right: bool = False


@dataclass(frozen=True)
class MatMul:
    """`a @ b` (`style` "op") or `ft.matmul(a, b)` ("fn")."""

    a: Any
    b: Any
    style: str = "op"


@dataclass(frozen=True)
class Reduce:
    """`op(x, axis=, keepdims=)` with op in sum/mean/max/min; `style` "ft" or "np"."""

    op: str
    x: Any
    axis: Any = None
    keepdims: bool = False
    style: str = "ft"


@dataclass(frozen=True)
class Softmax:
    x: Any
    axis: int = -1


@dataclass(frozen=True)
class LayerNorm:
    x: Any
    w: Any
    b: Any


@dataclass(frozen=True)
class Where:
    """`ft.where(a cmp b, c, d)`; `d` may be a Python float."""

    cmp: str
    a: Any
    b: Any
    c: Any
    d: Any


@dataclass(frozen=True)
class Transpose:
    x: Any
    style: str = "fn"


@dataclass(frozen=True)
class TIndex:
    """`x[i]` (static int) or, with `stop`, `x[i:stop]` on a tensor."""

    x: Any
    i: int
    stop: Any = None


@dataclass(frozen=True)
class IdxFloat:
    """`ft.astype(i, ft.float64) * 0.25` for an int64 scalar (an `ft.enumerate` index)."""

    x: Any


@dataclass(frozen=True)
class LengthF:
    """`ft.astype(ft.length(xs), ft.float64)`."""

    xs: Any


@dataclass(frozen=True)
class LIndex:
    """`xs[i]` on a list (static i)."""

    xs: Any
    i: int


@dataclass(frozen=True)
class Stack:
    """`ft.stack(xs, length=n)`."""

    xs: Any
    n: int


@dataclass(frozen=True)
class Proj:
    """`x[i]` on a Python tuple (a tuple state or a multi-result map)."""

    x: Any
    i: int


@dataclass(frozen=True)
class Access:
    """A list access operator `op(*srcs, **params)`.

    ops: reverse, window, shifted_window, dilate, interleave_dilate, split, flatten, slice
    (`srcs[0][start:stop:step]`), gather, repeat, slices, enumerate, zip, product, join."""

    op: str
    srcs: tuple
    params: tuple = ()


@dataclass(frozen=True)
class Comb:
    """A combinator.

    map: `ft.map(f, *srcs)` with `f(*elems) -> results` (a tuple when `tuple_out`).
    scan/fold/reduce: `ft.<kind>(f, srcs[0], init, reverse=)` with `f(state, elem)`;
    the state is the tuple `init` when `tuple_out`, else its only entry.
    `elems` holds one binding pattern per source (a name, or nested tuples of names for
    lists of tuples); `states` one name per state.  With `as_function` the body is an
    `ft.function` (called eagerly on values, and from inside the enclosing trace)."""

    kind: str
    srcs: tuple
    elems: tuple
    results: tuple
    init: tuple = ()
    states: tuple = ()
    tuple_out: bool = False
    reverse: bool = False
    as_function: bool = False


@dataclass(frozen=True)
class ProgramDesc:
    """A whole program: its arguments and its results (a tuple when several)."""

    args: tuple
    results: tuple
    name: str = "generated"


# ---------------------------------------------------------------------------------------------
# build: description -> Python function over ft.*
# ---------------------------------------------------------------------------------------------

_NP_UNARY = {"tanh": np.tanh, "sin": np.sin, "cos": np.cos, "abs": np.abs, "exp": np.exp}
_CMP = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b}
_BIN_OP = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "maximum": ft.maximum, "minimum": ft.minimum}
_BIN_FN = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "maximum": lambda a, b: ft.maximum(a, b), "minimum": lambda a, b: ft.minimum(a, b)}
_REDUCE_FT = {"sum": ft.sum, "mean": ft.mean, "max": ft.max, "min": ft.min}
_REDUCE_NP = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def const_value(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, tuple(shape))


def _unary(op, x, style):
    if op == "neg":
        return -x
    if op == "exp_tanh":
        return ft.exp(ft.tanh(x))
    if op == "sqrt_abs":
        return ft.sqrt(ft.abs(x))
    if op == "log_abs1":
        return ft.log(ft.abs(x) + 1.0)
    if op == "log1p_abs":
        return np.log1p(np.abs(x)) if style == "np" else ft.log1p(ft.abs(x))
    if style == "np" and op in _NP_UNARY:
        return _NP_UNARY[op](x)
    return getattr(ft, op)(x)


def _binary(op, a, b, style):
    if op == "div":
        return a / (ft.abs(b) + 1.0)
    if style == "fn" and op in ("maximum", "minimum"):
        return getattr(ft, op)(a, b)
    if op == "maximum":
        return np.maximum(a, b)
    if op == "minimum":
        return np.minimum(a, b)
    return _BIN_FN[op](a, b)


def _scalar(op, x, c, right):
    a, b = (c, x) if right else (x, c)
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b}[op]()


def _bind(pattern, value, env) -> None:
    if isinstance(pattern, str):
        env[pattern] = value
        return
    assert isinstance(value, tuple) and len(value) == len(pattern), (pattern, value)
    for p, v in zip(pattern, value):
        _bind(p, v, env)


def _access(node: Access, env):
    srcs = [_ev(s, env) for s in node.srcs]
    p = dict(node.params)
    op = node.op
    if op == "reverse":
        return ft.reverse(srcs[0])
    if op == "window":
        return ft.window(srcs[0], p["size"], stride=p["stride"], dilation=p["dilation"],
                         padding=p["padding"], pad_value=p["pad_value"])
    if op == "shifted_window":
        return ft.shifted_window(srcs[0], p["size"], dilation=p["dilation"])
    if op == "dilate":
        return ft.dilate(srcs[0], p["d"])
    if op == "interleave_dilate":
        return ft.interleave(ft.dilate(srcs[0], p["d"]))
    if op == "split":
        return ft.split(srcs[0], p["n"])
    if op == "flatten":
        return ft.flatten(srcs[0])
    if op == "slice":
        return srcs[0][p["start"]:p["stop"]:p["step"]]
    if op == "gather":
        return ft.gather(srcs[0], list(p["indices"]))
    if op == "repeat":
        return ft.repeat(srcs[0], p["n"])
    if op == "slices":
        return ft.slices(srcs[0], axis=p["axis"])
    if op == "enumerate":
        return ft.enumerate(srcs[0])
    if op == "zip":
        return ft.zip(*srcs)
    if op == "product":
        return ft.product(*srcs)
    if op == "join":
        return ft.join(*srcs)
    raise ValueError(f"unknown access op {op!r}")


def _comb(node: Comb, env):
    srcs = [_ev(s, env) for s in node.srcs]

    def results(inner):
        res = tuple(_ev(r, inner) for r in node.results)
        return res if node.tuple_out else res[0]

    if node.kind == "map":
        def f(*elems):
            inner = dict(env)
            for pat, v in zip(node.elems, elems):
                _bind(pat, v, inner)
            return results(inner)
        return ft.map(ft.function(f, name="body") if node.as_function else f, *srcs)

    init = tuple(_ev(i, env) for i in node.init)

    def g(state, elem):
        inner = dict(env)
        _bind(tuple(node.states) if node.tuple_out else node.states[0], state, inner)
        _bind(node.elems[0], elem, inner)
        return results(inner)

    init_value = init if node.tuple_out else init[0]
    if node.as_function:
        g = ft.function(g, name="body")
    if node.kind == "reduce":
        return ft.reduce(g, srcs[0], init_value)
    return getattr(ft, node.kind)(g, srcs[0], init_value, reverse=node.reverse)


def _ev(node, env):
    """Evaluate a description node with `ft.*` (eagerly or traced, depending on `env`)."""
    t = type(node)
    if t is Ref:
        return env[node.name]
    if t is Const:
        return const_value(node.shape, node.seed)
    if t is Full:
        return ft.full(node.shape, node.value, ft.float64)
    if t is Unary:
        return _unary(node.op, _ev(node.x, env), node.style)
    if t is Binary:
        return _binary(node.op, _ev(node.a, env), _ev(node.b, env), node.style)
    if t is Scalar:
        return _scalar(node.op, _ev(node.x, env), node.c, node.right)
    if t is MatMul:
        a, b = _ev(node.a, env), _ev(node.b, env)
        return a @ b if node.style == "op" else ft.matmul(a, b)
    if t is Reduce:
        fn = (_REDUCE_NP if node.style == "np" else _REDUCE_FT)[node.op]
        return fn(_ev(node.x, env), axis=node.axis, keepdims=node.keepdims)
    if t is Softmax:
        return ft.softmax(_ev(node.x, env), axis=node.axis)
    if t is LayerNorm:
        return ft.layer_norm(_ev(node.x, env), _ev(node.w, env), _ev(node.b, env))
    if t is Where:
        d = node.d if isinstance(node.d, float) else _ev(node.d, env)
        return ft.where(_CMP[node.cmp](_ev(node.a, env), _ev(node.b, env)), _ev(node.c, env), d)
    if t is Transpose:
        x = _ev(node.x, env)
        return x.T if node.style == "attr" else ft.transpose(x)
    if t is TIndex:
        x = _ev(node.x, env)
        return x[node.i] if node.stop is None else x[node.i:node.stop]
    if t is IdxFloat:
        return ft.astype(_ev(node.x, env), ft.float64) * 0.25
    if t is LengthF:
        return ft.astype(ft.length(_ev(node.xs, env)), ft.float64)
    if t is LIndex:
        return _ev(node.xs, env)[node.i]
    if t is Stack:
        return ft.stack(_ev(node.xs, env), length=node.n)
    if t is Proj:
        return _ev(node.x, env)[node.i]
    if t is Access:
        return _access(node, env)
    if t is Comb:
        return _comb(node, env)
    raise TypeError(f"not a description node: {node!r}")


def build(desc: ProgramDesc):
    """The Python function (over `ft.*`) that `desc` describes; its parameters are named
    after `desc.args`.  Run it eagerly, or wrap it in `ft.function` to trace it."""
    names = [a.name for a in desc.args]

    def generated(*args):
        env = dict(zip(names, args))
        outs = tuple(_ev(r, env) for r in desc.results)
        return outs if len(outs) > 1 else outs[0]

    generated.__name__ = generated.__qualname__ = desc.name
    generated.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return generated


def _nest(lengths, depth, rng, shape):
    if depth == 1:
        return [rng.uniform(-1.0, 1.0, shape) for _ in range(lengths)]
    return [_nest(sub, depth - 1, rng, shape) for sub in lengths]


def make_arg(spec: ArgSpec):
    """The argument value of `spec`: a float64 array, or a (ragged) FractalTensor."""
    rng = np.random.default_rng(spec.seed)
    if spec.lengths is None:
        return rng.uniform(-1.0, 1.0, tuple(spec.shape))
    t = ft.Tensor[tuple(spec.shape), ft.float64]
    for _ in range(spec.depth):
        t = ft.FractalTensor[t]
    return ft.fractal(_nest(spec.lengths, spec.depth, rng, tuple(spec.shape)), type=t)


def make_args(desc: ProgramDesc) -> tuple:
    """The argument values of `desc`, in parameter order."""
    return tuple(make_arg(a) for a in desc.args)


def flat_args(args) -> list:
    """The flat leaves a `Program` takes (zipped lists and tuples flattened)."""
    return tree_flatten(tuple(args))[0]


def assert_values_close(a, b, rtol=1e-12, atol=1e-12, path="result") -> None:
    """Structural comparison of two fractal values (tuples, zipped/plain FractalTensors,
    arrays): equal types, list lengths, shapes and dtypes, and values within tolerance."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert isinstance(a, tuple) and isinstance(b, tuple), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        assert len(a) == len(b), f"{path}: tuples of {len(a)} and {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_values_close(x, y, rtol, atol, f"{path}[{i}]")
        return
    if isinstance(a, FractalTensor) or isinstance(b, FractalTensor):
        assert isinstance(a, FractalTensor) and isinstance(b, FractalTensor), \
            f"{path}: {type(a).__name__} vs {type(b).__name__}"
        assert a.type == b.type, f"{path}: types {a.type} vs {b.type}"
        assert len(a) == len(b), f"{path}: lengths {len(a)} vs {len(b)}"
        for i in range(len(a)):
            assert_values_close(a[i], b[i], rtol, atol, f"{path}[{i}]")
        return
    x, y = np.asarray(a), np.asarray(b)
    assert x.shape == y.shape and x.dtype == y.dtype, \
        f"{path}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, equal_nan=True, err_msg=path)


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

ALL_COMBINATORS = ("map", "scan", "fold", "reduce")
ALL_ACCESS_OPS = ("reverse", "slice", "gather", "window", "shifted_window", "dilate", "interleave_dilate",
                  "split", "flatten", "repeat", "slices", "enumerate", "zip", "product", "join")
ALL_CELL_OPS = ("unary", "binary", "scalar", "matmul", "reduce", "softmax", "layer_norm", "where",
                "transpose", "index", "lindex", "length", "stack")


@dataclass(frozen=True)
class GenConfig:
    """Knobs for later stages that support only part of the language."""

    max_nest: int = 3            # combinator nesting depth (1..max_nest)
    max_depth: int = 3           # list depth of the arguments
    max_len: int = 4             # list lengths are 0..max_len
    max_list_args: int = 2
    max_combs: int = 5           # combinators per program
    max_list_depth: int = 4      # no access op builds deeper lists than this
    expr_budget: int = 3         # size of cell expressions
    combinators: tuple = ALL_COMBINATORS
    access_ops: tuple = ALL_ACCESS_OPS
    cell_ops: tuple = ALL_CELL_OPS
    weight_args: bool = True     # matmul weights may be program arguments (else constants)
    tensor_args: bool = True     # a plain tensor argument besides the lists
    two_results: bool = True     # programs may return a tuple of results
    function_bodies: bool = True  # combinator bodies may be `ft.function`s


DEFAULT_CONFIG = GenConfig()

# generator-side static types


@dataclass(frozen=True)
class TT:
    shape: tuple
    dtype: str = "f64"


@dataclass(frozen=True)
class LT:
    elem: Any
    lid: tuple  # ("n", k): length k everywhere; ("v", token): unknown, equal ids = equal lengths

    @property
    def n(self):
        return self.lid[1] if self.lid[0] == "n" else None


@dataclass(frozen=True)
class TupT:
    elems: tuple


def _list_depth(t) -> int:
    return 1 + _list_depth(t.elem) if isinstance(t, LT) else 0


def _plain(t) -> bool:
    """A list whose leaves are tensors (not a zipped list)."""
    while isinstance(t, LT):
        t = t.elem
    return isinstance(t, TT)


def _tensorish(t) -> bool:
    """Tensor elements, possibly tupled: windows may pad such lists with any pad_value (lists of
    lists are padded with empty lists, pad_value left at 0)."""
    return isinstance(t, TT) or (isinstance(t, TupT) and all(_tensorish(e) for e in t.elems))


def _broadcasts_to(p, s) -> bool:
    try:
        return tuple(np.broadcast_shapes(p, s)) == tuple(s)
    except ValueError:
        return False


def _window_count(n, size, stride, dilation, padding) -> int:
    before, after = padding if isinstance(padding, tuple) else (padding, padding)
    span = dilation * (size - 1) + 1
    return max(0, (n + before + after - span) // stride + 1)


@functools.lru_cache(maxsize=None)
def _integers(lo, hi):
    return st.integers(lo, hi)


@dataclass
class _State:
    counter: int = 0
    combs: int = 0
    weights: list = field(default_factory=list)
    elements: set = field(default_factory=set)  # bound names of list type (elements of nested lists)
    nest_next: bool = False  # a body just bound a list element: favour iterating over it


class _Gen:
    def __init__(self, draw, cfg: GenConfig):
        self.draw, self.cfg, self.s = draw, cfg, _State()

    # -- drawing helpers (every choice is one cached integer strategy: cheap and shrinkable) ----
    def int(self, lo, hi):
        return self.draw(_integers(lo, hi))

    def coin(self):
        return self.int(0, 1) == 1

    def pick(self, options):
        options = list(options)
        return options[self.int(0, len(options) - 1)]

    def seed(self):
        return self.int(0, 2 ** 16)

    def fresh(self, prefix):
        self.s.counter += 1
        return f"{prefix}{self.s.counter}"

    def lid(self):
        return ("v", self.fresh("len"))

    def padded_elem(self, t):
        """The element type of a padded window: list elements (empty where padded) of unknown length."""
        if isinstance(t, LT):
            return LT(t.elem, self.lid())
        if isinstance(t, TupT):
            return TupT(tuple(self.padded_elem(e) for e in t.elems))
        return t

    def shape(self, max_ndim=2):
        return tuple(self.int(1, 3) for _ in range(self.int(0, max_ndim)))

    def sub_shape(self, s):
        """A shape that broadcasts to `s` (leading axes dropped, some axes set to 1)."""
        drop = self.int(0, len(s))
        return tuple(d if self.coin() else 1 for d in s[drop:])

    def access_ok(self, op):
        return op in self.cfg.access_ops

    # -- types of bound values ---------------------------------------------------------------
    def element(self, t):
        """The type of one element of a list of type `t` (unknown length ids are per list)."""
        e = t.elem
        return self.freshen(e)

    def freshen(self, e):
        if isinstance(e, LT) and e.lid[0] == "v":
            return LT(e.elem, self.lid())
        if isinstance(e, TupT):
            return TupT(tuple(self.freshen(x) for x in e.elems))
        return e

    def fn_body(self):
        return self.cfg.function_bodies and self.pick([False, False, False, True])

    def take_nest_hint(self):
        hint, self.s.nest_next = self.s.nest_next, False
        return hint and self.coin()

    def bind(self, t, env, prefix="e"):
        """A binding pattern for a value of type `t`; adds its names to `env`."""
        if isinstance(t, TupT):
            return tuple(self.bind(x, env, prefix) for x in t.elems)
        name = self.fresh(prefix)
        env[name] = t
        if isinstance(t, LT):
            self.s.elements.add(name)
            self.s.nest_next = True
        return name

    # -- programs ----------------------------------------------------------------------------
    def program(self) -> ProgramDesc:
        cfg = self.cfg
        args, env = [], {}
        for i in range(self.int(1, cfg.max_list_args)):
            depth = self.int(1, cfg.max_depth)
            shape = self.shape()
            lengths = self.lengths(depth)
            name = f"xs{i}"
            args.append(ArgSpec(name, shape, lengths, depth, self.seed()))
            env[name] = self.arg_type(lengths, depth, shape)
        if cfg.tensor_args and self.coin():
            shape = self.shape()
            args.append(ArgSpec("b", shape, None, 0, self.seed()))
            env["b"] = TT(shape)
        top = (["fold"] if {"fold", "reduce"} & set(cfg.combinators) else []) + \
            (["list"] if {"map", "scan"} & set(cfg.combinators) else [])
        if self.pick(top) == "fold":
            results = [self.fold_like(env, self.shape(), cfg.expr_budget, cfg.max_nest)]
        else:
            results = [self.list_comb(env, cfg.expr_budget, cfg.max_nest)[0]]
        if cfg.two_results and self.coin():
            results.append(self.value(env, cfg.expr_budget - 1, cfg.max_nest)[0])
        args += self.s.weights
        return ProgramDesc(tuple(args), tuple(results))

    def lengths(self, depth):
        n = self.int(0, self.cfg.max_len)
        if depth == 1:
            return n
        if self.coin():  # regular: all siblings alike (their length is known statically)
            sub = self.lengths(depth - 1)
            return tuple(sub for _ in range(n))
        return tuple(self.lengths(depth - 1) for _ in range(n))

    def arg_type(self, lengths, depth, shape):
        levels = [[lengths]]  # the length-trees at each level
        for _ in range(depth - 1):
            levels.append([c for node in levels[-1] for c in node])
        t = TT(shape)
        for level in reversed(levels):
            ns = {node if isinstance(node, int) else len(node) for node in level}
            t = LT(t, ("n", ns.pop()) if len(ns) == 1 else self.lid())
        return t

    # -- values --------------------------------------------------------------------------------
    def value(self, env, budget, depth):
        """Any value: a tensor of a random shape, or a list."""
        if self.coin():
            return self.source(env, budget, depth)
        s = self.shape()
        return self.tensor(env, s, budget, depth), TT(s)

    def tensor(self, env, s, budget, depth):
        """An expression of a float64 tensor of shape `s`."""
        cfg = self.cfg
        opts = ["leaf"]
        if budget > 0:
            opts += ["unary", "binary", "scalar", "where", "binary"]
            if len(s) < 3 or 1 in s:
                opts.append("reduce")
            if s:
                opts += ["matmul", "softmax", "layer_norm"]
            if len(s) == 2:
                opts.append("transpose")
            if len(s) < 3:
                opts.append("index")
            opts = [o for o in opts if o == "leaf" or o in cfg.cell_ops]
            if depth > 0 and self.s.combs < cfg.max_combs and \
                    any(c in cfg.combinators for c in ("fold", "reduce")):
                # nest: iterate over a list element bound by an enclosing body more often
                opts += ["fold"] * (5 if any(n in self.s.elements for n in env) else 2)
        kind = self.pick(opts)
        if "fold" in opts and self.take_nest_hint():
            kind = "fold"
        b = budget - 1
        if kind == "leaf":
            return self.leaf(env, s)
        if kind == "unary":
            op = self.pick(["tanh", "sigmoid", "relu", "gelu", "sin", "cos", "abs", "neg", "exp_tanh",
                            "sqrt_abs", "log_abs1", "softplus", "log_sigmoid", "elu", "log1p_abs"])
            return Unary(op, self.tensor(env, s, b, depth), self.pick(["ft", "np"]))
        if kind == "binary":
            op = self.pick(["add", "mul", "sub", "maximum", "minimum", "div"])
            x, y = self.tensor(env, s, b, depth), self.tensor(env, self.sub_shape(s), b, depth)
            if self.coin():
                x, y = y, x
            return Binary(op, x, y, self.pick(["op", "fn"]))
        if kind == "scalar":
            return Scalar(self.pick(["mul", "add", "sub"]), self.tensor(env, s, b, depth),
                          self.pick([0.5, -1.5, 2, 1.0]), self.coin())
        if kind == "where":
            a, c = self.tensor(env, self.sub_shape(s), b, depth), self.tensor(env, self.sub_shape(s), b, depth)
            if self.coin():  # else-branch a Python float
                return Where(self.pick(list(_CMP)), a, c, self.tensor(env, s, b, depth), self.pick([0.0, -0.5]))
            x, y = (s, self.sub_shape(s)) if self.coin() else (self.sub_shape(s), s)
            return Where(self.pick(list(_CMP)), a, c, self.tensor(env, x, b, depth), self.tensor(env, y, b, depth))
        if kind == "reduce":
            return self.reduce(env, s, b, depth)
        if kind == "matmul":
            return self.matmul(env, s, b, depth)
        if kind == "softmax":
            return Softmax(self.tensor(env, s, b, depth), self.int(-len(s), len(s) - 1))
        if kind == "layer_norm":
            w = Const((s[-1],), self.seed()) if self.coin() else Full((s[-1],), 1.0)
            return LayerNorm(self.tensor(env, s, b, depth), w, Const(self.sub_shape(s), self.seed()))
        if kind == "transpose":
            return Transpose(self.tensor(env, (s[1], s[0]), b, depth), self.pick(["fn", "attr"]))
        if kind == "index":
            if s and self.coin():  # x[i:i+s0] on a longer first axis
                extra = self.int(0, 2)
                i = self.int(0, extra)
                return TIndex(self.tensor(env, (s[0] + extra,) + s[1:], b, depth), i, i + s[0])
            d = self.int(1, 3)
            return TIndex(self.tensor(env, (d,) + s, b, depth), self.int(-d, d - 1))
        if kind == "fold":
            return self.fold_like(env, s, b, depth)
        raise AssertionError(kind)

    def reduce(self, env, s, b, depth):
        op, style = self.pick(["sum", "mean", "max", "min"]), self.pick(["ft", "np"])
        ones = [i for i, d in enumerate(s) if d == 1]
        modes = ["all"] if not s else []
        if len(s) < 3:
            modes.append("drop")
        if ones:
            modes.append("keep")
        mode = self.pick(modes)
        if mode == "all":  # s == (): reduce everything
            return Reduce(op, self.tensor(env, self.shape(), b, depth), None, False, style)
        if mode == "keep":
            i = self.pick(ones)
            xs = s[:i] + (self.int(1, 3),) + s[i + 1:]
            axis = i if self.coin() else i - len(s)
            return Reduce(op, self.tensor(env, xs, b, depth), axis, True, style)
        i = self.int(0, len(s))
        xs = s[:i] + (self.int(1, 3),) + s[i:]
        axis = i if self.coin() else i - len(xs)
        return Reduce(op, self.tensor(env, xs, b, depth), axis, False, style)

    def weight(self, shape):
        """A matmul weight: a captured constant, or a (possibly shared) weight argument."""
        if self.cfg.weight_args and self.coin():
            same = [w for w in self.s.weights if w.shape == shape]
            if same and self.coin():
                return Ref(same[0].name)
            w = ArgSpec(f"w{len(self.s.weights)}", shape, None, 0, self.seed())
            self.s.weights.append(w)
            return Ref(w.name)
        return Const(shape, self.seed())

    def matmul(self, env, s, b, depth):
        k = self.int(1, 3)
        style = self.pick(["op", "fn"])
        if len(s) == 2 and self.coin():  # W @ x
            return MatMul(self.weight((s[0], k)), self.tensor(env, (k, s[1]), b, depth), style)
        return MatMul(self.tensor(env, s[:-1] + (k,), b, depth), self.weight((k, s[-1])), style)

    def adapt(self, e, p, s):
        """Turn a tensor expression of shape `p` into one of shape `s`."""
        if tuple(p) == tuple(s):
            return e
        if _broadcasts_to(p, s):
            if self.coin():
                return Binary("add", Full(s, 0.0), e)
            return Binary(self.pick(["add", "mul"]), e, Const(s, self.seed()))
        return self.adapt(Reduce(self.pick(["mean", "sum", "max"]), e), (), s)

    def leaf(self, env, s):
        cfg = self.cfg
        tvars = [n for n in reversed(env) if isinstance(env[n], TT)]
        lvars = [n for n in reversed(env) if isinstance(env[n], LT)]
        opts = (["var"] * 4 if tvars else []) + ["const", "full"]
        lidx = [n for n in lvars if isinstance(env[n].elem, TT) and (env[n].n or 0) > 0]
        stackable = [n for n in lidx if env[n].elem.dtype == "f64" and env[n].n <= 3 and len(env[n].elem.shape) < 3]
        if lidx and "lindex" in cfg.cell_ops:
            opts.append("lindex")
        if stackable and "stack" in cfg.cell_ops:
            opts.append("stack")
        if lvars and "length" in cfg.cell_ops:
            opts.append("length")
        kind = self.pick(opts)
        if kind == "var":
            name = self.pick(tvars)
            t = env[name]
            if t.dtype == "i64":
                return self.adapt(IdxFloat(Ref(name)), (), s)
            return self.adapt(Ref(name), t.shape, s)
        if kind == "const":
            return Const(s, self.seed())
        if kind == "full":
            return Full(s, self.pick([0.0, 1.0, -0.5, 2.0]))
        if kind == "lindex":
            name = self.pick(lidx)
            t = env[name]
            e = LIndex(Ref(name), self.int(-t.n, t.n - 1))
            return self.adapt(IdxFloat(e), (), s) if t.elem.dtype == "i64" else self.adapt(e, t.elem.shape, s)
        if kind == "stack":
            name = self.pick(stackable)
            t = env[name]
            return self.adapt(Stack(Ref(name), t.n), (t.n,) + t.elem.shape, s)
        if kind == "length":
            return self.adapt(LengthF(Ref(self.pick(lvars))), (), s)
        raise AssertionError(kind)

    # -- lists ---------------------------------------------------------------------------------
    def source(self, env, budget, depth, max_ops=2):
        """A list expression and its type: a bound list, a list from a tensor, or a nested
        map/scan, followed by up to `max_ops` access operators."""
        cfg = self.cfg
        lvars = [n for n in reversed(env) if isinstance(env[n], LT)]
        opts = ["var"] * 3 if lvars else []
        if "repeat" in cfg.access_ops:
            opts.append("repeat")
        if "slices" in cfg.access_ops:
            opts.append("slices")
        if depth > 0 and self.s.combs < cfg.max_combs and any(c in cfg.combinators for c in ("map", "scan")):
            opts += ["comb"] * 2
        if not opts:
            opts = ["slices_forced"]
        kind = self.pick(opts)
        if "comb" in opts and self.take_nest_hint():
            kind = "comb"
        if kind == "var":
            name = self.pick(lvars)
            e, t = Ref(name), env[name]
        elif kind == "repeat":
            s = self.shape()
            n = self.int(0, 3)
            e, t = Access("repeat", (self.tensor(env, s, min(budget, 1), 0),), (("n", n),)), LT(TT(s), ("n", n))
        elif kind in ("slices", "slices_forced"):
            s = (self.int(1, 3),) + self.shape(1)
            axis = self.int(-len(s), len(s) - 1)
            rest = s[:axis % len(s)] + s[axis % len(s) + 1:]
            e = Access("slices", (self.tensor(env, s, min(budget, 1), 0),), (("axis", axis),))
            t = LT(TT(rest), ("n", s[axis]))
        else:
            e, t = self.list_comb(env, budget, depth)
        for _ in range(self.int(0, max_ops)):
            e, t = self.access(env, e, t)
        return e, t

    def access(self, env, e, t):
        """Apply one random valid access operator to the list `e` of type `t`."""
        cfg = self.cfg
        deeper = _list_depth(t) < cfg.max_list_depth
        opts = ["reverse", "slice", "enumerate"]
        if t.n:
            opts.append("gather")
        if deeper:
            opts += ["window", "shifted_window", "dilate", "split", "repeat"]
            if _plain(t):
                opts.append("product")
        opts += ["interleave_dilate", "zip", "join"]
        if isinstance(t.elem, LT):
            opts.append("flatten")
        opts = [o for o in opts if self.access_ok(o)]
        if not opts:
            return e, t
        op = self.pick(opts)
        n = t.n
        if op == "reverse":
            return Access("reverse", (e,)), t
        if op == "slice":
            start = self.pick([None, 0, 1, -1, 2, -3])
            stop = self.pick([None, -1, 2, 3, 0, 5])
            step = self.pick([None, 1, -1, 2, -2])
            lid = ("n", len(range(n)[start:stop:step])) if n is not None else self.lid()
            return Access("slice", (e,), (("start", start), ("stop", stop), ("step", step))), LT(t.elem, lid)
        if op == "gather":
            idx = tuple(self.int(-n, n - 1) for _ in range(self.int(0, 4)))
            return Access("gather", (e,), (("indices", idx),)), LT(t.elem, ("n", len(idx)))
        if op == "enumerate":
            return Access("enumerate", (e,)), LT(TupT((TT((), "i64"), t.elem)), t.lid)
        if op == "window":
            size, stride, dilation = self.int(1, 3), self.int(1, 2), self.int(1, 2)
            padding = self.pick([0, 1, 2, (1, 0), (2, 0), (0, 1)])  # a pair: (before, after), causal (k, 0)
            pad_value = self.pick([0, 0.5, -1.0]) if _tensorish(t.elem) else 0  # lists pad with empty lists
            params = (("size", size), ("stride", stride), ("dilation", dilation), ("padding", padding),
                      ("pad_value", pad_value))
            lid = ("n", _window_count(n, size, stride, dilation, padding)) if n is not None else self.lid()
            elem = self.padded_elem(t.elem) if padding else t.elem
            return Access("window", (e,), params), LT(LT(elem, ("n", size)), lid)
        if op == "shifted_window":
            size = self.pick([1, 3])
            return Access("shifted_window", (e,), (("size", size), ("dilation", self.int(1, 2)))), \
                LT(LT(t.elem, ("n", size)), t.lid)
        if op == "dilate":
            d = self.int(1, 3)
            return Access("dilate", (e,), (("d", d),)), LT(LT(t.elem, self.lid()), ("n", d))
        if op == "interleave_dilate":
            return Access("interleave_dilate", (e,), (("d", self.int(1, 3)),)), t
        if op == "split":
            k = self.int(1, 3)
            return Access("split", (e,), (("n", k),)), LT(LT(t.elem, self.lid()), ("n", k))
        if op == "repeat":
            k = self.int(0, 3)
            return Access("repeat", (e,), (("n", k),)), LT(t, ("n", k))
        if op == "flatten":
            return Access("flatten", (e,)), LT(t.elem.elem, self.lid())
        if op == "product":
            others = [nm for nm in reversed(env) if isinstance(env[nm], LT) and _plain(env[nm])
                      and _list_depth(env[nm]) + _list_depth(t) < cfg.max_list_depth + 1]
            if not others:
                return Access("reverse", (e,)), t
            o = self.pick(others)
            a, b, ta, tb = (e, Ref(o), t, env[o]) if self.coin() else (Ref(o), e, env[o], t)
            return Access("product", (a, b)), LT(LT(TupT((ta.elem, tb.elem)), tb.lid), ta.lid)
        if op == "zip":
            same = [nm for nm in reversed(env) if isinstance(env[nm], LT) and env[nm].lid == t.lid]
            other_e, other_t = (Ref(same[0]), env[same[0]]) if same and self.coin() else \
                (Access("reverse", (e,)), t)
            parts = [(e, t), (other_e, other_t)]
            if self.coin():
                parts.reverse()
            return Access("zip", tuple(p for p, _ in parts)), LT(TupT(tuple(q.elem for _, q in parts)), t.lid)
        if op == "join":
            same = [nm for nm in reversed(env) if isinstance(env[nm], LT) and env[nm].elem == t.elem]
            other = Ref(same[0]) if same and self.coin() else Access("reverse", (e,))
            m = env[same[0]].n if isinstance(other, Ref) else n
            lid = ("n", n + m) if n is not None and m is not None else self.lid()
            return Access("join", (e, other) if self.coin() else (other, e)), LT(t.elem, lid)
        raise AssertionError(op)

    # -- combinators --------------------------------------------------------------------------
    def states(self, env, first_shape, budget):
        """Initial states (shapes and init expressions read from `env`, e.g. outer elements)."""
        shapes = [first_shape] + ([self.shape()] if self.coin() else [])
        tuple_out = len(shapes) > 1 or self.coin()
        init = tuple(self.tensor(env, sh, min(budget, 1), 0) for sh in shapes)
        return shapes, init, tuple_out

    def update(self, env, state, shape, budget, depth):
        """The new value of one state: often mixes the state with a fresh expression."""
        e = self.tensor(env, shape, budget, depth)
        mode = self.pick(["mix", "plain", "rnn"])
        if mode == "mix":
            return Binary(self.pick(["add", "maximum", "sub", "minimum"]), Ref(state), e, self.pick(["op", "fn"]))
        if mode == "rnn" and shape and "matmul" in self.cfg.cell_ops:
            k = shape[-1]
            return Unary("tanh", Binary("add", MatMul(Ref(state), self.weight((k, k))), e))
        return e

    def fold_like(self, env, s, budget, depth):
        """A fold or reduce whose (first) state has shape `s`."""
        cfg = self.cfg
        kinds = [k for k in ("fold", "reduce") if k in cfg.combinators]
        kind = self.pick(kinds)
        self.s.combs += 1
        if kind == "reduce":
            src, t = self.reduce_source(env, s, budget, depth)
            acc, x = self.fresh("acc"), self.fresh("e")
            op = self.pick(["add", "maximum", "minimum"])
            init = self.tensor(env, s, min(budget, 1), 0)
            return Comb("reduce", (src,), (x,), (Binary(op, Ref(acc), Ref(x), self.pick(["op", "fn"])),),
                        (init,), (acc,), as_function=self.fn_body())
        src, t = self.source(env, budget, depth - 1)
        body = dict(env)
        pat = self.bind(self.element(t), body)
        shapes, init, tuple_out = self.states(env, s, budget)
        names = tuple(self.fresh("s") for _ in shapes)
        for nm, sh in zip(names, shapes):
            body[nm] = TT(sh)
        results = tuple(self.update(body, nm, sh, budget, depth - 1) for nm, sh in zip(names, shapes))
        c = Comb("fold", (src,), (pat,), results, init, names, tuple_out, self.coin(), self.fn_body())
        return Proj(c, 0) if tuple_out else c

    def reduce_source(self, env, s, budget, depth):
        """A list of float64 tensors of shape `s`: a bound one, or a map producing one."""
        lvars = [n for n in reversed(env) if isinstance(env[n], LT) and env[n].elem == TT(s)]
        if lvars and self.coin():
            name = self.pick(lvars)
            e, t = Ref(name), env[name]
            if self.coin() and self.access_ok("reverse"):
                e = Access("reverse", (e,))
            return e, t
        src, t = self.source(env, budget, depth - 1)
        body = dict(env)
        pat = self.bind(self.element(t), body)
        self.s.combs += 1
        return Comb("map", (src,), (pat,), (self.tensor(body, s, budget, depth - 1),),
                    as_function=self.fn_body()), LT(TT(s), t.lid)

    def list_comb(self, env, budget, depth):
        """A map or scan producing a list (zipping multiple results back into one list)."""
        cfg = self.cfg
        kind = self.pick([k for k in ("map", "scan") if k in cfg.combinators])
        self.s.combs += 1
        src, t = self.source(env, budget, depth - 1)
        body = dict(env)
        if kind == "map":
            srcs, types = [src], [t]
            if self.coin():  # a second list of the same length
                same = [nm for nm in reversed(env) if isinstance(env[nm], LT) and env[nm].lid == t.lid]
                if same and self.coin():
                    srcs.append(Ref(same[0]))
                    types.append(env[same[0]])
                elif self.access_ok("reverse"):
                    srcs.append(Access("reverse", (src,)))
                    types.append(t)
            pats = tuple(self.bind(self.element(ty), body) for ty in types)
            outs = [self.value(body, budget, depth - 1) for _ in range(self.int(1, 2))]
            tuple_out = len(outs) > 1 or self.coin()
            c = Comb("map", tuple(srcs), pats, tuple(e for e, _ in outs), tuple_out=tuple_out,
                     as_function=self.fn_body())
            out_types = [LT(ot, t.lid) for _, ot in outs]
        else:
            pat = self.bind(self.element(t), body)
            shapes, init, tuple_out = self.states(env, self.shape(), budget)
            names = tuple(self.fresh("s") for _ in shapes)
            for nm, sh in zip(names, shapes):
                body[nm] = TT(sh)
            results = tuple(self.update(body, nm, sh, budget, depth - 1) for nm, sh in zip(names, shapes))
            c = Comb("scan", (src,), (pat,), results, init, names, tuple_out, self.coin(), self.fn_body())
            out_types = [LT(TT(sh), t.lid) for sh in shapes]
        if not tuple_out:
            return c, out_types[0]
        if len(out_types) == 2 and self.coin() and self.access_ok("zip"):
            return Access("zip", (Proj(c, 0), Proj(c, 1))), LT(TupT((out_types[0].elem, out_types[1].elem)), t.lid)
        j = self.int(0, len(out_types) - 1)
        return Proj(c, j), out_types[j]


@st.composite
def program_descs(draw, config: GenConfig = DEFAULT_CONFIG) -> ProgramDesc:
    """Random well-typed program descriptions with their input data (see the module doc)."""
    return _Gen(draw, config).program()


__all__ = ["ArgSpec", "Ref", "Const", "Full", "Unary", "Binary", "Scalar", "MatMul", "Reduce", "Softmax",
           "LayerNorm", "Where", "Transpose", "TIndex", "IdxFloat", "LengthF", "LIndex", "Stack", "Proj",
           "Access", "Comb", "ProgramDesc", "GenConfig", "DEFAULT_CONFIG", "program_descs", "build",
           "make_arg", "make_args", "flat_args", "assert_values_close", "const_value"]
