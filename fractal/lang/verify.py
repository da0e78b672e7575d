"""`verify()`: the typing and scoping rules of the program IR.

* every variable is defined once, before use, in its region or an enclosing one;
* every op is known, and its outputs have the types its shape rule gives;
* a combinator's region takes (state..., element...) and yields the state types
  (scan/fold/reduce) or the element results (map), and its outputs wrap them.
"""

from __future__ import annotations

import functools
import inspect

from . import access_ops, tensor_ops  # noqa: F401  (they fill the op table)
from .combinators import COMBINATORS
from .errors import FractalError, VerifyError
from .ir_nodes import Eqn, Region
from .registry import OPS
from .types import FractalTensorType


def known_ops() -> frozenset[str]:
    """Every op name the IR accepts: primitive ops plus the combinators."""
    return frozenset(OPS) | frozenset(COMBINATORS)


@functools.lru_cache(maxsize=None)
def operand_count(op: str) -> int | None:
    """How many operands primitive `op` takes (None: any number, as `concat`), read off its row:
    the NumPy rule's required positional parameters, less those the shape rule takes as
    parameters (`gather(xs, indices)` takes one operand, `xs`, and the parameter `indices`)."""
    opdef = OPS[op]
    impl = inspect.signature(opdef.impl).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in impl):
        return None
    attrs = set(list(inspect.signature(opdef.type_rule).parameters)[1:])
    return sum(1 for p in impl if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               and p.default is inspect.Parameter.empty and p.name not in attrs)


def verify_program(program) -> None:
    """Check `program`, a `Program` (read by its fields: `fractal.lang.ir` builds on this
    module); raises `VerifyError`."""
    seen: set[str] = set()
    _region(program.body, [], seen)
    n = len(program.results)
    if _count(program.out_tree) != n:
        raise VerifyError(f"{program.name}: out_tree {program.out_tree} does not match {n} results")


def _count(tree) -> int:
    return 1 if tree is None else sum(_count(c) for c in tree)


def _region(region: Region, scopes: list[set], seen: set[str]) -> None:
    scope: set = set()
    for v in region.params:
        _define(v, scope, seen, None)
    for eqn in region.eqns:
        for v in eqn.inputs:
            if v not in scope and not any(v in s for s in scopes):
                raise VerifyError(f"{eqn.op}: %{v.name} is used before it is defined or out of its scope",
                                  eqn.loc)
        _check_eqn(eqn, scopes + [scope], seen)
        for v in eqn.outputs:
            _define(v, scope, seen, eqn)
    for v in region.results:
        if v not in scope and not any(v in s for s in scopes):
            raise VerifyError(f"yield of %{v.name}, which is not defined in scope")


def _define(v, scope, seen, eqn) -> None:
    if v.name in seen:
        raise VerifyError(f"%{v.name} is defined twice", eqn.loc if eqn else None)
    seen.add(v.name)
    scope.add(v)


def _check_eqn(eqn: Eqn, scopes, seen) -> None:
    if eqn.op in COMBINATORS:
        _check_combinator(eqn, scopes, seen)
        return
    if eqn.op not in OPS:
        raise VerifyError(f"unknown op {eqn.op!r}", eqn.loc)
    if eqn.regions:
        raise VerifyError(f"{eqn.op} takes no regions", eqn.loc)
    n = operand_count(eqn.op)
    if n is not None and len(eqn.inputs) != n:
        raise VerifyError(f"{eqn.op} takes {n} operand{'s' if n != 1 else ''}, got {len(eqn.inputs)}", eqn.loc)
    try:
        types = OPS[eqn.op].type_rule(tuple(v.type for v in eqn.inputs), **eqn.attrs)
    except FractalError as e:
        raise VerifyError(f"{eqn.op}: {e.message}", eqn.loc) from None
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:  # parameters of the wrong kind
        raise VerifyError(f"{eqn.op}: bad parameters {eqn.attrs}: {e}", eqn.loc) from None
    got = tuple(v.type for v in eqn.outputs)
    if got != tuple(types):
        raise VerifyError(f"{eqn.op}: outputs are typed {_s(got)} but the op gives {_s(types)}", eqn.loc)


def _check_combinator(eqn: Eqn, scopes, seen) -> None:
    if len(eqn.regions) != 1:
        raise VerifyError(f"{eqn.op} needs exactly one region", eqn.loc)
    region = eqn.regions[0]
    k = eqn.attrs.get("n_state", 0)
    states, lists = eqn.inputs[:k], eqn.inputs[k:]
    if not lists or any(not isinstance(v.type, FractalTensorType) for v in lists):
        raise VerifyError(f"{eqn.op}: iterated inputs must be FractalTensors", eqn.loc)
    expected = tuple(v.type for v in states) + tuple(v.type.elem for v in lists)
    params = tuple(v.type for v in region.params)
    if params != expected:
        raise VerifyError(f"{eqn.op}: region takes {_s(params)} but should take {_s(expected)}", eqn.loc)
    _region(region, scopes, seen)
    results = tuple(v.type for v in region.results)
    if k and results != tuple(v.type for v in states):
        raise VerifyError(f"{eqn.op}: region yields {_s(results)} but the state is "
                          f"{_s(tuple(v.type for v in states))}", eqn.loc)
    wrapped = tuple(FractalTensorType(t) for t in results) if eqn.op in ("map", "scan") else results
    got = tuple(v.type for v in eqn.outputs)
    if got != wrapped:
        raise VerifyError(f"{eqn.op}: outputs are typed {_s(got)} but should be {_s(wrapped)}", eqn.loc)


def _s(types) -> str:
    return "(" + ", ".join(map(str, types)) + ")"
