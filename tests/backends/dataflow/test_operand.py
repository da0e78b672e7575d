"""Product operands: the buffer boxes of many tiles at once, one box per run of points."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from fractal.backends.dataflow.operand import Operand


def boxes(operand: Operand, base, r0, r1, c0, c1) -> list[tuple]:
    """`operand.boxes` as a list of (tile, lo, hi, first row in the tile, growing axis)."""
    which, lo, hi, offset, grows = operand.boxes(base, r0, r1, c0, c1)
    return [(int(t), tuple(a.tolist()), tuple(b.tolist()), int(o), int(g))
            for t, a, b, o, g in zip(which, lo, hi, offset, grows)]


def rows_of(points: int, m: int, gap_after: int | None = None) -> Operand:
    """A stacked (points * m, 64) matrix whose points lie row after row in a 2-D buffer."""
    starts = np.array([[p * m, 0] for p in range(points)], np.int64)
    if gap_after is not None:
        starts[gap_after + 1:, 0] += 100
    return Operand(None, starts, 0, 1, m, True)


def test_256_consecutive_rows_of_one_tile_are_one_box():
    a = rows_of(points=32, m=16)
    assert boxes(a, [0], [0], [256], [0], [64]) == [(0, (0, 0), (256, 64), 0, 0)]


def test_a_tile_may_start_and_end_inside_a_point():
    a = rows_of(points=32, m=16)
    assert boxes(a, [0], [8], [40], [4], [12]) == [(0, (8, 4), (40, 12), 0, 0)]


def test_a_gap_in_the_buffer_cuts_a_tile_into_two_boxes():
    a = rows_of(points=8, m=4, gap_after=2)   # points 0..2 at rows 0..11, points 3.. from row 112
    assert boxes(a, [0], [2], [20], [0], [64]) == [(0, (2, 0), (12, 64), 0, 0), (0, (112, 0), (120, 64), 10, 0)]


def test_points_of_one_row_stacked_on_an_index_axis_merge_along_it():
    # a list of 10 vectors x[i] (buffer (10, 1, 32)): the big matrix's rows are its elements
    a = Operand(None, np.array([[i, 0, 0] for i in range(10)], np.int64), rows_axis=1, cols_axis=2, m=1, stacked=True)
    assert boxes(a, [0, 0], [0, 3], [4, 10], [0, 0], [32, 32]) == \
        [(0, (0, 0, 0), (4, 1, 32), 0, 0), (1, (3, 0, 0), (10, 1, 32), 0, 0)]


def test_a_grouped_tile_starts_at_its_base_point_and_a_shared_operand_ignores_base():
    a = rows_of(points=8, m=4)
    assert boxes(a, [2], [0], [8], [0], [64]) == [(0, (8, 0), (16, 64), 0, 0)]
    b = Operand(None, np.array([[0, 0]], np.int64), 0, 1, m=32, stacked=False)
    assert boxes(b, [5, 7], [0, 16], [16, 32], [0, 0], [8, 8]) == [(0, (0, 0), (16, 8), 0, 0), (1, (16, 0), (32, 8), 0, 0)]


@st.composite
def operands_and_tiles(draw):
    """An operand whose points lie in one of the ways products see (row after row, one row
    each side by side along the columns, a walk mixing steps along the rows, the columns and
    an index axis, or anywhere),
    with a few points then swapped, repeated or moved, and tiles over it, some cutting points."""
    ndim = draw(st.sampled_from([2, 3]))
    axes = draw(st.permutations(range(ndim)))
    ra, ca, index = axes[0], axes[1], (axes[2] if ndim == 3 else axes[0])
    stacked = draw(st.booleans()) or draw(st.booleans())
    layout = draw(st.sampled_from(["rows", "columns", "walk", "walk", "anywhere"]))
    m = 1 if layout == "columns" else draw(st.sampled_from([1, 1, 2, 3]))
    points = draw(st.integers(1, 16)) if stacked else 1
    small = st.integers(0, 3)
    starts = np.tile(np.array([draw(small) for _ in range(ndim)], np.int64), (points, 1))
    step = draw(st.integers(1, 3))      # between points laid along the columns
    if layout == "rows":
        starts[:, ra] += np.arange(points) * m
    elif layout == "columns":           # one row each, side by side
        starts[:, ca] += np.arange(points) * step
    elif layout == "walk":              # each point one step from the last, along a drawn axis
        size = {ra: m, ca: step, index: 1 if index != ra else m}
        for p, axis in enumerate(draw(st.lists(st.sampled_from([ra, ca, index]), min_size=points - 1,
                                               max_size=points - 1)), 1):
            starts[p:, axis] += size[axis]
    else:
        starts = np.array([[draw(small) for _ in range(ndim)] for _ in range(points)], np.int64).reshape(points, ndim)
    for _ in range(draw(st.integers(0, 2))):
        i, j = draw(st.integers(0, points - 1)), draw(st.integers(0, points - 1))
        edit = draw(st.sampled_from(["swap", "repeat", "move"]))
        if edit == "swap":
            starts[[i, j]] = starts[[j, i]]
        elif edit == "repeat":
            starts[i] = starts[j]
        else:
            starts[i] = [draw(small) for _ in range(ndim)]
    operand = Operand(None, starts, ra, ca, m, stacked)
    tiles = []
    for _ in range(draw(st.integers(1, 5))):
        base = draw(st.just(0) | st.integers(0, points - 1)) if stacked else draw(st.integers(0, 5))
        rows = (points - base) * m if stacked else m
        if draw(st.booleans()):   # a long tile, from inside one of its first points to inside one of its last
            r0 = draw(st.integers(0, min(rows - 1, 2 * m)))
            r1 = draw(st.integers(max(r0 + 1, rows - 2 * m), rows))
        else:
            r0 = draw(st.integers(0, rows - 1))
            r1 = draw(st.integers(r0 + 1, rows))
        c0 = draw(st.integers(0, 3))
        tiles.append((base, r0, r1, c0, c0 + draw(st.sampled_from([step, step, 1, 2, 4]))))
    return operand, [np.array(x, np.int64) for x in zip(*tiles)]


@settings(max_examples=400, deadline=None)
@given(operands_and_tiles())
def test_the_boxes_cut_by_runs_are_the_boxes_merged_point_by_point(case):
    operand, tiles = case
    got, want = operand.boxes(*tiles), operand._boxes_per_point(*tiles)
    assert [(x.dtype, x.shape) for x in got] == [(x.dtype, x.shape) for x in want]
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)
