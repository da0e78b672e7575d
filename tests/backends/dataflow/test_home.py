"""Home layouts: blocks spread over the PEs, and the pieces of a box in them, one box or many."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from fractal.backends.dataflow.home import Home, pe_order


def test_a_buffer_is_cut_along_its_leading_axes_into_blocks_of_at_least_512_bytes():
    home = Home.spread("x", (540, 1, 80), rows=4, cols=4, itemsize=4)
    assert (home.factors, home.block) == ((16, 1, 1), (34, 1, 80))
    assert [pe for pe, _ in home.owners()][:5] == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)]   # Z order
    assert Home.spread("s", (8,), rows=4, cols=4, itemsize=4).blocks == 1      # 32 bytes: one block


def test_the_pe_order_is_z_order_and_every_aligned_square_is_a_run_of_it():
    order = pe_order(8, 8)
    assert sorted(order.tolist()) == list(range(64))
    for s in (2, 4, 8):
        for rank in range(0, 64, s * s):
            r, c = np.divmod(order[rank:rank + s * s], 8)
            assert (r.max() - r.min(), c.max() - c.min()) == (s - 1, s - 1)
    assert sorted(pe_order(6, 10).tolist()) == list(range(60))   # not a power of two: still every PE once


def test_a_buffer_of_fewer_blocks_than_pes_is_spread_over_the_whole_mesh():
    # 4 blocks on 16 PEs: one in each 2 x 2 quarter, so that many readers do not queue at one corner
    home = Home.spread("w", (4, 128), rows=4, cols=4, itemsize=4)
    assert home.blocks == 4
    assert sorted((r // 2, c // 2) for (r, c), _ in home.owners()) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_buffers_that_fill_the_mesh_evenly_align_block_by_block():
    # whatever `first` the planner passes, block b of two such buffers lies on one PE: a stage
    # reading rows of one and writing the same rows of the other moves nothing between PEs
    a = Home.spread("a", (64, 32), rows=4, cols=4, first=5, itemsize=4)
    c = Home.spread("c", (64, 128), rows=4, cols=4, first=11, itemsize=4)
    assert a.factors[0] == c.factors[0] == 16
    assert [pe for pe, _ in a.owners()] == [pe for pe, _ in c.owners()]


@st.composite
def homes_and_boxes(draw):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    home = Home.spread("x", shape, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(0, 9)),
                       itemsize=4, min_block_bytes=draw(st.sampled_from([4, 16, 64, 512])))
    boxes = []
    for _ in range(draw(st.integers(0, 6))):
        lo = [draw(st.integers(0, d - 1)) for d in shape]
        boxes.append([(a, draw(st.integers(a, d))) for a, d in zip(lo, shape)])   # (may be empty)
    return home, boxes


@settings(max_examples=100, deadline=None)
@given(homes_and_boxes())
def test_the_pieces_of_many_boxes_at_once_are_each_boxs_pieces_in_order(case):
    home, boxes = case
    d = len(home.shape)
    lo = np.array([[a for a, _ in b] for b in boxes], np.int64).reshape(len(boxes), d)
    hi = np.array([[z for _, z in b] for b in boxes], np.int64).reshape(len(boxes), d)
    which, owner, part_lo, part_hi, block_lo = home.pieces_many(lo, hi)
    got = [(int(i), (int(q) // home.cols, int(q) % home.cols), tuple(zip(a.tolist(), b.tolist())), tuple(c.tolist()))
           for i, q, a, b, c in zip(which, owner, part_lo, part_hi, block_lo)]
    want = [(i, pe, part, tuple(x for x, _ in block)) for i, b in enumerate(boxes)
            for pe, part, block in home.pieces(tuple(b))]
    assert got == want
    # the pieces tile each box exactly
    for i, b in enumerate(boxes):
        size = int(np.prod([z - a for a, z in b])) if b else 1
        assert sum(int(np.prod(pb - pa)) for j, pa, pb in zip(which, part_lo, part_hi) if j == i) == \
            (size if all(z > a for a, z in b) else 0)
