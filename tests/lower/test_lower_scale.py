"""Lowering's per-point tables at scale: the helpers that would otherwise build a table over
every point of a query x key domain (~10^8 points at the zoo's `paper` sizes) give the same
answers as the direct computation, without it."""

from __future__ import annotations

import numpy as np

import fractal as ft
from fractal.lower.lower_program import _constant_along
from fractal.lower.lower_values import ROW_BITS, broadcast_ids, element_gids, source_buffers


def _id_lists(lengths, start=0):
    """An object array of id lists (FractalTensors of int64 ids), `None` for a length of -1."""
    out = np.empty(len(lengths), dtype=object)
    for k, n in enumerate(lengths):
        if n >= 0:
            out[k] = ft.fractal([np.int64(start + 10 * k + i) for i in range(n)])
    return out


def test_element_gids_of_lists_every_inner_point_reads_are_read_once_and_broadcast():
    """Keys seen from a (sample, query) domain: the table is the per-sample one, broadcast
    (read-only) over the queries, and equal to filling every point."""
    ids = broadcast_ids(_id_lists([3, 1, -1, 2]), (4, 5))        # stride 0 along the queries
    got = element_gids(ids, 3)
    assert got.shape == (4, 5, 3) and got.strides[1] == 0 and not got.flags.writeable
    want = np.full((4, 5, 3), -1)
    for (p, q), x in np.ndenumerate(ids):
        if x is not None:
            want[p, q, :len(x)] = x.compact()[0]
    assert np.array_equal(got, want)


def test_source_buffers_of_gids():
    gid = lambda b, r: (b << ROW_BITS) | r  # noqa: E731
    assert source_buffers(np.array([-1, gid(3, 7), gid(3, 0), -1])).tolist() == [3]
    assert source_buffers(np.array([[gid(5, 1), -1], [gid(2, 9), gid(5, 0)]])).tolist() == [2, 5]
    assert source_buffers(np.full((2, 2), -1)).tolist() == [0]
    assert source_buffers(np.zeros((0,), np.int64)).tolist() == [0]


def test_a_broadcast_axis_of_gids_is_constant_along_it_without_a_scan():
    gids = np.broadcast_to(np.arange(6).reshape(2, 1, 3), (2, 1000, 3))
    got = _constant_along(gids, 1)
    assert np.array_equal(got, np.arange(6).reshape(2, 3)) and np.shares_memory(got, gids)
