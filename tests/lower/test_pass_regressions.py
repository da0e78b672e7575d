"""Programs on which a pass broke the rule it must keep (or left work behind), found by the
random legality tests (test_pass_legality), minimised and pinned: each pass must leave them
as the rule says.

Written as test_passes' specifications are: the program text before and after one pass.
"""

from __future__ import annotations

import pytest

from fractal.lower.hoist import hoist
from fractal.lower.materialise import contract_storage
from fractal.lower.rolling import roll_storage
from tests.lower.test_passes import assert_rewrites, assert_unchanged, program

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


PARTS = """
    buffer x: f64[2,4] global input
    buffer h: f64[2,4] global output
    buffer p: f64[%s,4] global temp
    buffer q: f64[%s,4] global temp
"""


def test_a_temporary_written_in_parts_before_its_read_still_keeps_one_steps_rows():
    """The step's write may come in parts: two column blocks (p), or a column per point of a
    dim (q); together they hold what the read of the whole row reads, so one row suffices (as
    in the golden tile IR of the zoo's RNNs)."""
    def steps(row: str) -> str:
        return f"""
            for t in 0:2 sequential host {{
              stage halves() device {{
                p[{row}, 0:2] = mul(x[t, 0:2], 2.0)
                p[{row}, 2:4] = mul(x[t, 2:4], 3.0)
              }}
              stage columns(c in 0:4) device {{ q[{row}, c:c + 1] = add(x[t, c:c + 1], 1.0) }}
              stage cell() device {{ h[t, 0:4] = add(q[{row}, 0:4], p[{row}, 0:4]) }}
            }}
        """
    assert_rewrites(contract_storage, program(PARTS % (2, 2), steps("t")), program(PARTS % (1, 1), steps("0")))


def test_a_loop_whose_every_statement_is_hoisted_is_gone():
    """A loop whose statements all move out batched leaves nothing to run (it was left,
    empty, to run its steps)."""
    buffers = "buffer x: f64[3,2] global input\nbuffer p: f64[3,2] global output"
    stage = "stage proj() device { p[t, 0:2] = mul(x[t, 0:2], 2.0) }"
    assert_rewrites(hoist, program(buffers, f"for t in 0:3 sequential host {{ {stage} }}"),
                    program(buffers, f"for t in 0:3 parallel host {{ {stage} }}"))
