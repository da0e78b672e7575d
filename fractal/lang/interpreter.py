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
from .errors import FractalError, FractalTypeError, located
from .ir_nodes import Region
from .registry import OPS
from .values import type_of


def run_program(program, args, progress=None) -> tuple:
    """Run `program` (a `Program`) on flat argument values; returns the flat tuple of results.

    `progress(done, total)` is called after each step of the top-level combinators."""
    params = program.params
    if len(args) != len(params):
        raise FractalTypeError(f"{program.name} takes {len(params)} flat arguments, got {len(args)}")
    for var, value in zip(params, args):
        if type_of(value) != var.type:
            raise FractalTypeError(f"argument %{var.name} of {program.name} must be {var.type}, got {type_of(value)}")
    return run_region(program.body, tuple(args), {}, _Progress(program, progress) if progress else None)


class _Progress:
    """Counts steps of the top-level combinators (each body run is one step)."""

    def __init__(self, program, report):
        self.report, self.done = report, 0
        self.total = 0  # grows as each top-level loop starts and its length becomes known

    def start(self, eqn, values) -> None:
        k = eqn.attrs.get("n_state", 0)
        self.total += len(values[k]) if len(values) > k else 0
        self.report(self.done, self.total)

    def step(self) -> None:
        self.done += 1
        self.report(self.done, self.total)


def run_region(region: Region, args, outer, progress: _Progress | None = None) -> tuple:
    env = ChainMap(dict(zip(region.params, args)), outer)
    for eqn in region.eqns:
        values = [env[v] for v in eqn.inputs]
        try:
            rule = COMBINATORS.get(eqn.op)
            if rule is not None and progress is not None:
                progress.start(eqn, values)

                def body(r, a, _env=env):
                    out = run_region(r, a, _env)
                    progress.step()
                    return out
                outs = rule(eqn, values, body)
            elif rule is not None:
                outs = rule(eqn, values, lambda r, a: run_region(r, a, env))
            else:
                outs = OPS[eqn.op].impl(*values, **eqn.attrs)
        except FractalError as e:
            raise located(e, eqn.loc) from None
        except (ArithmeticError, ValueError, IndexError, TypeError) as e:
            err = FractalError(f"{eqn.op} failed at run time: {e}", eqn.loc)
            err._located = True
            raise err from e
        env.maps[0].update(zip(eqn.outputs, outs))
    return tuple(env[v] for v in region.results)
