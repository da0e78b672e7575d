"""The op table: one row per primitive op, holding its shape rule and its NumPy rule.

Behaviour per op lives here as data rather than in if-chains: tracing asks a
row's `type_rule` for the output types, eager execution and the reference
interpreter call its `impl`.  Adding an op means adding one row (in
`tensor_ops.py` for cell ops, `access_ops.py` for list access operators);
combinators (map/scan/fold/reduce) carry regions and have their own table in
`combinators.py`.  The table is filled as those modules are imported, which the
`fractal.lang` package does; `fractal.lang.verify.known_ops()` names every op the IR
accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .types import AnyType

# type_rule(input_types, **params) -> tuple of output types; raises ShapeError/FractalTypeError
TypeRule = Callable[..., tuple[AnyType, ...]]
# impl(*input_values, **params) -> tuple of output values
Impl = Callable[..., tuple[Any, ...]]


@dataclass(frozen=True)
class OpDef:
    name: str
    type_rule: TypeRule
    impl: Impl
    kind: str  # "tensor" (cell op) or "access" (list access operator)
    doc: str = ""


OPS: dict[str, OpDef] = {}


def register(name: str, kind: str, type_rule: TypeRule, doc: str = ""):
    """Decorator registering `impl` as the NumPy rule of op `name`."""

    def wrap(impl: Impl) -> Impl:
        if name in OPS:
            raise RuntimeError(f"op {name!r} registered twice")
        OPS[name] = OpDef(name, type_rule, impl, kind, doc or (impl.__doc__ or "").strip())
        return impl

    return wrap
