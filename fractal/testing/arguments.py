"""`arguments_for(f)`: a strategy of whole argument tuples, read from a function's annotations.

    class Params(NamedTuple):
        w: ft.Tensor[(4, 4), ft.float64]
        b: ft.Tensor[(1, 4), ft.float64]

    @ft.function
    def model(xs: ft.FractalTensor[ft.Tensor[(1, 4), ft.float64]], p: Params): ...

    arguments_for(model)                         # (xs, Params(w, b)) tuples
    arguments_for(model, max_len=3, min_value=-1, max_value=1)
    arguments_for(model, sizes={"xs": {"max_len": 10}, "p.b": np.zeros((1, 4))})

Each parameter is drawn from its annotation: `ft.Tensor[...]` by `tensors`,
`ft.FractalTensor[...]` by `fractal_tensors`, a NamedTuple field by field, `tuple[A, B]` and
`ft.TupleType` part by part.  `sizes=` overrides a parameter, or a NamedTuple field by its dotted
path (`"p.b"`): a hypothesis strategy or a value is used as it is, a fractal type replaces the
annotation, and a dict holds options for that list (`min_len`, `max_len`, `lengths`, leaf
options...).  Lists that the model zips together must have equal lengths: name them in
`same_lengths=[("xs", "ys")]` and they share their lengths (a shallower list the outer levels
of a deeper one).  A parameter whose annotation cannot be drawn (none, a bare
`ft.FractalTensor`, `np.ndarray`) is a `FractalTypeError` naming it: annotate it, override it in
`sizes=`, or hand `check` your own `arguments=` strategy.
"""

from __future__ import annotations

import inspect
import sys
import typing

from hypothesis import strategies as st

from fractal.lang.errors import ArgumentError, FractalTypeError
from fractal.lang.function import Function
from fractal.lang.types import FractalTensorType, TensorType, TupleType

from .leaves import tensors
from .lists import check_bounds, fractal_tensors, list_lengths, truncate

__all__ = ["arguments_for"]

_LIST_OPTIONS = ("min_len", "max_len", "max_leaves", "lengths", "depth", "dtype")
_LEAF_OPTIONS = ("elements", "allow_nan", "allow_infinity", "allow_subnormal", "allow_signed_zero",
                 "min_value", "max_value")


def _hints(obj) -> dict:
    """The annotations of a function or a NamedTuple class, string ones (`from __future__ import
    annotations`) evaluated in its module as `ft.function` does; one that names something the
    module cannot see (a local class) stays a string, reported if its parameter is drawn."""
    if isinstance(obj, type):
        namespace = vars(sys.modules[obj.__module__]) if obj.__module__ in sys.modules else {}
    else:
        namespace = getattr(obj, "__globals__", {})
    out = {}
    for name, value in (getattr(obj, "__annotations__", None) or {}).items():
        if isinstance(value, typing.ForwardRef):  # a NamedTuple's string annotation
            value = value.__forward_arg__
        try:
            out[name] = eval(value, dict(namespace)) if isinstance(value, str) else value
        except Exception:
            out[name] = value
    return out


def _is_namedtuple(a) -> bool:
    return isinstance(a, type) and issubclass(a, tuple) and hasattr(a, "_fields")


class _Plan:
    """Turns annotations into a tree of draws, applying `sizes` overrides and `same_lengths` groups.

    A node is `("draw", strategy)`, `("tuple", nodes, cls)` (a NamedTuple class, or None for a
    plain tuple) or `("shared", type, options, group)` (a list drawn with its group's lengths)."""

    def __init__(self, owner: str, list_options: dict, leaf_options: dict, sizes: dict, groups: dict):
        self.owner, self.list_options, self.leaf_options = owner, list_options, leaf_options
        self.sizes, self.groups, self.used = sizes, groups, set()
        self.members: dict[str, FractalTensorType] = {}

    def node(self, annotation, path: str, options: dict | None = None):
        if path in self.sizes:
            self.used.add(path)
            override = self.sizes[path]
            if isinstance(override, st.SearchStrategy):
                return ("draw", override)
            if isinstance(override, dict):
                options = override
            elif _drawable(override):
                annotation = override
            else:
                return ("draw", st.just(override))
        if options is not None and not isinstance(annotation, (TensorType, FractalTensorType)):
            first = _first_part(annotation, path)
            raise ArgumentError(f"arguments_for({self.owner}): sizes[{path!r}] holds options, but {path!r} is a "
                                f"{_describe(annotation, False)}, not a list or a tensor; set the options of its "
                                f"parts, e.g. {first!r}")
        if isinstance(annotation, TensorType):
            return ("draw", tensors(annotation, **self._leaf(options, path)))
        if isinstance(annotation, FractalTensorType):
            merged = {**self.list_options, **self.leaf_options, **(options or {})}
            strategy = fractal_tensors(annotation, **merged)  # checks the options now
            if path in self.groups:
                self.members[path] = annotation
                rest = {k: v for k, v in merged.items() if k not in ("min_len", "max_len", "max_leaves", "lengths")}
                return ("shared", annotation, rest, self.groups[path])
            return ("draw", strategy)
        if isinstance(annotation, TupleType):
            return ("tuple", [self.node(a, f"{path}[{i}]") for i, a in enumerate(annotation.elems)], None)
        if _is_namedtuple(annotation):
            hints = _hints(annotation)
            return ("tuple", [self.node(hints.get(name), f"{path}.{name}") for name in annotation._fields],
                    annotation)
        if typing.get_origin(annotation) is tuple:
            parts = typing.get_args(annotation)
            if parts and parts[-1] is not Ellipsis:
                return ("tuple", [self.node(a, f"{path}[{i}]") for i, a in enumerate(parts)], None)
        raise FractalTypeError(
            f"arguments_for({self.owner}): {_what(path)} has {_describe(annotation)}, which says no shape, "
            f"dtype or depth to draw it from; annotate it (e.g. ft.FractalTensor[ft.Tensor[(1, 4), "
            f"ft.float32]]), pass sizes={{{path!r}: <a type, a strategy or a value>}}, or pass arguments= "
            f"(a strategy of argument tuples) to check")

    def _leaf(self, options, path):
        merged = {**self.leaf_options, **(options or {})}
        extra = sorted(set(merged) - set(_LEAF_OPTIONS))
        if extra:
            raise ArgumentError(f"arguments_for({self.owner}): sizes[{path!r}] sets {', '.join(extra)}, "
                                f"which a tensor does not take")
        return merged


def _what(path: str) -> str:
    return f"parameter {path!r}" if "." not in path and "[" not in path else f"the part {path!r}"


def _describe(annotation, article: bool = True) -> str:
    if annotation is None:
        return "no annotation"
    if isinstance(annotation, str):
        return f"the annotation {annotation!r}, which cannot be resolved"
    name = getattr(annotation, "__qualname__", None) or repr(annotation)
    return f"the annotation {name}" if article else name


def _first_part(annotation, path: str) -> str:
    if _is_namedtuple(annotation):
        return f"{path}.{annotation._fields[0]}" if annotation._fields else path
    return f"{path}[0]"


def _drawable(x) -> bool:
    return isinstance(x, (TensorType, FractalTensorType, TupleType)) or _is_namedtuple(x) \
        or typing.get_origin(x) is tuple


def arguments_for(f, *, min_len=0, max_len=6, max_leaves=64, sizes=None, same_lengths=(), **leaf_options):
    """A strategy of argument tuples for `f` (an `@ft.function` or a plain function), drawn from
    its parameters' annotations (see the module doc).  `min_len`, `max_len`, `max_leaves` bound
    every list; `leaf_options` (`min_value`, `allow_nan`, `elements`, ...) go to every leaf.

        >>> args = arguments_for(model, max_len=3).example()
        >>> model(*args)
    """
    fn = f.fn if isinstance(f, Function) else f
    if not callable(fn):
        raise FractalTypeError(f"arguments_for takes a function, got {type(f).__name__} {f!r:.40}")
    owner = getattr(f, "name", None) or getattr(fn, "__name__", "function")
    bad = sorted(set(leaf_options) - set(_LEAF_OPTIONS))
    if bad:
        raise ArgumentError(f"arguments_for({owner}): unknown option {', '.join(bad)}; the leaf options are "
                            f"{', '.join(_LEAF_OPTIONS)}")
    sizes = {} if sizes is None else sizes
    if not isinstance(sizes, dict) or not all(isinstance(k, str) for k in sizes):
        raise FractalTypeError(f"arguments_for({owner}): sizes= must be a dict from parameter names to "
                               f"strategies, values, types or option dicts, got {type(sizes).__name__}")
    groups = {}
    for g, group in enumerate(same_lengths):
        if not isinstance(group, (tuple, list)) or not all(isinstance(p, str) for p in group) or len(group) < 2:
            raise FractalTypeError(f"arguments_for({owner}): same_lengths= holds tuples of two or more "
                                   f"parameter names, got {group!r:.60}")
        for p in group:
            groups[p] = g
    list_options = dict(min_len=min_len, max_len=max_len, max_leaves=max_leaves)
    check_bounds(1, min_len, max_len, max_leaves, None, f"arguments_for({owner})")  # now, at the caller's line
    plan = _Plan(owner, list_options, dict(leaf_options), sizes, groups)
    signature = inspect.signature(fn)
    hints = _hints(fn)
    parts = []
    for name, p in signature.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty or name in sizes:
                raise FractalTypeError(f"arguments_for({owner}): parameter {name!r} is keyword-only, and an "
                                       f"argument tuple passes arguments by position: give it a default (it "
                                       f"keeps it), or pass arguments=")
            continue
        if name not in sizes and p.default is not p.empty and not _drawable(hints.get(name)):
            parts.append(("draw", st.just(p.default)))  # a static option: its default
            continue
        parts.append(plan.node(hints.get(name), name))
    unknown = sorted(set(sizes) - plan.used)
    if unknown:
        raise ArgumentError(f"arguments_for({owner}): sizes= names {', '.join(map(repr, unknown))}, which is "
                            f"not a parameter of {owner}{signature} (or a field of one)")
    missing = sorted(set(groups) - set(plan.members))
    if missing:
        raise ArgumentError(f"arguments_for({owner}): same_lengths= names {', '.join(map(repr, missing))}, "
                            f"which is not a FractalTensor-annotated parameter of {owner}")
    group_specs = _group_specs(plan, same_lengths)
    return st.composite(lambda draw: _draw_all(draw, parts, group_specs))()


def _group_specs(plan, same_lengths):
    """Per group: the depth of its deepest list, and the strategy of the lengths they share."""
    specs = []
    for group in same_lengths:
        depth = max(plan.members[p].depth for p in group)
        specs.append((depth, list_lengths(depth, **plan.list_options)))
    return specs


def _draw_all(draw, nodes, group_specs):
    shared = [draw(s) for _, s in group_specs]
    return tuple(_draw_node(draw, n, shared, group_specs) for n in nodes)


def _draw_node(draw, node, shared, group_specs):
    kind = node[0]
    if kind == "draw":
        return draw(node[1])
    if kind == "tuple":
        values = [_draw_node(draw, n, shared, group_specs) for n in node[1]]
        return tuple(values) if node[2] is None else node[2](*values)
    _, t, options, g = node
    lengths = truncate(shared[g], group_specs[g][0], t.depth)
    return draw(fractal_tensors(t, lengths=lengths, **options))
