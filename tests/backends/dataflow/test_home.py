"""Home layouts: blocks spread over the PEs, and the pieces of a box in them, one box or many."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from fractal.backends.dataflow.home import Home


def test_a_buffer_is_cut_along_its_leading_axes_into_blocks_of_at_least_512_bytes():
    home = Home.spread("x", (540, 1, 80), rows=4, cols=4, itemsize=4)
    assert (home.factors, home.block) == ((16, 1, 1), (34, 1, 80))
    assert [pe for pe, _ in home.owners()][:5] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert Home.spread("s", (8,), rows=4, cols=4, itemsize=4).blocks == 1      # 32 bytes: one block


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
