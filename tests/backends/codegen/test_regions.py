"""`disjoint` and `overwrites_its_input`: when an op must stage its values before it stores them.

An op that writes an element it also reads as another element stages (NumPy reads all its
operands first); one whose read and write regions provably never meet stores directly.  Each
case below is the pair of regions a state update reads and writes.
"""

from __future__ import annotations

import pytest

from fractal.backends.codegen.regions import disjoint, overwrites_its_input
from fractal.lower.tile_affine import aff, mod
from fractal.lower.tile_expr import Load
from fractal.lower.tile_ir import Elementwise
from fractal.lower.tile_nodes import Region

m, s = aff("m"), aff("s")


def row(start, rows=None):
    """Rows `start` (one row, or `rows` of them) of a [*, 64, 64] state buffer."""
    return Region("st", (start, 0, 0), (rows, 64, 64))


@pytest.mark.parametrize("a, b, apart", [
    (row(m + 8 * s + 8), row(m + 8 * s), True),                        # the next step's row
    (row(m + 8 * s), row(m + 8 * s), False),                           # the row itself
    (row(m + 8 * mod(s + 1, 2)), row(m + 8 * mod(s, 2)), True),        # rolled: the other slot
    (row(m + 8 * mod(s + 2, 2)), row(m + 8 * mod(s, 2)), False),       # rolled: the same slot
    (row(m + 8 * mod(s + 1, 3)), row(m + 8 * mod(s, 3)), True),        # one of three slots on
    (row(m + 8 * mod(s + 1, 2), 9), row(m + 8 * mod(s, 2)), False),    # a range reaching the next slot
    (row(m + 8 * mod(s + 1, 2)), row(m + 4 * mod(s, 2)), False),       # slots of other sizes
    (row(m + 8 * mod(s + 1, 2)), row(m + 8 * mod(s, 3)), False),       # other widths
    (row(m + 8 * mod(s + 1, 2) + 1), row(m + 8 * mod(s, 2)), False),   # slot and offset: not proven
])
def test_regions_are_disjoint_exactly_where_no_point_can_reach_both(a, b, apart):
    assert disjoint(a, b) is apart and disjoint(b, a) is apart


def test_a_rolled_state_update_stores_directly_and_an_overlapping_one_stages():
    rolled = Elementwise(row(m + 8 * mod(s + 1, 2)), Load(row(m + 8 * mod(s, 2))))
    shifted = Elementwise(row(m + 8 * mod(s + 1, 2)), Load(row(m + 8 * mod(s, 2) + 1)))
    assert not overwrites_its_input(rolled, rolled.reads)
    assert overwrites_its_input(shifted, shifted.reads)
