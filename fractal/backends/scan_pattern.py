"""The tile IR's scan loops: a sequential loop whose one stage folds one more operand into the
state each step, `d(r) = op(d(r - 1), x(r))`.

Reductions and scans along a sequential axis lower to loops like (conv2d's batch norm)::

    for r in 0:18463 sequential associative host {
      stage add23() device {
        st[r + 1, 0:1, 0:64] = add(st[r, 0:1, 0:64], x[r, 0:1, 0:64])
      }
    }

Backends run them without a stage per step: the CPU one as one `ufunc.accumulate`
(`fractal.backends.cpu.scan`, bit-identical), the dataflow one, for a reduce's loop whose
intermediate states nobody reads, as partial sums and a tree (`fractal.backends.dataflow.
plan_reduce`).  `match_scan` says whether a loop has this form: its step is 1; its body is
one stage over a box holding one elementwise `op(prev, x)` (or `op(x, prev)` for add and mul,
which commute exactly) with op one of `SCAN_OPS`; `prev` reads dst's buffer at dst's region
for r - 1; x reads another buffer, with dst's shape.
"""

from __future__ import annotations

from fractal.lower.tile_affine import Aff
from fractal.lower.tile_ir import Binary, Elementwise, Load, Loop, Stage

SCAN_OPS = frozenset({"add", "mul", "maximum", "minimum"})
COMMUTATIVE = frozenset({"add", "mul"})  # exactly, in IEEE arithmetic: x may come first


def step_before(region, var: str):
    """`region` one step of `var` earlier."""
    earlier = Aff(((var, 1),), -1)
    return type(region)(region.buffer, tuple(s.substitute({var: earlier}) for s in region.start),
                        region.size, region.stride)


def match_scan(loop: Loop):
    """`(stage, op, x region)` when `loop` is a scan (module docstring), else None."""
    if loop.step != 1 or len(loop.body) != 1 or not isinstance(loop.body[0], Stage):
        return None
    stage = loop.body[0]
    if not stage.rectangular or len(stage.body) != 1 or not isinstance(stage.body[0], Elementwise):
        return None
    op = stage.body[0]
    e, dst = op.expr, op.dst
    if not (isinstance(e, Binary) and e.op in SCAN_OPS and isinstance(e.a, Load) and isinstance(e.b, Load)):
        return None
    prev = step_before(dst, loop.var)
    for p, x in ((e.a, e.b), (e.b, e.a)) if e.op in COMMUTATIVE else ((e.a, e.b),):
        if p.region == prev and x.region.buffer != dst.buffer and x.region.shape == dst.shape:
            return stage, op, x.region
    return None
