"""A long associative reduction loop as partial sums among the threads (`reduce_loop`).

A `reduce` over a long list lowers to a sequential loop folding one more operand into a
state each step, the state rolled to a window of `w` slots (conv2d's batch statistics, 18463
pixels of 64 channels)::

    for r in 0:18463 sequential associative host {
      stage add23() device {
        st[(r + 1) mod 2, 0:1, 0:64] = add(st[r mod 2, 0:1, 0:64], x[r, 0:1, 0:64])
      }
    }

Step by step, one thread streams `x` through a chain of dependent adds.  The loop is marked
`associative` (the program's combiner allows any order), so here each thread folds its share
of the first `n - w` operands into an accumulator of its own, the partials are folded into
the state before the loop in thread order, and the last `w` steps run as written: every slot
of the window then ends holding what the loop leaves there (up to the rounding of the new
association), and no one reads the state while the loop runs (its body is this one stage).
A state not rolled to a window (every step's slot kept, a scan's) runs step by step.

    {
      const long long ft_lo = 0, ft_mid = 18463 - 2;
      if (ft_mid - ft_lo >= ...) { <partials, in parallel>; <st at ft_mid - 1 = fold of st at ft_lo - 1 and them> }
      for (long long v_r = ...; v_r < 18463; v_r += 1) { <the stage, as written> }
    }
"""

from __future__ import annotations

import math

from fractal.lower.tile_affine import Mod
from fractal.lower.tile_ir import COMBINER_OF, Loop

from ..codegen import index_expr
from ..codegen.regions import coords
from ..scan_pattern import match_scan
from .ops import combine, identity
from .scope import PARALLEL_MIN_WORK, Scope, loops

_FLOATS = {"float32", "float64"}


def reduce_parts(loop: Loop, sc: Scope):
    """`(op, x region, window)` where `loop` runs as partial sums (module docstring): an
    associative scan by a reduction's combiner (add, max, min: folded as a `Reduce` op folds,
    `ops.combine`) over a float state rolled to `window` slots, without stage dims; else None."""
    if not loop.associative or loop.step != 1:
        return None
    found = match_scan(loop)
    if found is None:
        return None
    stage, op, x = found
    if stage.dims or op.expr.op not in COMBINER_OF or {sc.dtype(op.dst), sc.dtype(x)} - _FLOATS or sc.dtype(op.dst) != sc.dtype(x):
        return None
    window = _window(op.dst, loop.var)
    return None if window is None else (op, x, window)


def _window(dst, var: str) -> int | None:
    """`w` where the loop variable `var` indexes `dst` only as `(var + k) mod w`, on one axis
    (the slots of a rolled state), else None."""
    windows = []
    for start in dst.start:
        for atom, _ in start.terms:
            if atom == var:
                return None   # (a slot per step: every state is kept)
            if not isinstance(atom, str) and var in atom.vars():
                if not isinstance(atom, Mod) or atom.e.vars() != {var}:
                    return None
                windows.append(atom.c)
    return windows[0] if len(windows) == 1 else None


def reduce_lines(loop: Loop, parts, stage_lines: list[str], sc: Scope) -> list[str]:
    """C++ for `loop` (`reduce_parts` gave `parts`): the partials, their fold into the state, then
    the last steps as written (`stage_lines`, the loop body's C++ for one step).  Profiled, the
    partials' seconds go to the stage's slot."""
    op, x, window = parts
    e = op.expr
    prev = e.a.region if e.a.region.buffer == op.dst.buffer else e.b.region
    shape = op.dst.shape
    count = max(math.prod(shape), 1)
    evars = coords("ft_c", len(shape))
    flat = " + ".join(f"{v}*{math.prod(shape[k + 1:])}" for k, v in enumerate(evars)) or "0"
    dtype, ctype, combiner = sc.dtype(op.dst), sc.ctype(op.dst), COMBINER_OF[e.op]
    v = sc.names[loop.var]
    start, stop = (index_expr(a, sc.names) for a in (loop.start, loop.stop))
    slot = sc.stages.setdefault(loop.body[0].name, len(sc.stages))
    stride = -(-count // 16) * 16   # (each thread's partials on lines of their own: 64 bytes)
    acc = f"ft_part[ft_t*{stride} + {flat}]"
    partial = loops(shape, evars, [combine(acc, sc.ref(x, evars), dtype, combiner, sc)])
    folded = loops(shape, evars, [combine(f"ft_state[{flat}]", f"ft_part[ft_t*{stride} + {flat}]", dtype, combiner, sc)])
    return [
        f"// loop {loop.var} sequential associative: partial folds among the threads, then its last {window} steps",
        "{",
        f"  const long long ft_lo = {start}, ft_hi = {stop}, ft_mid = ft_hi - {window};",
        "  long long ft_from = ft_lo;",
        f"  if ((ft_mid - ft_lo) * {count}LL >= {PARALLEL_MIN_WORK} && ft_threads > 1) {{",
        "    const double ft_t0 = ft_profile ? omp_get_wtime() : 0.0;",
        f"    std::unique_ptr<{ctype}[]> ft_owner(new {ctype}[(size_t) ft_threads * {stride} + 16]);",
        f"    {ctype}* ft_part = reinterpret_cast<{ctype}*>((reinterpret_cast<std::uintptr_t>(ft_owner.get()) + 63) & ~std::uintptr_t(63));",
        f"    for (long long ft_k = 0; ft_k < ft_threads * {stride}LL; ++ft_k) ft_part[ft_k] = {identity(dtype, combiner)};",
        "    #pragma omp parallel num_threads(ft_threads)",
        "    {",
        "      const long long ft_nt = omp_get_num_threads(), ft_t = omp_get_thread_num();",
        "      const long long ft_0 = ft_lo + (ft_mid - ft_lo) * ft_t / ft_nt, ft_1 = ft_lo + (ft_mid - ft_lo) * (ft_t + 1) / ft_nt;",
        f"      for (long long {v} = ft_0; {v} < ft_1; ++{v}) {{",
        *("        " + line for line in partial),
        "      }",
        "    }",
        f"    {ctype} ft_state[{count}];",
        "    {",
        f"      const long long {v} = ft_lo;   // (the state before the loop)",
        *("      " + line for line in loops(shape, evars, [f"ft_state[{flat}] = {sc.ref(prev, evars)};"])),
        "    }",
        "    for (long long ft_t = 0; ft_t < ft_threads; ++ft_t) {",
        *("      " + line for line in folded),
        "    }",
        "    {",
        f"      const long long {v} = ft_mid - 1;   // (the state after the folded steps)",
        *("      " + line for line in loops(shape, evars, [f"{sc.ref(op.dst, evars)} = ft_state[{flat}];"])),
        "    }",
        "    ft_from = ft_mid;",
        f"    if (ft_profile) ft_profile[{slot}] += omp_get_wtime() - ft_t0;",
        "  }",
        f"  for (long long {v} = ft_from; {v} < ft_hi; {v} += 1) {{",
        *("  " + line for line in stage_lines),
        "  }",
        "}",
    ]
