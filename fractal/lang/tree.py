"""Flattening nested Python structures (tuples, NamedTuples, zipped lists) to leaves.

The IR has no tuple variables: arguments, states and results are flattened to
leaves (tensors and plain lists) at trace time, and rebuilt from a `TreeDef`
around user code.  A zipped list (a list of tuples) flattens to its component
lists, so `ft.zip(a, b)` costs nothing in the IR beyond a length check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .tracing import Tracer, ZipTracer
from .types import FractalTensorType, TupleType
from .values import FractalTensor


@dataclass(frozen=True)
class TreeDef:
    """`kind` is "leaf", "tuple" (with `cls` for NamedTuples) or "zip" (with the list type)."""

    kind: str
    children: tuple["TreeDef", ...] = ()
    cls: Any = None

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(c.num_leaves for c in self.children)

    def out_tree(self):
        """The nesting as plain tuples of None (what `Program.out_tree` stores)."""
        if self.kind == "leaf":
            return None
        return tuple(c.out_tree() for c in self.children)


LEAF = TreeDef("leaf")


def _zipped_parts(x):
    """The component lists of a zipped list (value or tracer), or None for anything else."""
    if isinstance(x, FractalTensor) and x._parts is not None:
        return x._parts
    if isinstance(x, ZipTracer):
        return x.parts
    return None


# (The walks below are module functions, not closures calling themselves: a recursive closure
# is a reference cycle holding its leaves until the cyclic GC runs, which for a compiled
# function's results kept every output array alive, and its memory mapped, run after run.)

def flatten(x) -> tuple[list, TreeDef]:
    leaves: list = []
    return leaves, _flatten(x, leaves)


def _flatten(v, leaves: list) -> TreeDef:
    if isinstance(v, tuple):
        cls = type(v) if hasattr(v, "_fields") else None
        return TreeDef("tuple", tuple(_flatten(c, leaves) for c in v), cls)
    parts = _zipped_parts(v)
    if parts is not None:
        return TreeDef("zip", tuple(_flatten(p, leaves) for p in parts), v.type)
    leaves.append(v)
    return LEAF


def unflatten(tree: TreeDef, leaves) -> Any:
    return _unflatten(tree, iter(leaves))


def _unflatten(t: TreeDef, it) -> Any:
    if t.kind == "leaf":
        return next(it)
    children = [_unflatten(c, it) for c in t.children]
    if t.kind == "tuple":
        return t.cls(*children) if t.cls is not None else tuple(children)
    return make_zipped(t.cls, children)


def make_zipped(type_: FractalTensorType, parts):
    """A zipped list of type `type_` from its component lists (values or tracers)."""
    if any(isinstance(p, (Tracer, ZipTracer)) for p in parts):
        return ZipTracer(type_, tuple(parts))
    return FractalTensor._zipped(type_, tuple(parts))


def zipped_type(part_types) -> FractalTensorType:
    """The type of the zip of lists whose types are `part_types` (all at the outermost level)."""
    return FractalTensorType(TupleType(tuple(t.elem for t in part_types)))
