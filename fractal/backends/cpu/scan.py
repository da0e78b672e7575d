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

Reductions over the lists of a sorted ragged batch have a box that shrinks with r (the
softmax over each sample's own source positions in rnn_attention)::

    for r in 0:50 sequential host active m < 5 + 7*min(1, max(0, 46 - r)) + ... {
      stage maximum30(m in 0:5 + 7*min(1, max(0, 46 - r)) + ...) device { ... }

There the box of every step is computed at once (the dims' bounds evaluated on the vector
of r values), and each run of consecutive steps with one box (a *phase*: as many as the
batch has distinct lengths) is one accumulate over that box, starting from `d` one step
before the phase.  Every (point, step) the loop computes is computed once, in the loop's
order, and no other: still bit-identical, whatever the box's dependence on r.

A loop takes this path when (else it runs step by step): its step is 1; its body is one
stage over a box (not a polygon: `polygon` runs those) holding one elementwise
`op(prev, x)` (or `op(x, prev)` for add and mul, which commute exactly) with op
add/mul/maximum/minimum; `prev` reads dst's buffer at dst's region for r - 1; x reads
another buffer; dst and x are strided views affine in r and the stage variables, all of
dst's dtype; and at run time no two elements of dst's view over the steps of a phase
share memory.
"""

from __future__ import annotations

from time import perf_counter

import numpy as np

from fractal.backends.scan_pattern import match_scan
from fractal.lower.tile_ir import Loop

from .indices import compile_index, compile_lambda, index_source
from .views import RegionAccess

ACCUMULATE = {"add": np.add, "mul": np.multiply, "maximum": np.maximum, "minimum": np.minimum}   # (scan_pattern.SCAN_OPS)
NARROW = 512  # elements per step up to which one accumulate beats a ufunc call per step


def _one_to_one(y: np.ndarray) -> bool:
    """Whether no two elements of the view `y` share memory (a sufficient test: sorted by
    stride, each axis steps past everything the smaller-stride axes span)."""
    span = y.itemsize
    for n, s in sorted(((n, abs(s)) for n, s in zip(y.shape, y.strides) if n > 1), key=lambda t: t[1]):
        if s < span:
            return False
        span += (n - 1) * s
    return True


def _box_table(dims, var: str):
    """`f(env, r0, r1) -> [(r_lo, r_hi, starts, extents)]`: the runs of consecutive steps of
    `var` in [r0, r1) with one stage box, steps with an empty box left out."""
    bounds = compile_lambda("e", "(" + "".join(f"{index_source(x, vector=True)}, " for d in dims
                                               for x in (d.start, d.stop)) + ")")

    def phases(env, r0, r1):
        e = dict(env)
        e[var] = steps = np.arange(r0, r1)
        values = np.stack([np.broadcast_to(v, steps.shape) for v in bounds(e)], axis=1)
        starts, extents = values[:, 0::2], values[:, 1::2] - values[:, 0::2]
        live = (extents > 0).all(axis=1)
        key = np.concatenate([starts, extents, live[:, None]], axis=1)
        cuts = [0, *(np.flatnonzero((key[1:] != key[:-1]).any(axis=1)) + 1).tolist(), len(steps)]
        return [(r0 + a, r0 + b, tuple(starts[a].tolist()), tuple(extents[a].tolist()))
                for a, b in zip(cuts, cuts[1:]) if live[a]]
    return phases


def compile_scan(loop: Loop, memory, box_of, plain, profile_of):
    """`run(env)` for a loop `match_scan` accepted, or None where its operands do not allow
    it; `plain` runs the loop step by step (used when a run's strides rule the scan out),
    `profile_of()` gives the run's profile dict or None."""
    stage, op, x = match_scan(loop)
    var = loop.var
    dims = tuple(d.var for d in stage.dims) + (var,)  # r: an extra (last) box axis
    dst = RegionAccess(op.dst, memory[op.dst.buffer], dims)
    src = RegionAccess(x, memory[x.buffer], dims)
    dtype = memory[op.dst.buffer].buffer.dtype
    if not (dst.is_view and src.is_view and memory[x.buffer].buffer.dtype == dtype):
        return None
    fn, start, stop, name = ACCUMULATE[op.expr.op], compile_index(loop.start), compile_index(loop.stop), stage.name
    if any(var in d.start.vars() | d.stop.vars() for d in stage.dims):
        phases_of = _box_table(stage.dims, var)
    else:  # one box for all steps
        def phases_of(env, r0, r1):
            box = box_of(env)
            return [] if box is None else [(r0, r1) + box]

    def run(env):
        r0, r1 = start(env), stop(env)
        phases = phases_of(env, r0, r1) if r1 > r0 else []
        if not phases:
            return plain(env)  # no step, or steps with empty stages: as the plain loop does
        views = [dst.view(env, los + (a - 1,), box + (b - a + 1,)) for a, b, los, box in phases]
        if not all(_one_to_one(y) for y in views):  # shared elements: only step by step is right
            return plain(env)
        profile = profile_of()
        t0 = perf_counter() if profile is not None else 0.0
        for y, (a, b, los, box) in zip(views, phases):  # d(a - 1), d(a), ..., d(b - 1)
            _accumulate(fn, y, src.view(env, los + (a,), box + (b - a,)), len(box))
        env[var] = r1 - 1  # as the plain loop leaves it
        if profile is not None:
            profile[name] = profile.get(name, 0.0) + perf_counter() - t0
    return run


def _accumulate(fn, y: np.ndarray, xs: np.ndarray, nb: int) -> None:
    """`y[..., i + 1] = fn(y[..., i], xs[..., i])` along box axis `nb`, in order."""
    if y.size <= NARROW * y.shape[nb]:  # x(r) into d(r), then one accumulate along r
        np.copyto(y[(slice(None),) * nb + (slice(1, None),)], xs)
        fn.accumulate(y, axis=nb, out=y)
    else:  # wide slices: accumulate's per-element inner loops cost more than a call per step
        y, xs = np.moveaxis(y, nb, 0), np.moveaxis(xs, nb, 0)
        for i in range(xs.shape[0]):
            fn(y[i], xs[i], out=y[i + 1])
