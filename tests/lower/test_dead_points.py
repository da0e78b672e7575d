"""Pass 16, cut_dead (`fractal.lower.dead_points`): a stage's points whose results nothing
reads are cut from its space, each later dim stopping, as a step function of the first, one
past its last live coordinate.

The programs are ragged maps over their padded boxes: `m` a list's element, `j` (and `i`) its
own points, of which only the first `len(m)` are live; the result gathers the live rows.
"""

from __future__ import annotations

import pytest

from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower import dead_points, parse_tile_program
from fractal.lower.dead_points import cut_dead
from fractal.lower.pipeline import PassContext
from fractal.lower.target import Target
from tests.lower.test_passes import TINY_CPU, program, run_pass


class CutPolicy(CpuPolicy):
    """Every cut pays (the policy's own answers are tested below and in the policy's tests)."""

    def cut_to_live(self, facts, hw) -> bool:
        return True


CUT = Target("tiny, cuts", "cpu", TINY_CPU.hardware, CutPolicy())

# 3 elements of a list padded to 4 points: lengths 4, 1 and 2 (live rows 0-3, 4, 8-9)
BUFFERS = """
    buffer x: f32[13,1,4] global input
    buffer t: f32[13,1,4] global temp
    buffer u: f32[12,1,4] global temp
    buffer rows: i64[7] global const = [0, 1, 2, 3, 4, 8, 9]
    buffer y: f32[7,1,4] global output
"""
OUT_T = "stage out() device { y[0:7, 0:1, 0:4] = gather(t[0:13, 0:1, 0:4], rows[0:7], axis=0) }"
OUT_U = "stage out() device { y[0:7, 0:1, 0:4] = gather(u[0:12, 0:1, 0:4], rows[0:7], axis=0) }"
F = "t[j + 4*m, 0:1, 0:4] = tanh(x[j + 4*m, 0:1, 0:4])"
LENGTHS = "-3*min(1, max(0, m)) + min(1, max(0, m - 1)) + 4"   # 4, 1, 2 at m = 0, 1, 2


def rewrites(before: str, after: str) -> PassContext:
    got, ctx = run_pass(cut_dead, before, target=CUT)
    want = parse_tile_program(after).verify()
    assert str(got) == str(want)  # the readable diff
    assert got == want
    return ctx


def unchanged(before: str, target=CUT):
    got = cut_dead(parse_tile_program(before).verify(), PassContext(target))
    assert got == parse_tile_program(before)


def test_a_ragged_maps_points_past_each_elements_length_are_cut():
    rewrites(program(BUFFERS, f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\n{OUT_T}"),
             program(BUFFERS, f"stage f(m in 0:3, j in 0:{LENGTHS}) device {{ {F} }}\n{OUT_T}"))


def test_a_point_a_later_live_point_reads_stays_live():
    """`g` reads `t` one row ahead, so `f` keeps one more point of each element (stops 4, 2, 3)."""
    g = "u[j + 4*m, 0:1, 0:4] = add(t[j + 4*m + 1, 0:1, 0:4], x[j + 4*m, 0:1, 0:4])"
    before = f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\nstage g(m in 0:3, j in 0:4) device {{ {g} }}\n{OUT_U}"
    after = (f"stage f(m in 0:3, j in 0:-2*min(1, max(0, m)) + min(1, max(0, m - 1)) + 4) device {{ {F} }}\n"
             f"stage g(m in 0:3, j in 0:{LENGTHS}) device {{ {g} }}\n{OUT_U}")
    rewrites(program(BUFFERS, before), program(BUFFERS, after))


# 2 images of a box of 3 x 4 pixels: 3 x 4 and 2 x 3 (rows 12-14 and 16-18 live)
IMAGES = """
    buffer x: f32[24,1,4] global input
    buffer w: f32[4,4] global input
    buffer t: f32[24,1,4] global temp
    buffer rows: i64[18] global const = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18]
    buffer y: f32[18,1,4] global output
"""
IMAGES_OUT = "stage out() device { y[0:18, 0:1, 0:4] = gather(t[0:24, 0:1, 0:4], rows[0:18], axis=0) }"


def test_every_dim_past_the_first_is_cut_on_its_own():
    op = "t[j + 4*i + 12*m, 0:1, 0:4] = tanh(x[j + 4*i + 12*m, 0:1, 0:4])"
    rewrites(program(IMAGES, f"stage f(m in 0:2, i in 0:3, j in 0:4) device {{ {op} }}\n{IMAGES_OUT}"),
             program(IMAGES, f"stage f(m in 0:2, i in 0:3 - min(1, max(0, m)), j in 0:4 - min(1, max(0, m))) "
                             f"device {{ {op} }}\n{IMAGES_OUT}"))


def test_a_product_keeps_its_innermost_dim_whole_where_another_is_cut():
    """Its rows then fold into one product per image (32 rows of a 32-pixel-wide image, not one
    product per image row)."""
    op = "t[j + 4*i + 12*m, 0:1, 0:4] = gemm(x[j + 4*i + 12*m, 0:1, 0:4], w[0:4, 0:4])"
    rewrites(program(IMAGES, f"stage f(m in 0:2, i in 0:3, j in 0:4) device {{ {op} }}\n{IMAGES_OUT}"),
             program(IMAGES, f"stage f(m in 0:2, i in 0:3 - min(1, max(0, m)), j in 0:4) device {{ {op} }}\n{IMAGES_OUT}"))


@pytest.mark.parametrize("why, body", [
    ("every row is read", f"""
        stage f(m in 0:3, j in 0:4) device {{ {F} }}
        stage out() device {{ u[0:12, 0:1, 0:4] = copy(t[0:12, 0:1, 0:4]) }}
        stage res() device {{ y[0:7, 0:1, 0:4] = copy(u[0:7, 0:1, 0:4]) }}
     """),
    ("the stage steps a sequential loop (its points may feed its next step)", f"""
        for r in 0:2 sequential host {{ stage f(m in 0:3, j in 0:4) device {{ {F} }} }}
        {OUT_T}
     """),
    ("the stage has one dim (nothing past the first to cut)", f"""
        stage f(p in 0:12) device {{ t[p, 0:1, 0:4] = tanh(x[p, 0:1, 0:4]) }}
        {OUT_T}
     """),
])
def test_no_cut_where_every_point_may_be_read(why, body):
    unchanged(program(BUFFERS, body))


def test_no_cut_through_a_table_whose_rows_are_not_known():
    """The result gathers through an input index (its rows are known only when it runs)."""
    buffers = BUFFERS.replace("buffer rows: i64[7] global const = [0, 1, 2, 3, 4, 8, 9]",
                              "buffer rows: i64[7] global input")
    unchanged(program(buffers, f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\n{OUT_T}"))


def test_no_cut_where_the_policy_finds_the_polygon_dearer():
    """The NumPy backend gathers and scatters a polygon's regions: 7 live rows of 12 cost more."""
    unchanged(program(BUFFERS, f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\n{OUT_T}"), target=TINY_CPU)


def test_no_cut_of_a_stop_that_changes_too_often(monkeypatch):
    """Each change along the first dim is a term of the stop's index (here 2, over a limit of 1)."""
    monkeypatch.setattr(dead_points, "MAX_STEPS", 1)
    unchanged(program(BUFFERS, f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\n{OUT_T}"))


def test_the_cut_is_noted():
    ctx = rewrites(program(BUFFERS, f"stage f(m in 0:3, j in 0:4) device {{ {F} }}\n{OUT_T}"),
                   program(BUFFERS, f"stage f(m in 0:3, j in 0:{LENGTHS}) device {{ {F} }}\n{OUT_T}"))
    assert any(n.startswith("cut_dead: f j in 0:") for n in ctx.notes), ctx.notes
