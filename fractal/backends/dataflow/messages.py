"""Transfers as batches of messages, moved with one fancy index per batch.

`batches(transfers, program)` turns a superstep's transfers into `Batch`es: messages that
copy regions of the same shape between the same two buffers, with each message's sender,
receiver and region starts as arrays.  A shift or multicast over a rectangle is one batch
(its regions may read each PE's `pr` and `pc`: they are evaluated at every sender and
receiver); sends of the same shape between the same buffers form one batch.  `gather` reads a
batch's data out of the grid arrays (`(rows, cols, *shape)` per buffer) and `scatter` writes
it, each message's region in row-major order, so the BSP engine moves a superstep's bytes in
a few NumPy calls whatever the number of messages.  `host_gather` and `host_scatter` do the
same for loads and stores between host arrays and PEs.  `pieces` cuts a batch into smaller
ones, so an engine that need not read everything before writing holds less at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fractal.backends.pointwise import region_starts

from .mesh_ir import Multicast, Send, Sends, Shift
from .routes import ring_neighbour


@dataclass
class Batch:
    src_buffer: str
    dst_buffer: str
    src_size: tuple
    src_stride: tuple
    dst_size: tuple
    dst_stride: tuple
    sr: np.ndarray
    sc: np.ndarray
    dr: np.ndarray
    dc: np.ndarray
    src_starts: np.ndarray      # (n, src ndim)
    dst_starts: np.ndarray      # (n, dst ndim)
    multicast: bool = False     # copies of one multicast: each line's links carry them once

    @property
    def elements(self) -> int:
        return int(np.prod([s for s in self.src_size if s is not None], dtype=np.int64))


def starts_at(region, rows, cols) -> np.ndarray:
    """A region's starts at many PEs: (n, ndim)."""
    n = np.asarray(rows).size
    if not region.vars():    # the same everywhere (most regions): no evaluation per PE
        return np.broadcast_to(np.array([a.const for a in region.start], np.int64), (n, len(region.start)))
    return region_starts(region, {"pr": np.asarray(rows, np.int64), "pc": np.asarray(cols, np.int64)}, n)


def _collective_pairs(t):
    """(sender rows, sender cols, receiver rows, receiver cols) of a shift or multicast."""
    P = t.pes
    rows, cols = (x.ravel() for x in P.grid())
    if isinstance(t, Shift):   # each receiver's sender: the ring's step back
        n = P.shape[1] if t.axis == "row" else P.shape[0]
        back = np.array([ring_neighbour(i, n, t.ring, -t.by) for i in range(n)], np.int64)
        if t.axis == "row":
            return rows, P.c0 + back[cols - P.c0], rows, cols
        return P.r0 + back[rows - P.r0], cols, rows, cols
    if t.axis == "all":
        width = P.c1 - P.c0
        return np.full_like(rows, P.r0 + t.root // width), np.full_like(cols, P.c0 + t.root % width), rows, cols
    if t.axis == "row":
        return rows, np.full_like(cols, P.c0 + t.root), rows, cols
    return np.full_like(rows, P.r0 + t.root), cols, rows, cols


def _key(src, dst):
    return src.buffer, dst.buffer, src.size, src.stride, dst.size, dst.stride


def batches(transfers, ordered: bool = False) -> list[Batch]:
    """The transfers as batches, the `Send`s of one key gathered into one at the end, or
    (`ordered`) each `Send` a batch of its own where it stands: then, batch after batch, the
    writes follow program order even where two messages write the same element."""
    out, sends = [], {}
    for t in transfers:
        if isinstance(t, (Shift, Multicast)):
            sr, sc, dr, dc = _collective_pairs(t)
            out.append(Batch(*_key(t.src, t.dst), sr, sc, dr, dc, starts_at(t.src, sr, sc), starts_at(t.dst, dr, dc),
                             isinstance(t, Multicast)))
        elif isinstance(t, Sends):
            if len(t):
                r = np.array(t.routes, np.int64)
                n = len(t)
                out.append(Batch(*_key(t.src, t.dst), r[:, 0], r[:, 1], r[:, 2], r[:, 3],
                                 np.array(t.src_starts, np.int64).reshape(n, -1),
                                 np.array(t.dst_starts, np.int64).reshape(n, -1)))
        elif isinstance(t, Send) and ordered:
            out.append(_send_batch(_key(t.src_region, t.dst_region), [t]))
        elif isinstance(t, Send):
            sends.setdefault(_key(t.src_region, t.dst_region), []).append(t)
        else:
            raise TypeError(f"not a transfer: {type(t).__name__}")
    return out + [_send_batch(key, group) for key, group in sends.items()]


def _send_batch(key, group) -> Batch:
    coords = np.array([s.src + s.dst for s in group], np.int64)
    src = np.array([[a.evaluate({}) for a in s.src_region.start] for s in group], np.int64).reshape(len(group), -1)
    dst = np.array([[a.evaluate({}) for a in s.dst_region.start] for s in group], np.int64).reshape(len(group), -1)
    return Batch(*key, coords[:, 0], coords[:, 1], coords[:, 2], coords[:, 3], src, dst)


def pieces(b: Batch, most_bytes: int, itemsize: int) -> list[Batch]:
    """The batch as consecutive batches of its messages, each moving at most `most_bytes` (at
    least one message): moved in turn, they hold a piece's copy at a time, not the batch's."""
    n, each = len(b.sr), max(1, most_bytes // max(1, b.elements * itemsize))
    if n <= each:
        return [b]
    cut = lambda lo, hi: replace(b, sr=b.sr[lo:hi], sc=b.sc[lo:hi], dr=b.dr[lo:hi], dc=b.dc[lo:hi],  # noqa: E731
                                 src_starts=b.src_starts[lo:hi], dst_starts=b.dst_starts[lo:hi])
    return [cut(lo, lo + each) for lo in range(0, n, each)]


def _index(starts: np.ndarray, size: tuple, stride: tuple) -> tuple:
    """Indices of n regions: per buffer axis an array broadcasting to (n, *shape), or, when every
    region starts at the same place, plain slices (NumPy then copies views, much faster)."""
    n = starts.shape[0]
    if n and (starts == starts[:1]).all():
        return tuple(int(a) if s is None else slice(int(a), int(a) + s * st, st)
                     for a, s, st in zip(starts[0], size, stride))
    ranges = [i for i, s in enumerate(size) if s is not None]
    out = []
    for axis, (s, st) in enumerate(zip(size, stride)):
        if s is None:
            out.append(starts[:, axis].reshape((n,) + (1,) * len(ranges)))
        else:
            shape = [1] * len(ranges)
            shape[ranges.index(axis)] = s
            out.append(starts[:, axis].reshape((n,) + (1,) * len(ranges)) + (np.arange(s) * st).reshape(shape))
    return tuple(out)


def _pe(x: np.ndarray, ndim: int, index: tuple) -> np.ndarray:
    """PE indices that broadcast against the region indices (none when those are slices)."""
    plain = all(isinstance(i, (int, slice)) for i in index)
    return x if plain else x.reshape((-1,) + (1,) * ndim)


def gather(grid: dict, b: Batch) -> np.ndarray:
    """Every message's data, (n, elements), read from the senders' buffers."""
    ndim = sum(s is not None for s in b.src_size)
    index = _index(b.src_starts, b.src_size, b.src_stride)
    data = grid[b.src_buffer][(_pe(b.sr, ndim, index), _pe(b.sc, ndim, index)) + index]
    return data.reshape(len(b.sr), -1)


def scatter(grid: dict, b: Batch, data: np.ndarray) -> None:
    """Write every message's data into the receivers' buffers."""
    shape = tuple(s for s in b.dst_size if s is not None)
    index = _index(b.dst_starts, b.dst_size, b.dst_stride)
    target = (_pe(b.dr, len(shape), index), _pe(b.dc, len(shape), index)) + index
    grid[b.dst_buffer][target] = data.reshape((len(b.dr),) + shape)


def host_transfer(grid: dict, host: dict, moves, to_pes: bool) -> None:
    """Loads (`to_pes`) or stores, batched like messages: each a (pes, local region, host region)."""
    groups = {}
    for pes, local_r, host_r in moves:
        rows, cols = (x.ravel() for x in pes.grid())
        key = _key(host_r, local_r)
        groups.setdefault(key, []).append((rows, cols, starts_at(host_r, rows, cols), starts_at(local_r, rows, cols)))
    for (hbuf, lbuf, hsize, hstride, lsize, lstride), parts in groups.items():
        rows, cols, hs, ls = (np.concatenate(x) for x in zip(*parts))
        hshape, lshape = tuple(s for s in hsize if s is not None), tuple(s for s in lsize if s is not None)
        hkey = _index(hs, hsize, hstride)
        lindex = _index(ls, lsize, lstride)
        lkey = (_pe(rows, len(lshape), lindex), _pe(cols, len(lshape), lindex)) + lindex
        shared = all(isinstance(i, (int, slice)) for i in hkey)   # one host region for every PE
        n = len(rows)
        if to_pes:
            data = host[hbuf][hkey]
            grid[lbuf][lkey] = np.broadcast_to(data.reshape((1,) + lshape), (n,) + lshape) if shared \
                else data.reshape((n,) + lshape)
        else:
            data = grid[lbuf][lkey].reshape((n,) + hshape)
            host[hbuf][hkey] = data[-1] if shared else data
