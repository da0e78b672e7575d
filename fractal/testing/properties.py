"""The algebraic properties a user may declare to `check` (`properties=`).

* `"associative"`: every `reduce` in the program has an associative body on the values it
  really combines.  While the reference interpreter runs the program on a drawn example, each
  `reduce(f, xs, init)` it meets is checked on the sequence `s = [init, xs[0], xs[1], ...]`:
  for each three consecutive values (at most `MAX_TRIPLES` per reduce),
  `f(f(s[i], s[i+1]), s[i+2])` must equal `f(s[i], f(s[i+1], s[i+2]))` within the dtype's
  tolerance.  (Backends may re-associate a reduce: this is what makes that legal.)  A reduce
  whose state is not of its elements' type cannot be associative in this sense: an error.
* `"reverse_scan"`: every `scan(..., reverse=True)` equals reversing its input lists, scanning
  forward and reversing the states.  The program with each reverse scan rewritten that way
  (`forward_scans`) is compiled and run on every backend, and must give the model's results on
  that backend within tolerance: it checks the backends' reverse scans (their own start at each
  ragged list's end) against their forward scans and the `reverse` access operator.

A property declared for a model that has no such combinator is an error naming it: nothing
would be checked.  `round_trip_problem` is the check every program gets, declared or not: its
text parses back to the same program.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import replace

from fractal.lang.combinators import COMBINATORS
from fractal.lang.errors import FractalError
from fractal.lang.function import Function
from fractal.lang.ir import Eqn, Program, Region, Var
from fractal.lang.registry import OPS

from .compare import compare

PROPERTIES = ("associative", "reverse_scan")
MAX_TRIPLES = 8

def unavailable(program: Program, name: str) -> str | None:
    """Why property `name` cannot be checked on `program`, or None when it can."""
    if name == "associative":
        reduces = [e for e in program.eqns() if e.op == "reduce"]
        if not reduces:
            return f"property 'associative' was declared, but {program.name} has no ft.reduce to check"
        for e in reduces:
            k = e.attrs["n_state"]
            state, elems = [v.type for v in e.inputs[:k]], [v.type.elem for v in e.inputs[k:]]
            if state != elems:
                return (f"property 'associative' cannot be checked for the reduce at {e.loc}: its state "
                        f"({', '.join(map(str, state))}) is not of its elements' type "
                        f"({', '.join(map(str, elems))}), so f(f(a, b), c) = f(a, f(b, c)) has no meaning")
        return None
    if name == "reverse_scan":
        if not any(e.op == "scan" and e.attrs.get("reverse") for e in program.eqns()):
            return f"property 'reverse_scan' was declared, but {program.name} has no ft.scan(..., reverse=True)"
        return None
    raise AssertionError(name)


def associativity_failures(program: Program, leaves, rtol=None, atol=None) -> list[str]:
    """Run `program` on `leaves` in the reference interpreter, checking each reduce's body on
    consecutive triples of the values it combines; one message per reduce that is not
    associative there."""
    failures: list[str] = []

    def visit(eqn, values, run_body):
        if eqn.op != "reduce" or len(failures) > 0:
            return
        k = eqn.attrs["n_state"]
        region = eqn.regions[0]
        lists = values[k:]
        seq = [tuple(values[:k])] + [tuple(xs[i] for xs in lists) for i in range(len(lists[0]))]

        def f(a, b):
            return tuple(run_body(region, (*a, *b)))

        for i in range(min(len(seq) - 2, MAX_TRIPLES)):
            a, b, c = seq[i:i + 3]
            left, right = f(f(a, b), c), f(a, f(b, c))
            diffs = compare(left, right, rtol=rtol, atol=atol, path="f(f(a, b), c)")
            if diffs:
                which = "init, xs[0], xs[1]" if i == 0 else f"xs[{i - 1}], xs[{i}], xs[{i + 1}]"
                failures.append(f"the reduce at {eqn.loc} is not associative on ({which}) of this example: "
                                f"{diffs[0]} against f(a, f(b, c))")
                return

    _walk(program.body, tuple(leaves), {}, visit)
    return failures


def _walk(region: Region, args, outer, visit) -> tuple:
    """The reference interpreter's `run_region`, calling `visit(eqn, values, run_body)` before
    each combinator runs."""
    env = ChainMap(dict(zip(region.params, args)), outer)
    for eqn in region.eqns:
        values = [env[v] for v in eqn.inputs]
        rule = COMBINATORS.get(eqn.op)
        if rule is not None:
            def run_body(r, a, _env=env):
                return _walk(r, a, _env, visit)
            visit(eqn, values, run_body)
            outs = rule(eqn, values, run_body)
        else:
            outs = OPS[eqn.op].impl(*values, **eqn.attrs)
        env.maps[0].update(zip(eqn.outputs, outs))
    return tuple(env[v] for v in region.results)


def forward_scans(program: Program) -> Program:
    """`program` with every `scan(..., reverse=True)` replaced by `reverse` of each input list,
    a forward scan, and `reverse` of each list of states."""
    names = {v.name for e in program.eqns() for v in e.outputs} | {v.name for v in program.params}
    for e in program.eqns():
        for r in e.regions:
            names |= {v.name for v in r.params}
    counter = iter(range(1 << 30))

    def fresh(v: Var) -> Var:
        while True:
            name = f"rev{next(counter)}"
            if name not in names:
                names.add(name)
                return Var(name, v.type)

    def rewrite(region: Region) -> Region:
        eqns = []
        for e in region.eqns:
            if e.regions:
                e = replace(e, regions=tuple(rewrite(r) for r in e.regions))
            if e.op != "scan" or not e.attrs.get("reverse"):
                eqns.append(e)
                continue
            k = e.attrs["n_state"]
            reversed_in = [fresh(v) for v in e.inputs[k:]]
            eqns += [Eqn("reverse", (v,), (r,), (), (), e.loc) for v, r in zip(e.inputs[k:], reversed_in)]
            states = [fresh(v) for v in e.outputs]
            params = tuple((name, False if name == "reverse" else value) for name, value in e.params)
            eqns.append(replace(e, inputs=tuple(e.inputs[:k]) + tuple(reversed_in), outputs=tuple(states),
                                params=params))
            eqns += [Eqn("reverse", (s,), (v,), (), (), e.loc) for s, v in zip(states, e.outputs)]
        return replace(region, eqns=tuple(eqns))

    return replace(program, body=rewrite(program.body))


class ForwardScans(Function):
    """`function` with its programs rewritten by `forward_scans`: compiled and run like it."""

    def __init__(self, function: Function):
        super().__init__(function.fn, function.name)
        self._original = function
        self._programs: dict = {}

    def traced_call(self, args, kwargs):
        program, out_tree, leaves, captured = self._original.traced_call(args, kwargs)
        rewritten = self._programs.get(program)
        if rewritten is None:
            rewritten = self._programs[program] = forward_scans(program)
        return rewritten, out_tree, leaves, captured


def round_trip_problem(program) -> str | None:
    """Why `program`'s text does not parse back to it (None when it does)."""
    from fractal.lang import parse_program

    text = str(program)
    try:
        parsed = parse_program(text)
    except FractalError as e:
        return f"the program's text does not parse back:\n{_indent(str(e))}\n\nthe text:\n{_indent(text)}"
    if parsed != program:
        again = str(parsed)
        first = next((i for i, (a, b) in enumerate(zip(text.splitlines(), again.splitlines())) if a != b), None)
        where = f" (line {first + 1}: {text.splitlines()[first]!r} vs {again.splitlines()[first]!r})" \
            if first is not None else ""
        return f"the program's text parses back to a different program{where}"
    return None


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
