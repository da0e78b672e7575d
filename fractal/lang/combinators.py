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

import numpy as np

from .errors import FractalTypeError, LengthError
from .tracing import ListTracer, Tracer, ZipTracer, current_frame, frame_scope, trace_scope, wrap
from .tree import TreeDef, flatten, unflatten
from .types import FractalTensorType, TupleType
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


def map(f, xs, *more):
    """Apply `f` to each outermost element; several lists are zipped into several arguments."""
    parts, trees = _lists("map", (xs,) + more)
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
        outs = run_map("map", body, parts)
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
    init_leaves, init_tree = flatten(init)
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

    states, final = run_scan(op, body, parts, tuple(init_leaves), reverse, keep=(op == "scan"))
    if op != "scan":
        return unflatten(init_tree, final)
    outs = tuple(FractalTensor.from_elements(t, [s[j] for s in states]) for j, t in enumerate(init_types))
    return unflatten(_list_tree(init_tree), outs)


def _check_state(op, init_tree, init_types, tree, types):
    if tree.out_tree() != init_tree.out_tree() or types != init_types:
        raise FractalTypeError(f"{op}: the state must keep its type, but init is {_show(init_types)} "
                               f"and f returns {_show(types)}")


def _abstract(f, parts, trees):
    """Output tree and types of `f` on one element, found by tracing it (for empty lists)."""
    with trace_scope() as trace, frame_scope(trace, None) as frame:
        elems = [frame.param(p.type.elem) for p in parts]
        leaves, tree = flatten(f(*_elements(trees, elems)))
        return tree, tuple(frame.lift(x).type for x in leaves)


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
