"""The NumPy reference interpreter: the semantics oracle for every later stage.

It walks a `Program`'s equations in order.  Primitive ops run their NumPy
rule from the op table; combinators run the loops of `combinators.py` with a
region as the body.  Errors are re-raised with the location of the equation
that failed, so a runtime mistake (a zip of unequal lengths, an index out of
range) points at the user's line.
"""

from __future__ import annotations

from collections import ChainMap

from .combinators import COMBINATORS
from .errors import FractalError, FractalTypeError
from .ir import Program, Region
from .registry import OPS
from .types import type_of


def run_program(program: Program, args) -> tuple:
    """Run `program` on flat argument values; returns the flat tuple of results."""
    params = program.params
    if len(args) != len(params):
        raise FractalTypeError(f"{program.name} takes {len(params)} flat arguments, got {len(args)}")
    for var, value in zip(params, args):
        if type_of(value) != var.type:
            raise FractalTypeError(f"argument %{var.name} of {program.name} must be {var.type}, got {type_of(value)}")
    return run_region(program.body, tuple(args), {})


def run_region(region: Region, args, outer) -> tuple:
    env = ChainMap(dict(zip(region.params, args)), outer)
    for eqn in region.eqns:
        values = [env[v] for v in eqn.inputs]
        try:
            rule = COMBINATORS.get(eqn.op)
            if rule is not None:
                outs = rule(eqn, values, lambda r, a: run_region(r, a, env))
            else:
                outs = OPS[eqn.op].impl(*values, **eqn.attrs)
        except FractalError as e:
            if getattr(e, "_located", False):
                raise
            err = type(e)(e.message, eqn.loc)
            err._located = True
            raise err from None
        except (ArithmeticError, ValueError, IndexError, TypeError) as e:
            err = FractalError(f"{eqn.op} failed at run time: {e}", eqn.loc)
            err._located = True
            raise err from e
        env.maps[0].update(zip(eqn.outputs, outs))
    return tuple(env[v] for v in region.results)
