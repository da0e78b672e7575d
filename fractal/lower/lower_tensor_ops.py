"""Lowering rules for the tensor ops: one rule per op name, each turning the op at one
domain point into tile ops (`Elementwise`, `Gemm`, `Reduce`, `Copy`, `Convert`, `Gather`).

A rule gets the emitter (`fractal.lower.lower_program._Emitter`: fresh temporaries over the
current domain, constants, `emit(ops, dims=...)`), the input `TVal`s, the output types and
the op's parameters, and returns the output `TVal`s.  `index` costs nothing: it composes a
view of its operand's region.  Softmax, logsumexp, layer norm and mean decompose into
reductions and element expressions; reshape and transpose are (permuting) copies.
"""

from __future__ import annotations

import numpy as np

from ..lang.ir import Slice
from ..lang.tensor_ops import BINARY, UNARY
from .lower_values import TVal
from .tile_affine import Aff, aff
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_ir import Convert, Copy, Elementwise, Gather, Gemm, Reduce

_COMPARE = {"eq", "ne", "lt", "le", "gt", "ge"}
_LOGICAL = {"logical_and", "logical_or", "logical_not"}


def _as(em, x: TVal, dtype) -> TVal:
    """`x` in `dtype` (a converted copy when it differs)."""
    if x.dtype == np.dtype(dtype):
        return x
    out = em.temp(x.shape, dtype)
    em.emit([Convert(x.region, out.region)])
    return out


def _elementwise(em, out_type, expr_of, inputs) -> TVal:
    out = em.temp(out_type.shape, out_type.dtype)
    em.emit([Elementwise(out.region, expr_of(*(Load(x.region) for x in inputs)))])
    return out


def _unary(name):
    def rule(em, xs, outs, **_):
        (x,), (t,) = xs, outs
        x = x if name in _LOGICAL else _as(em, x, t.dtype)
        return (_elementwise(em, t, lambda a: Unary(name, a), [x]),)
    return rule


def _binary(name):
    def rule(em, xs, outs, **_):
        (t,) = outs
        dt = np.result_type(*(x.dtype for x in xs)) if name in _COMPARE | _LOGICAL else t.dtype
        xs = [_as(em, x, dt) for x in xs]
        return (_elementwise(em, t, lambda a, b: Binary(name, a, b), xs),)
    return rule


def _where(em, xs, outs, **_):
    (c, a, b), (t,) = xs, outs
    return (_elementwise(em, t, Where, [_as(em, c, np.bool_), _as(em, a, t.dtype), _as(em, b, t.dtype)]),)


def view(r: Region, key: tuple) -> Region | None:
    """The region `r[key]` for int / loop variable / positive-step slice / Ellipsis keys; None
    otherwise (new axes, negative steps)."""
    visible = [a for a, s in enumerate(r.size) if s is not None]
    if sum(k is Ellipsis for k in key) > 1 or any(k is None for k in key):
        return None
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (Slice(None, None, None),) * (len(visible) - len(key) + 1) + key[i + 1:]
    key = key + (Slice(None, None, None),) * (len(visible) - len(key))
    start, size, stride = list(r.start), list(r.size), list(r.stride)
    for axis, k in zip(visible, key):
        n = size[axis]
        if isinstance(k, Slice):
            lo, hi, step = k.to_slice().indices(n)
            if step <= 0:
                return None
            start[axis] = start[axis] + lo * stride[axis]
            size[axis] = len(range(lo, hi, step))
            stride[axis] *= step
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            start[axis] = start[axis] + (int(k) % n) * stride[axis]
            size[axis] = None
        elif isinstance(k, (str, Aff)):  # a loop variable (a batch point of a batched matmul)
            start[axis] = start[axis] + aff(k) * stride[axis]
            size[axis] = None
        else:
            return None
    return Region(r.buffer, tuple(start), tuple(size), tuple(stride))


def _index(em, xs, outs, index):
    (x,), (t,) = xs, outs
    r = view(x.region, tuple(index))
    if r is not None:
        return (TVal(r, x.dtype),)
    # None (new axes) or negative steps: gather the elements through a constant table
    flat = np.arange(int(np.prod(x.shape))).reshape(x.shape)[tuple(k.to_slice() if isinstance(k, Slice) else k
                                                                    for k in index)]
    src = em.temp((int(np.prod(x.shape)),), x.dtype)
    em.emit([Copy(x.region, src.region)])
    table = em.const(np.ascontiguousarray(flat.reshape(-1)).astype(np.int64))
    out = em.temp((flat.size,), x.dtype)
    em.emit([Gather(src.region, table.region, out.region, 0)])
    return (_reshaped(em, out, t),)


def _reshaped(em, x: TVal, t) -> TVal:
    if x.shape == tuple(t.shape):
        return x
    out = em.temp(t.shape, t.dtype)
    em.emit([Copy(x.region, out.region)])
    return out


def _reshape(em, xs, outs, shape):
    return (_reshaped(em, xs[0], outs[0]),)


def _transpose(em, xs, outs, axes=None):
    (x,), (t,) = xs, outs
    n = len(x.shape)
    perm = tuple(reversed(range(n))) if axes is None else tuple(a % n for a in axes)
    if perm == tuple(range(n)):
        return (x,)
    if n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2):
        return (TVal(x.region, x.dtype, not x.trans),)  # a swap of the last two axes: no copy yet
    x = _untransposed(em, x)
    out = em.temp(t.shape, t.dtype)
    em.emit([Copy(x.region, out.region, perm)])
    return (out,)


def _untransposed(em, x: TVal) -> TVal:
    if not x.trans:
        return x
    n = len(x.shape)
    out = em.temp(x.shape, x.dtype)
    em.emit([Copy(x.region, out.region, tuple(range(n - 2)) + (n - 1, n - 2))])
    return out


def _matmul(em, xs, outs, **_):
    (a, b), (t,) = xs, outs
    if len(a.shape) == 2 and len(b.shape) == 2 and (a.trans or b.trans) and a.dtype == b.dtype == t.dtype:
        out = em.temp(t.shape, t.dtype)  # transposed operands read in place
        em.emit([Gemm(a.region, b.region, out.region, False, a.trans, b.trans)])
        return (out,)
    a, b = _as(em, _untransposed(em, a), t.dtype), _as(em, _untransposed(em, b), t.dtype)
    a2 = a if len(a.shape) >= 2 else _reshaped(em, a, _T((1,) + a.shape, a.dtype))
    b2 = b if len(b.shape) >= 2 else _reshaped(em, b, _T(b.shape + (1,), b.dtype))
    batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
    shape = batch + (a2.shape[-2], b2.shape[-1])
    out = em.temp(shape, t.dtype)
    names = em.fresh_vars(len(batch))

    def at(x: TVal) -> Region:  # the 2-d matrix of batch point `names`
        r, lead = x.region, len(x.shape) - 2
        idx = tuple(0 if x.shape[k] == 1 else names[k + len(batch) - lead] for k in range(lead))
        return view(r, idx + (Slice(None, None, None),) * 2)

    em.emit([Gemm(at(a2), at(b2), at(out))], dims=tuple(zip(names, batch)))
    key = ((0,) if len(a.shape) < 2 else ()) + ((Ellipsis, 0) if len(b.shape) < 2 else ())
    return (TVal(view(out.region, key), t.dtype) if key else out,)


class _T:  # a bare (shape, dtype) pair for internal reshapes
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)


def _axes(axis, ndim) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


def _kept(shape, axes):
    return tuple(1 if k in axes else d for k, d in enumerate(shape))


def _reduce(em, x: TVal, axes, combiner, keepdims, dtype=None) -> TVal:
    if not axes:
        return x
    shape = _kept(x.shape, axes) if keepdims else tuple(d for k, d in enumerate(x.shape) if k not in axes)
    out = em.temp(shape, dtype or x.dtype)
    em.emit([Reduce(x.region, out.region, axes, combiner)])
    return out


def _over(total, n: int):
    """A mean from its sum: divided by the count, as NumPy's `mean` does (times 1/n would round
    differently, and a comparison downstream can turn one ulp into another branch); NaN for
    no elements."""
    return Binary("div", total, Const(float(n))) if n else Binary("mul", total, Const(float("nan")))


def _reducer(combiner, mean=False):
    def rule(em, xs, outs, axis=None, keepdims=False):
        (x,), (t,) = xs, outs
        axes = _axes(axis, len(x.shape))
        x = _as(em, x, t.dtype)
        if not axes:
            return (x,)
        r = _reduce(em, x, axes, combiner, keepdims)
        if mean:
            n = int(np.prod([x.shape[a] for a in axes]))  # (the mean of nothing is NaN, as in NumPy)
            r = _elementwise(em, t, lambda v: _over(v, n), [r])
        return (r,)
    return rule


def _softmax(em, xs, outs, axis=-1):
    (x,), (t,) = xs, outs
    axes = _axes(axis, len(x.shape))
    m = _reduce(em, x, axes, "max", True)
    e = _elementwise(em, t, lambda a, b: Unary("exp", Binary("sub", a, b)), [x, m])
    s = _reduce(em, e, axes, "add", True)
    return (_elementwise(em, t, lambda a, b: Binary("div", a, b), [e, s]),)


def _logsumexp(em, xs, outs, axis=None, keepdims=False):
    (x,), (t,) = xs, outs
    axes = _axes(axis, len(x.shape))
    m = _reduce(em, x, axes, "max", True)
    # an all -inf (or inf) slice uses 0 as its shift, as the NumPy rule does
    m0 = _elementwise(em, _T(m.shape, m.dtype), lambda a: Where(Unary("logical_not", Binary(
        "ne", Binary("sub", a, a), Binary("sub", a, a))), a, Const(0.0)), [m])
    s = _reduce(em, _elementwise(em, _T(x.shape, x.dtype), lambda a, b: Unary("exp", Binary("sub", a, b)), [x, m0]),
                axes, "add", True)
    lse = _elementwise(em, _T(m.shape, m.dtype), lambda a, b: Binary("add", Unary("log", a), b), [s, m0])
    return (_reshaped(em, lse, t),)


def _layer_norm(em, xs, outs, eps=1e-5):
    (x, w, b), (t,) = xs, outs
    w, b = _as(em, w, t.dtype), _as(em, b, t.dtype)
    axes = (len(x.shape) - 1,)
    n = x.shape[-1]   # (no elements: no output either)
    mu = _elementwise(em, _T(_kept(x.shape, axes), t.dtype), lambda s: _over(s, n),
                      [_reduce(em, x, axes, "add", True)])
    d = _elementwise(em, t, lambda a, m: Binary("sub", a, m), [x, mu])
    var = _elementwise(em, _T(mu.shape, t.dtype), lambda s: _over(s, n),
                       [_reduce(em, _elementwise(em, t, lambda a: Binary("mul", a, a), [d]), axes, "add", True)])
    return (_elementwise(em, t, lambda a, v, g, h: Binary("add", Binary("mul", Binary(
        "div", a, Unary("sqrt", Binary("add", v, Const(eps)))), g), h), [d, var, w, b]),)


def _concat(em, xs, outs, axis=0):
    (t,) = outs
    out = em.temp(t.shape, t.dtype)
    ax, lo, ops = axis % len(t.shape), 0, []
    for x in xs:
        x = _as(em, x, t.dtype)
        key = tuple(Slice(lo, lo + x.shape[ax], None) if k == ax else Slice(None, None, None)
                    for k in range(len(t.shape)))
        ops.append(Copy(x.region, view(out.region, key)))
        lo += x.shape[ax]
    em.emit(ops)
    return (out,)


def _full(em, xs, outs, shape, dtype, value):
    (t,) = outs
    return (_elementwise(em, t, lambda: Const(float(value)), []),)


def _astype(em, xs, outs, dtype):
    return (_as(em, xs[0], outs[0].dtype),)


def _const(em, xs, outs, value):
    return (em.const(np.asarray(value.value)),)


TENSOR_RULES = {
    **{name: _unary(name) for name in UNARY},
    **{name: _binary(name) for name in BINARY},
    "where": _where, "matmul": _matmul, "index": _index, "reshape": _reshape, "transpose": _transpose,
    "sum": _reducer("add"), "mean": _reducer("add", mean=True), "max": _reducer("max"), "min": _reducer("min"),
    "softmax": _softmax, "logsumexp": _logsumexp, "layer_norm": _layer_norm, "concat": _concat,
    "full": _full, "astype": _astype, "const": _const,
}
