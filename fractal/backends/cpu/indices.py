"""Tile-IR indices compiled to Python functions, evaluated per loop iteration or stage run.

A wavefront loop runs its stages thousands of times, so an index is never interpreted by
walking its `Aff`: it is turned once into Python source and compiled (`eval` of a lambda
built only from integers, `max`/`min`, `//`, `%` and variable lookups; variable names are
quoted with `repr`, so nothing in a program can inject code).

Two flavours: *scalar* (`e["s"]`, builtins `max`/`min`) for loop bounds, conditions and
view offsets, and *vector* (`np.maximum`/`np.minimum`), where stage variables are NumPy
index arrays over the stage box (the fancy-indexing fallback of `views`).  `compile_box` turns
a stage's dims into one function giving its box (starts and extents), None when empty.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import numpy as np

from fractal.lower.tile_affine import Aff, FloorDiv, Max, Min, Mod

_GLOBALS = {"__builtins__": {}, "max": max, "min": min, "_np": np}


def index_source(x, names: Mapping[str, str] | None = None, vector: bool = False) -> str:
    """Python source for an index; `names` maps variables to source (default `e['var']`)."""
    if isinstance(x, str):
        return names[x] if names is not None and x in names else f"e[{x!r}]"
    if isinstance(x, Aff):
        parts = [f"{c}*{index_source(t, names, vector)}" for t, c in x.terms]
        if x.const or not parts:
            parts.append(str(x.const))
        return "(" + " + ".join(parts) + ")"
    if isinstance(x, Max):
        fn = ("_np.minimum" if isinstance(x, Min) else "_np.maximum") if vector else \
            ("min" if isinstance(x, Min) else "max")
        args = [index_source(a, names, vector) for a in x.args]
        if not vector:
            return f"{fn}({', '.join(args)})"
        out = args[0]
        for a in args[1:]:  # NumPy's maximum/minimum are binary
            out = f"{fn}({out}, {a})"
        return out
    if isinstance(x, FloorDiv):
        return f"({index_source(x.e, names, vector)} % {x.c})" if isinstance(x, Mod) else \
            f"({index_source(x.e, names, vector)} // {x.c})"
    raise TypeError(f"not an index: {x!r}")


@functools.lru_cache(maxsize=4096)  # regions of a program repeat the same offsets
def compile_lambda(params: str, body: str) -> Callable:
    """`lambda params: body`, compiled once per distinct source."""
    return eval(f"lambda {params}: {body}", dict(_GLOBALS))  # noqa: S307 (source built from Affs above)


def compile_index(x, vector: bool = False) -> Callable[[Mapping[str, int]], int]:
    """`f(env) -> value` of one index."""
    return compile_lambda("e", index_source(x, vector=vector))


def compile_indices(xs) -> Callable[[Mapping[str, int]], tuple]:
    """`f(env) -> tuple of values` of several indices, in one call."""
    return compile_lambda("e", "(" + "".join(index_source(x) + ", " for x in xs) + ")")


def stage_var_atoms(x, stage_vars) -> bool:
    """Whether stage variables occur only as plain terms of the Aff (so it is affine in them)."""
    return all(isinstance(t, str) or not (t.vars() & set(stage_vars)) for t, _ in x.terms)


def compile_box(dims) -> Callable:
    """`f(env) -> (starts, extents)` of a stage box, or None when it holds no point."""
    if not dims:
        return lambda env: ((), ())
    lines = ["def box(e):"]
    for i, d in enumerate(dims):
        lines.append(f"    a{i} = {index_source(d.start)}")
        lines.append(f"    n{i} = {index_source(d.stop)} - a{i}")
        lines.append(f"    if n{i} <= 0: return None")
    names = range(len(dims))
    lines.append(f"    return ({''.join(f'a{i}, ' for i in names)}), ({''.join(f'n{i}, ' for i in names)})")
    scope = dict(_GLOBALS)
    exec("\n".join(lines), scope)  # noqa: S102 (source built from Affs, as above)
    return scope["box"]
