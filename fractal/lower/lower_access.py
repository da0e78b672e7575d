"""Lowering rules for the access operators: the language's own rules run on id lists.

Each access operator's NumPy rule (`fractal.lang.access_ops`) is run per domain point on
lists of element ids, so every operator and every ragged case lowers exactly as the
interpreter evaluates it.  A few make new values rather than move elements and have their
own rule here: `enumerate` (positions), `length`, `const_list`, `slices` (a tensor's
sub-tensors become rows), `stack` (rows become one tensor: a view when consecutive), and
`window` with padding of tensor elements (windows of one padded copy per list, so they are affine
rows; list elements are padded with empty lists by the language's rule).
"""

from __future__ import annotations

import numpy as np

from ..lang.access_ops import pad_sides
from ..lang.registry import OPS
from ..lang.types import FractalTensorType, TensorType
from ..lang.values import FractalTensor
from .lower_gather import lower_gather_dynamic
from .lower_values import (Pending, ROW_BITS, LVal, TVal, broadcast_ids, element_gids, id_list, id_type, lengths,
                           scalar_gids)
from .tile_expr import Const, Region
from .tile_ir import Copy, Elementwise, Scatter


def lower_access(walker, eqn, env):
    em = walker.em
    if eqn.op == "gather_dynamic":
        return (lower_gather_dynamic(walker, eqn, env),)
    ext = em.domain.extents
    args = []
    for v in eqn.inputs:
        x = env[v]
        if isinstance(x, LVal):
            args.append(broadcast_ids(x.ids, ext))
        else:
            gids = x.gids if isinstance(x, Pending) else em.row_ids(walker.tensor(v, env))
            gids = broadcast_ids(np.asarray(gids), ext)
            args.append(np.vectorize(lambda g: np.asarray(g, dtype=np.int64), otypes=[object])(gids))
    attrs = eqn.attrs
    if eqn.op == "window" and attrs.get("padding") and isinstance(eqn.inputs[0].type.elem, TensorType):
        # windows of a padded list: pad each point's list once into a fresh buffer, so the
        # windows are affine rows of it (views) rather than a gather from two buffers
        args[0] = _padded(walker, args[0], attrs["padding"], attrs["pad_value"], eqn.inputs[0].type.elem)
        attrs = dict(attrs, padding=0)
    if eqn.op == "const_list":
        return (_const_list(walker, eqn),)
    if eqn.op == "enumerate":  # positions are new values: rows of one constant 0..n-1 buffer
        lens = lengths(args[0])
        table = em.const_rows(np.arange(int(lens.max()) if lens.size else 0, dtype=np.int64))
        ids = np.empty(ext, dtype=object)
        for pt in np.ndindex(*ext):
            if em.domain.valid[pt]:
                ids[pt] = id_list(em.gid(table, np.arange(lens[pt])))
        return (LVal(ids, eqn.outputs[0].type),)
    if eqn.op == "slices":
        return (_slices(walker, walker.tensor(eqn.inputs[0], env), eqn.attrs["axis"], eqn.outputs[0].type),)
    if eqn.op == "stack":  # rows become one tensor: no per-point run of the language's rule
        return (_stack(walker, eqn, args[0], eqn.outputs[0].type),)
    outs = [np.empty(ext, dtype=object) for _ in eqn.outputs]
    for pt in np.ndindex(*ext):
        if not em.domain.valid[pt]:
            continue
        res = OPS[eqn.op].impl(*(a[pt] for a in args), **attrs)
        for o, r in zip(outs, res):
            o[pt] = r
    result = []
    for o, var in zip(outs, eqn.outputs):
        if isinstance(var.type, FractalTensorType):
            result.append(LVal(o, var.type))
        elif eqn.op == "length":
            lens = np.zeros(ext, dtype=var.type.dtype)
            for pt, r in np.ndenumerate(o):
                if r is not None:
                    lens[pt] = int(r)
            name = em.const_rows(em.domain.in_row_order(lens))
            result.append(TVal(Region(name, (em.domain.flat(),), (None,)), var.type.dtype))
        else:
            result.append(Pending(scalar_gids(o), var.type, em.domain))
    return result

def _const_list(walker, eqn):
    value = OPS["const_list"].impl(**eqn.attrs)[0]
    leaves, offsets = value.compact()
    name = walker.em.const_rows(np.asarray(leaves))
    ids = FractalTensor.from_storage(id_type(value.type), walker.em.gid(name, np.arange(len(leaves))), offsets,
                                     range(len(value)))
    holder = np.empty(walker.em.domain.extents, dtype=object)
    holder[...] = [ids] if holder.ndim == 0 else None
    for pt in np.ndindex(*walker.em.domain.extents):
        holder[pt] = ids
    return LVal(holder, value.type)

def _padded(walker, lists: np.ndarray, padding, value, elem: TensorType) -> np.ndarray:
    """Per point, the id list `[pad]*before + xs + [pad]*after` in a fresh buffer (rows `k*flat ..`)."""
    em, ext = walker.em, walker.em.domain.extents
    pad, after = pad_sides(padding)
    lens = lengths(lists)
    n = int(lens.max()) if lens.size else 0
    k = n + pad + after
    name = em.buffer("t", (em.domain.size * k,) + elem.shape, elem.dtype)
    flat = em.domain.flat()
    zeros = (0,) * len(elem.shape)
    em.emit([Elementwise(Region(name, (flat * k,) + zeros, (k,) + elem.shape), Const(float(value)))])
    if n:
        src, kk = em.gather_rows(element_gids(lists, n), elem.shape, elem.dtype)
        where = np.where(np.arange(n) < lens[..., None], pad + np.arange(n), k)  # k: padding, not written
        table = em.const_rows(em.domain.in_row_order(where).astype(np.int64))
        em.emit([Scatter(Region(src, (flat * kk,) + zeros, (n,) + elem.shape), Region(table, (flat * n,), (n,)),
                         Region(name, (flat * k,) + zeros, (k,) + elem.shape), 0)])
    out = np.empty(ext, dtype=object)
    for pt in np.ndindex(*ext):
        if em.domain.valid[pt]:
            out[pt] = id_list(em.gid(name, em.domain.row(pt) * k + np.arange(int(lens[pt]) + pad + after)))
    return out

def _slices(walker, x: TVal, axis: int, t) -> LVal:
    """`slices(x, axis)`: the sub-tensors along `axis` as rows of a fresh buffer (one copy)."""
    em = walker.em
    axis %= len(x.shape)
    n, rest = x.shape[axis], x.shape[:axis] + x.shape[axis + 1:]
    perm = (axis,) + tuple(a for a in range(len(x.shape)) if a != axis)
    name = em.buffer("t", (em.domain.size * n,) + rest, x.dtype)
    flat = em.domain.flat()
    em.emit([Copy(x.region, Region(name, (flat * n,) + (0,) * len(rest), (n,) + rest), perm)])
    ids = np.empty(em.domain.extents, dtype=object)
    for pt in np.ndindex(*em.domain.extents):
        if em.domain.valid[pt]:
            base = em.domain.row(pt) * n
            ids[pt] = id_list(em.gid(name, base + np.arange(n)))
    return LVal(ids, t)

def _stack(walker, eqn, lists, t: TensorType) -> TVal:
    """`stack(xs)`: the n rows of the list as one tensor (a view when they are consecutive)."""
    em, n = walker.em, t.shape[0]
    valid = em.domain.valid
    points = zip(*np.nonzero(valid)) if valid.ndim else ([()] if valid else [])
    ids = {pt: lists[pt].compact()[0] for pt in points}  # the lists' own arrays, not copies
    first = np.full(em.domain.extents, -1, dtype=np.int64)
    for pt, x in ids.items():
        if len(x) != n:
            OPS["stack"].impl(lists[pt], **eqn.attrs)  # the language's rule says what is wrong
        if n:
            first[pt] = x[0]
    elem = TensorType(t.shape[1:], t.dtype)
    if n and ids and _consecutive(list(ids.values()), n):
        x = em.element(Pending(first, elem, em.domain))
        ranges = {v: (0, max(e - 1, 0)) for v, e in zip(em.domain.vars, em.domain.extents)}
        if x.region.buffer == em.buffers[int(first[valid][0] >> ROW_BITS)].name \
                and x.region.start[0].bounds(ranges)[1] + n <= em.rows_of(x.region.buffer):
            r = x.region
            return TVal(Region(r.buffer, r.start, (n,) + r.size[1:], r.stride), t.dtype)
    rows = np.full(em.domain.extents + (n,), -1, dtype=np.int64)
    for pt, x in ids.items():
        rows[pt] = x
    name, k = em.gather_rows(rows, t.shape[1:], t.dtype)
    return TVal(Region(name, (em.domain.flat() * k,) + (0,) * (len(t.shape) - 1), t.shape), t.dtype)


def _consecutive(lists: list, n: int, chunk: int = 4096) -> bool:
    """Whether every id list is `x[0] + 0..n-1` (checked a chunk of lists at a time: the lists
    of a window per query point hold ~10^8 ids in all)."""
    steps = np.arange(n, dtype=np.int64)
    for lo in range(0, len(lists), chunk):
        block = np.asarray(lists[lo:lo + chunk], dtype=np.int64)
        if not np.array_equal(block - block[:, :1], np.broadcast_to(steps, block.shape)):
            return False
    return True
