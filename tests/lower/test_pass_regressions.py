"""Programs on which a pass broke the rule it must keep, found by the random legality tests
(test_pass_legality), minimised and pinned: each pass must leave them as the rule says.

Written as test_passes' specifications are: the program text before and after one pass.
"""

from __future__ import annotations

import pytest

from fractal.lower.materialise import contract_storage
from fractal.lower.rolling import roll_storage
from tests.lower.test_passes import assert_unchanged, program

READ_BEFORE_WRITE = program("""
    buffer x: f64[2,1] global input
    buffer h: f64[2,1] global output
    buffer p: f64[2,1] global temp
""", """
    for t in 0:2 sequential host {
      stage cell() device { h[t, 0:1] = add(x[t, 0:1], p[t, 0:1]) }
      stage proj() device { p[t, 0:1] = mul(x[t, 0:1], 2.0) }
    }
""")


@pytest.mark.parametrize("storage_pass", [contract_storage, roll_storage])
def test_a_temporary_read_before_its_step_writes_it_keeps_its_rows(storage_pass):
    """`cell` reads row t of p before `proj` writes it, in the same step: it reads a row
    nothing wrote yet (zeros).  With one row for all steps it would read the step before's
    (found: h[1] was x[1] + 2*x[0]); neither storage pass may share the rows."""
    assert_unchanged(storage_pass, READ_BEFORE_WRITE)
