"""Sequential loops that are scans, run as one `ufunc.accumulate` instead of one stage per step.

Reductions along a sequential axis are lowered to loops like (conv2d's batch norm)::

    for r in 0:18463 sequential host {
      stage add23() device {
        st[r + 1, 0:1, 0:64] = add(st[r, 0:1, 0:64], x[r, 0:1, 0:64])
      }
    }

where each step combines the previous step's result with one more operand: thousands of
tiny stages, all Python overhead.  With `d(r)` the dst region at step `r` and `x(r)` the
other operand, the loop computes `d(r) = op(d(r - 1), x(r))` for r = r0, r0+1, ..., which
is `op.accumulate` along r over `[d(r0 - 1), x(r0), x(r0 + 1), ...]`: the same operations
on the same values in the same order (accumulate is strictly sequential), hence
bit-identical.  So the loop runs as: copy every `x(r)` into `d(r)` at once, then one
in-place accumulate over the view of `d` with r as an extra box axis (r0 - 1 first).
Accumulate runs an inner loop along r per element of a step, so for wide steps (above
`NARROW` elements) a plain `op(d[r - 1], x[r], out=d[r])` per step over the same views is
faster: still no stage machinery per step.

A loop takes this path when (else it runs step by step): its step is 1; its body is one
stage whose box does not depend on r, holding one elementwise `op(prev, x)` (or
`op(x, prev)` for add and mul, which commute exactly) with op add/mul/maximum/minimum;
`prev` reads dst's buffer at dst's region for r - 1; x reads another buffer; dst and x are
strided views affine in r and the stage variables, all of dst's dtype; and at run time
no two elements of dst's view over all steps share memory.
"""

from __future__ import annotations

from time import perf_counter

import numpy as np

from fractal.lower.tile_affine import Aff
from fractal.lower.tile_ir import Binary, Elementwise, Load, Loop, Stage

from .indices import compile_index
from .views import RegionAccess

ACCUMULATE = {"add": np.add, "mul": np.multiply, "maximum": np.maximum, "minimum": np.minimum}
COMMUTATIVE = frozenset({"add", "mul"})  # exactly, in IEEE arithmetic: x may come first
NARROW = 512  # elements per step up to which one accumulate beats a ufunc call per step


def _step_before(region, var: str):
    """`region` one step of `var` earlier."""
    earlier = Aff(((var, 1),), -1)
    return type(region)(region.buffer, tuple(s.substitute({var: earlier}) for s in region.start),
                        region.size, region.stride)


def match_scan(loop: Loop):
    """`(stage, op, x region)` when `loop` is a scan this module runs, else None."""
    if loop.step != 1 or len(loop.body) != 1 or not isinstance(loop.body[0], Stage):
        return None
    stage = loop.body[0]
    if len(stage.body) != 1 or not isinstance(stage.body[0], Elementwise):
        return None
    if any(loop.var in d.start.vars() | d.stop.vars() for d in stage.dims):
        return None
    op = stage.body[0]
    e, dst = op.expr, op.dst
    if not (isinstance(e, Binary) and e.op in ACCUMULATE and isinstance(e.a, Load) and isinstance(e.b, Load)):
        return None
    prev = _step_before(dst, loop.var)
    for p, x in ((e.a, e.b), (e.b, e.a)) if e.op in COMMUTATIVE else ((e.a, e.b),):
        if p.region == prev and x.region.buffer != dst.buffer and x.region.shape == dst.shape:
            return stage, op, x.region
    return None


def _one_to_one(y: np.ndarray) -> bool:
    """Whether no two elements of the view `y` share memory (a sufficient test: sorted by
    stride, each axis steps past everything the smaller-stride axes span)."""
    span = y.itemsize
    for n, s in sorted(((n, abs(s)) for n, s in zip(y.shape, y.strides) if n > 1), key=lambda t: t[1]):
        if s < span:
            return False
        span += (n - 1) * s
    return True


def compile_scan(loop: Loop, memory, box_of, plain, profile_of):
    """`run(env)` for a loop `match_scan` accepted, or None where its operands do not allow
    it; `plain` runs the loop step by step (used when a run's strides rule the scan out),
    `profile_of()` gives the run's profile dict or None."""
    stage, op, x = match_scan(loop)
    dims = tuple(d.var for d in stage.dims) + (loop.var,)  # r: an extra (last) box axis
    dst = RegionAccess(op.dst, memory[op.dst.buffer], dims)
    src = RegionAccess(x, memory[x.buffer], dims)
    dtype = memory[op.dst.buffer].buffer.dtype
    if not (dst.is_view and src.is_view and memory[x.buffer].buffer.dtype == dtype):
        return None
    fn, start, stop, name = ACCUMULATE[op.expr.op], compile_index(loop.start), compile_index(loop.stop), stage.name

    def run(env):
        r0, r1 = start(env), stop(env)
        box = box_of(env) if r1 > r0 else None
        if box is None:
            return plain(env)  # no step, or steps with empty stages: as the plain loop does
        los, box = box
        nb = len(box)
        y = dst.view(env, los + (r0 - 1,), box + (r1 - r0 + 1,))  # d(r0 - 1), d(r0), ...
        if not _one_to_one(y):  # steps (or points) that share elements: only step by step is right
            return plain(env)
        profile = profile_of()
        t0 = perf_counter() if profile is not None else 0.0
        xs = src.view(env, los + (r0,), box + (r1 - r0,))
        if y.size <= NARROW * y.shape[nb]:  # x(r) into d(r), then one accumulate along r
            np.copyto(y[(slice(None),) * nb + (slice(1, None),)], xs)
            fn.accumulate(y, axis=nb, out=y)
        else:  # wide slices: accumulate's per-element inner loops cost more than a call per step
            y, xs = np.moveaxis(y, nb, 0), np.moveaxis(xs, nb, 0)
            for i in range(r1 - r0):
                fn(y[i], xs[i], out=y[i + 1])
        env[loop.var] = r1 - 1  # as the plain loop leaves it
        if profile is not None:
            profile[name] = profile.get(name, 0.0) + perf_counter() - t0
    return run

