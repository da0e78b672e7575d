"""The combinators `map`, `scan`, `fold` and `reduce`: eager, traced and interpreted.

Semantics (`xs = [x0, ..., xn-1]`, `f` the user function):

* `map(f, xs, *more)`:  `[f(x0, y0, ...), ...]`; several lists are zipped (equal lengths).
* `scan(f, xs, init)`:  the n states `s(i+1) = f(s(i), x(i))`, `s0 = init` excluded
  (FractalTensor's inclusive `scanl`); `reverse=True` runs from the right and
  returns the states in the original element order (`scanr`).
* `fold(f, xs, init)`:  the last state (`init` for an empty list).
* `reduce(f, xs, init)`: the value of `fold`; `f` is declared associative so
  backends may re-associate it (the reference interpreter folds left).

The loops themselves (`run_map`, `run_scan`) are shared by eager execution
(where the body is the user's Python function) and the reference interpreter
(where it is an IR region).
"""

from __future__ import annotations

import inspect
import os
from types import FunctionType

import numpy as np

from .errors import (FractalError, FractalTypeError, LengthError, ShapeError, SourceLoc, _is_internal,
                     _short_path, user_location)
from .tracing import ListTracer, Tracer, ZipTracer, current_frame, frame_scope, trace_scope, wrap
from .tree import TreeDef, flatten, unflatten
from .types import FractalTensorType, TensorType, TupleType, float32
from .values import FractalTensor, type_of

# -- the loops ------------------------------------------------------------------------------


def common_length(op: str, lists) -> int:
    lengths = [len(x) for x in lists]
    if len(set(lengths)) > 1:
        raise LengthError(f"{op}: the lists have different lengths {lengths}; zipped lists must be equally long")
    return lengths[0]


def run_map(op: str, body, lists, out_types=None) -> tuple:
    """`body(*elements) -> tuple of leaves` for each position; packs each output into a list."""
    n = common_length(op, lists)
    results = [tuple(body(*(xs[i] for xs in lists))) for i in range(n)]
    if out_types is None:
        out_types = _consistent_types(op, results)
    return tuple(FractalTensor.from_elements(t, [r[j] for r in results]) for j, t in enumerate(out_types))


def run_scan(op: str, body, lists, init: tuple, reverse: bool, keep: bool, check=None):
    """Thread the state through the elements; returns (all states or None, final state)."""
    n = common_length(op, lists)
    state, states = tuple(init), [None] * n
    for i in (reversed(range(n)) if reverse else range(n)):
        state = tuple(body(*state, *(xs[i] for xs in lists)))
        if check is not None:
            check(state)
        if keep:
            states[i] = state
    return states, state


def _consistent_types(op, results):
    types = [tuple(type_of(v) for v in r) for r in results]
    for i, t in enumerate(types[1:], 1):
        if t != types[0]:
            raise FractalTypeError(f"{op}: f returned {_show(types[0])} for element 0 but {_show(t)} "
                                   f"for element {i}; every element must give the same types")
    return types[0] if types else ()


def _show(types) -> str:
    # not `map(str, ...)`: this module's `map` is the combinator, which shadows the builtin
    return "(" + ", ".join(str(t) for t in types) + ")" if len(types) != 1 else str(types[0])


# -- user-facing combinators ----------------------------------------------------------------

def _lists(op: str, args) -> tuple[list, list[TreeDef]]:
    """Flatten list arguments (zipped ones into components) and the trees of one element each."""
    parts, elem_trees = [], []
    for a in args:
        if not isinstance(a, (FractalTensor, ListTracer, ZipTracer)):
            what = f"a Python {type(a).__name__}" if isinstance(a, (list, tuple)) else \
                f"a tensor {type_of(a)}" if not isinstance(a, Tracer) else f"a traced tensor {a.type}"
            raise FractalTypeError(f"{op}: iterates over FractalTensors, but got {what}"
                                   + ("; build one with ft.fractal(...)" if isinstance(a, (list, tuple)) else
                                      "; use ft.slices(t) to iterate over a tensor's rows"))
        leaves, tree = flatten(a)
        parts += leaves
        elem_trees.append(_elem_tree(tree))
    return parts, elem_trees


def _elem_tree(tree: TreeDef) -> TreeDef:
    """The tree of one element of a (possibly zipped) list."""
    if tree.kind == "leaf":
        return tree
    children = tuple(_elem_tree(c) for c in tree.children)
    if isinstance(tree.cls.elem, TupleType):
        return TreeDef("tuple", children)
    return TreeDef("zip", children, tree.cls.elem)


def _list_tree(tree: TreeDef) -> TreeDef:
    """The tree of a list whose elements have `tree` (zipped results of map/scan)."""
    if tree.kind == "leaf":
        return tree
    children = tuple(_list_tree(c) for c in tree.children)
    if tree.kind == "tuple":
        return TreeDef("tuple", children, tree.cls)
    return TreeDef("zip", children, FractalTensorType(tree.cls))


def _elements(elem_trees, leaves) -> list:
    out, k = [], 0
    for t in elem_trees:
        out.append(unflatten(t, leaves[k:k + t.num_leaves]))
        k += t.num_leaves
    return out


def _tracing(*values) -> bool:
    return current_frame() is not None or any(isinstance(v, (Tracer, ZipTracer)) for v in values)


def check_body(op: str, f, n: int, what: str) -> None:
    """`f` is a function that can take the `n` arguments `op` passes it (`what` they are)."""
    if not callable(f):
        r = repr(f)
        raise FractalTypeError(f"{op}: the body must be a function, got {type(f).__name__} "
                               f"{r if len(r) <= 40 else r[:37] + '...'}")
    if _takes(getattr(f, "__wrapped__", f), n):  # (the common case, without inspect.signature's cost)
        return
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):  # (a builtin without a signature: its call says)
        return
    try:
        sig.bind(*range(n))
    except TypeError:
        name = getattr(f, "__name__", "f")
        raise FractalTypeError(f"{op}: the body {name}{sig} cannot be called with {n} argument"
                               f"{'s' if n != 1 else ''} ({what})") from None


def _takes(f, n: int) -> bool:
    """True when plain Python function `f` surely accepts `n` positional arguments (False: ask
    its signature)."""
    if not isinstance(f, FunctionType):
        return False
    code = f.__code__
    if code.co_kwonlyargcount > len(f.__kwdefaults__ or {}):  # a required keyword-only argument
        return False
    most = code.co_argcount if not code.co_flags & inspect.CO_VARARGS else n
    return code.co_argcount - len(f.__defaults__ or ()) <= n <= most


def map(f, xs, *more):
    """Apply `f` to each outermost element; several lists are zipped into several arguments."""
    parts, trees = _lists("map", (xs,) + more)
    check_body("map", f, len(trees), "one element of each list" if len(trees) > 1 else "one element")
    if _tracing(*parts):
        return _trace("map", f, parts, trees, None)
    out_tree = None

    def body(*elems):
        nonlocal out_tree
        leaves, out_tree = flatten(f(*_elements(trees, elems)))
        return leaves

    if len(parts[0]) == 0 or any(len(p) == 0 for p in parts):
        common_length("map", parts)
        out_tree, types = _abstract(f, parts, trees)
        outs = tuple(FractalTensor._empty(FractalTensorType(t)) for t in types)
    else:
        try:
            outs = run_map("map", body, parts)
        except FractalError:
            raise
        except _NUMPY_ERRORS as e:
            raise _eager_failure("map", f, parts, trees, None, e) from None
    return unflatten(_list_tree(out_tree), outs)


def scan(f, xs, init, *, reverse=False):
    """The n states after each step of `state = f(state, x)` (init excluded); tuples give tuples."""
    return _aggregate("scan", f, xs, init, reverse)


def fold(f, xs, init, *, reverse=False):
    """The final state of `state = f(state, x)` over xs (`init` for an empty list)."""
    return _aggregate("fold", f, xs, init, reverse)


def reduce(f, xs, init):
    """Like fold, with `f` declared associative so that backends may re-associate it."""
    return _aggregate("reduce", f, xs, init, False)


def _aggregate(op, f, xs, init, reverse):
    if not isinstance(reverse, bool):
        raise FractalTypeError(f"{op}: reverse= must be True or False, got {reverse!r}")
    parts, trees = _lists(op, (xs,))
    check_body(op, f, 2, "the state and one element")
    init_leaves, init_tree = flatten(init)
    init_leaves = _weak_floats(init_leaves, parts)
    if _tracing(*parts, *init_leaves):
        return _trace(op, f, parts, trees, (init_leaves, init_tree), reverse)
    # a Python number as initial state is a NumPy scalar array, as it is when traced (a constant)
    init_leaves = [np.asarray(v) if isinstance(v, (bool, int, float)) else v for v in init_leaves]
    init_types = tuple(type_of(v) for v in init_leaves)

    def body(*args):
        state = unflatten(init_tree, args[:len(init_leaves)])
        leaves, tree = flatten(f(state, *_elements(trees, args[len(init_leaves):])))
        _check_state(op, init_tree, init_types, tree, tuple(type_of(v) for v in leaves))
        return leaves

    if any(len(p) == 0 for p in parts):  # the body never runs: check its types as a trace would
        _abstract(f, parts, trees, (init_types, init_tree), op)
    try:
        states, final = run_scan(op, body, parts, tuple(init_leaves), reverse, keep=(op == "scan"))
    except FractalError:
        raise
    except _NUMPY_ERRORS as e:
        raise _eager_failure(op, f, parts, trees, (init_types, init_tree), e) from None
    if op != "scan":
        return unflatten(init_tree, final)
    outs = tuple(FractalTensor.from_elements(t, [s[j] for s in states]) for j, t in enumerate(init_types))
    return unflatten(_list_tree(init_tree), outs)


def _weak_floats(init_leaves, parts) -> list:
    """A Python float in the initial state is weakly typed, as next to a tensor: it takes the
    float dtype of the lists' elements (the first list with float leaves), else float32
    (fractal's default float), so `fold(f, xs, 0.0)` over float32 data keeps a float32 state."""
    if not any(isinstance(v, float) for v in init_leaves):
        return init_leaves
    dtype = next((leaf.dtype for leaf in (getattr(getattr(p, "type", None), "leaf", None) for p in parts)
                  if isinstance(leaf, TensorType) and np.dtype(leaf.dtype).kind == "f"), float32)
    return [np.asarray(v, dtype=dtype) if isinstance(v, float) else v for v in init_leaves]


def _check_state(op, init_tree, init_types, tree, types):
    if tree.out_tree() != init_tree.out_tree() or types != init_types:
        raise FractalTypeError(f"{op}: the state must keep its type, but init is {_show(init_types)} "
                               f"and f returns {_show(types)}")


def _abstract(f, parts, trees, init=None, op="map"):
    """Output tree and types of `f` on one element (and the state `init`, `(types, tree)`, of a
    scan, fold or reduce), found by tracing it: for empty lists, and to explain a failure."""
    with trace_scope() as trace, frame_scope(trace, None) as frame:
        states = [frame.param(t) for t in init[0]] if init else []
        elems = _elements(trees, [frame.param(p.type.elem) for p in parts])
        result = f(unflatten(init[1], states), *elems) if init else f(*elems)
        leaves, tree = flatten(result)
        types = tuple(frame.lift(x).type for x in leaves)
        if init:
            _check_state(op, init[1], init[0], tree, types)
        return tree, types


# what NumPy raises for a mistake in an eager body (`x @ w` of mismatched shapes, ...)
_NUMPY_ERRORS = (ValueError, TypeError, IndexError, ArithmeticError)
_NUMPY_DIR = os.path.dirname(np.__file__)


def _eager_failure(op, f, parts, trees, init, e: Exception) -> FractalError:
    """The error for an exception NumPy (or Python) raised in an eager body: the same body traced
    on the element types finds a shape or type mistake with fractal's message at the user's
    line; otherwise `e`'s message, at the innermost user line of its traceback."""
    try:
        _abstract(f, parts, trees, init, op)
    except (ShapeError, FractalTypeError, LengthError) as found:
        return found
    except Exception:  # noqa: BLE001  (a body that cannot be traced: report `e` itself)
        pass
    loc, tb = user_location(), e.__traceback__
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if not _is_internal(file) and not file.startswith(_NUMPY_DIR) and not file.startswith("<frozen"):
            loc = SourceLoc(_short_path(file), tb.tb_lineno, tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    elems = ", ".join(str(p.type.elem) for p in parts)
    state = f"state {_show(init[0])}, " if init else ""
    return FractalError(f"{op}: the body failed on the elements ({state}element {elems}): "
                        f"{type(e).__name__}: {e}", loc)


def _trace(op, f, parts, trees, init, reverse=False):
    frame = current_frame()
    list_vars = [frame.lift(p) for p in parts]
    n = next((p.static_len for p in parts if isinstance(p, ListTracer) and p.static_len is not None),
             next((len(p) for p in parts if isinstance(p, FractalTensor)), None))
    init_vars = [frame.lift(x) for x in init[0]] if init else []
    with frame_scope(frame.trace, frame) as body:
        states = [body.param(v.type) for v in init_vars]
        elems = _elements(trees, [body.param(v.type.elem) for v in list_vars])
        if init:
            result = f(unflatten(init[1], states), *elems)
        else:
            result = f(*elems)
        leaves, tree = flatten(result)
        out_vars = [body.lift(x) for x in leaves]
        region = body.region(out_vars)
    out_types = tuple(v.type for v in out_vars)
    if init:
        _check_state(op, init[1], tuple(v.type for v in init_vars), tree, out_types)
        tree = init[1]
    if op in ("map", "scan"):
        out_types = tuple(FractalTensorType(t) for t in out_types)
        tree = _list_tree(tree)
    params = {} if op == "map" else {"n_state": len(init_vars)}
    if op in ("scan", "fold"):
        params["reverse"] = reverse
    outs = frame.emit(op, init_vars + list_vars, out_types, params, (region,))
    return unflatten(tree, [wrap(v, frame, n if op in ("map", "scan") else None) for v in outs])


# -- the interpreter's rules ----------------------------------------------------------------

def _interp_map(eqn, values, run_region):
    region = eqn.regions[0]
    return run_map("map", lambda *e: run_region(region, e), values, [t.type.elem for t in eqn.outputs])


def _interp_aggregate(eqn, values, run_region):
    attrs = eqn.attrs
    k = attrs["n_state"]
    region = eqn.regions[0]
    states, final = run_scan(eqn.op, lambda *a: run_region(region, a), values[k:], values[:k],
                             attrs.get("reverse", False), keep=(eqn.op == "scan"))
    if eqn.op != "scan":
        return final
    return tuple(FractalTensor.from_elements(v.type.elem, [s[j] for s in states]) for j, v in enumerate(eqn.outputs))


# op -> rule(eqn, input values, run_region(region, args) -> results) -> output values
COMBINATORS = {"map": _interp_map, "scan": _interp_aggregate, "fold": _interp_aggregate,
               "reduce": _interp_aggregate}
