"""Point-major loops (`fractal.backends.native.point_major`): which sequential loops run each
point through all its steps, by the dependence engine (legal) and the CPU policy (worth it);
how the emitter writes them; and that they compute what step-major order computes, on random
programs and the zoo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples import zoo
from fractal.backends.cpu.policy import CpuPolicy
from fractal.backends.native.backend import native_target
from fractal.backends.native.executable import NativeExecutable
from fractal.backends.native.point_major import point_major_box
from fractal.backends.pointwise import run_pointwise
from fractal.lower.policy import PointMajorFacts
from fractal.lower.tile_ir import Loop
from fractal.lower.tile_isl import Scope
from fractal.testing.compare import compare
from tests.backends.cpu.programs import program, tile
from tests.backends.native.conftest import drawn_program, drawn_stage, needs_compiler

HOST = native_target()
HW = HOST.hardware


def with_order(order: str):
    """The host's native target with the policy's `loop_order` set."""
    return dataclasses.replace(HOST, policy=dataclasses.replace(HOST.policy, loop_order=order))


# --- is it worth it? (the CPU policy) -----------------------------------------------------------

BUDGET = int(HW.level(HW.tile_level).size_bytes * CpuPolicy().cache_share)
WORTH_IT = PointMajorFacts(steps=16, points=256, point_step_bytes=BUDGET // 2,
                           step_bytes=BUDGET * HW.cores * 8, gemm_rows=64)


def test_the_policy_runs_point_major_a_loop_whose_steps_overflow_the_cache_a_point_at_a_time_fits():
    assert CpuPolicy().point_major(WORTH_IT, HW)
    assert CpuPolicy().point_major(dataclasses.replace(WORTH_IT, gemm_rows=None), HW)


@pytest.mark.parametrize("why, change", [
    ("one step: nothing to keep cached between steps", dict(steps=1)),
    ("fewer points than cores", dict(points=HW.cores - 1)),
    ("a point's step overflows the tile budget", dict(point_step_bytes=BUDGET + 1)),
    ("a step over all points fits the cores' caches", dict(step_bytes=BUDGET * HW.cores)),
    ("a shared weight's product of one row a point (an RNN's step: batched, one BLAS call)", dict(gemm_rows=1)),
])
def test_the_policy_leaves_step_major(why, change):
    assert not CpuPolicy().point_major(dataclasses.replace(WORTH_IT, **change), HW), why


def test_the_policy_runs_point_major_in_blocks_a_loop_of_a_few_bytes_a_point_step_over_enough_points():
    """transformer_block's softmax max per query: 16 queries at a time through the 128 keys."""
    policy = CpuPolicy()
    tiny = PointMajorFacts(steps=128, points=HW.cores * policy.small_step_points,   # (a step that fits
                           point_step_bytes=policy.small_point_step_bytes, step_bytes=1,     # any host's caches)
                           gemm_rows=None, innermost_points=policy.point_block_size)
    assert policy.point_major(tiny, HW) and policy.point_block(tiny, HW) == policy.point_block_size
    assert not policy.point_major(dataclasses.replace(tiny, points=tiny.points - 1), HW)
    assert not policy.point_major(dataclasses.replace(tiny, steps=1), HW)
    for why, change in [("a point's step of more bytes", dict(point_step_bytes=tiny.point_step_bytes + 1)),
                        ("too few points along the innermost dim for a block", dict(innermost_points=15)),
                        ("an innermost dim of no constant extent", dict(innermost_points=0))]:
        small = dataclasses.replace(tiny, **change)
        assert policy.point_block(small, HW) == 1 and not policy.point_major(small, HW), why


def test_the_policy_can_be_told_an_order():
    assert not CpuPolicy(loop_order="step-major").point_major(WORTH_IT, HW)
    assert CpuPolicy(loop_order="point-major").point_major(dataclasses.replace(WORTH_IT, steps=1), HW)


# --- is it legal? (the dependence engine) -------------------------------------------------------

BUFFERS = """
  buffer x: f32[4,3] global input
  buffer k: f32[6,3] global input
  buffer st: f32[4,3] global output
  buffer t: f32[4,3] global temp
"""


def loop_of(body: str):
    p = program(tile(BUFFERS, body))
    return p, next(s for s in p.body if isinstance(s, Loop))


def box_of(body: str, order: str = "point-major"):
    p, loop = loop_of(body)
    pm = point_major_box(loop, Scope(), p, with_order(order))
    return None if pm is None else [(d.var, str(d.start), str(d.stop)) for d in pm.box]


OWN_STATE = """
  for r in 0:6 sequential host {
    stage a(m in 0:4) device {
      t[m, 0:3] = mul(x[m, 0:3], k[r, 0:3])
      st[m, 0:3] = add(st[m, 0:3], t[m, 0:3])
    }
  }
"""


def test_a_loop_whose_points_keep_to_their_own_rows_is_legal_point_major():
    assert box_of(OWN_STATE) == [("m", "0", "4")]
    assert box_of(OWN_STATE, "step-major") is None   # (legal, not wanted)


def test_a_loop_whose_points_read_what_a_neighbour_wrote_stays_step_major():
    """Step-major, stage b reads what every point of stage a wrote this step; point-major,
    point m would read point m + 1's before it ran."""
    assert box_of("""
      for r in 0:6 sequential host {
        stage a(m in 0:4) device { t[m, 0:3] = add(st[m, 0:3], k[r, 0:3]) }
        stage b(m in 0:3) device { st[m, 0:3] = copy(t[m + 1, 0:3]) }
      }
    """) is None


def test_stages_over_other_dims_stay_step_major():
    assert box_of("""
      for r in 0:6 sequential host {
        stage a(m in 0:4) device { t[m, 0:3] = mul(x[m, 0:3], k[r, 0:3]) }
        stage b(n in 0:4) device { st[n, 0:3] = add(st[n, 0:3], t[n, 0:3]) }
      }
    """) is None


def test_a_stage_whose_points_shrink_step_by_step_runs_over_their_widest_box():
    """A sorted ragged batch: fewer points live at later steps; point-major, each point runs
    the steps where the stage's bounds admit it."""
    assert box_of("""
      for r in 0:6 sequential host {
        stage a(m in 0:4 - floor(r / 2)) device { st[m, 0:3] = add(st[m, 0:3], k[r, 0:3]) }
      }
    """) == [("m", "0", "4")]


# --- the emitted loops, run ---------------------------------------------------------------------

@needs_compiler
def test_the_emitted_nest_runs_points_outside_the_steps_and_equals_the_pointwise_executor():
    p = program(tile(BUFFERS, OWN_STATE + """
      for r in 0:6 sequential host {
        stage shrink(m in 0:4 - floor(r / 2)) device { st[m, 0:3] = mul(st[m, 0:3], k[r, 0:3]) }
      }
    """))
    exe = NativeExecutable(p, threads=2, target=with_order("point-major"))
    text = exe.source
    assert text.count("point-major over (m)") == 2
    assert text.index("for (long long v_m = 0;") < text.index("for (long long v_r = 0;")
    assert "if (v_m >= 0 && v_m < -fl_div(v_r, 2) + 4) {" in text   # (the shrinking stage's own bounds, per step)
    # the points of the shrinking loop run different steps: dealt out in chunks as threads finish
    assert text.count("schedule(static)") == 1 and text.count("schedule(dynamic, ft_chunk)") == 1
    assert text.index("schedule(static)") < text.index("schedule(dynamic, ft_chunk)")
    inputs = {"x": np.arange(12, dtype=np.float32).reshape(4, 3) / 7, "k": np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3)}
    profile: dict = {}
    got = exe.run(inputs, profile=profile)
    np.testing.assert_allclose(got["st"], run_pointwise(p, inputs)["st"], rtol=1e-6)
    assert set(profile) == {"a", "shrink"} and all(s >= 0 for s in profile.values())


@needs_compiler
def test_points_of_a_few_elements_a_step_run_in_blocks_of_their_innermost_dim():
    """Blocks of 16 points of `m` run every step together (the last block partial); each
    stage's own bounds cut a block's range of `m` and guard the outer dim `b`."""
    p = program(tile("""
      buffer x: f32[3,37] global input
      buffer k: f32[6,1] global input
      buffer st: f32[3,37] global output
    """, """
      for r in 0:6 sequential host {
        stage grow(b in 0:3, m in floor(r / 2):37) device { st[b, m] = add(st[b, m], mul(x[b, m], k[r, 0])) }
        stage shrink(b in 0:3 - floor(r / 4), m in 0:37 - r) device { st[b, m] = maximum(st[b, m], x[b, m]) }
      }
    """))
    exe = NativeExecutable(p, threads=2, target=with_order("point-major"))
    text = exe.source
    assert "point-major over (b, m), 16 points of m at a time" in text
    assert "for (long long ft_pb = 0; ft_pb < 3; ++ft_pb) {" in text
    assert "for (long long v_m = fl_max(0 + ft_pb * 16, fl_div(v_r, 2)); v_m < fl_min(0 + ft_pb * 16 + 16, 37); ++v_m) {" in text
    assert "if (v_b >= 0 && v_b < -fl_div(v_r, 4) + 3) {" in text
    inputs = {"x": np.linspace(-1, 1, 111, dtype=np.float32).reshape(3, 37),
              "k": np.linspace(0.5, -0.5, 6, dtype=np.float32).reshape(6, 1)}
    np.testing.assert_allclose(exe.run(inputs)["st"], run_pointwise(p, inputs)["st"], rtol=1e-6, atol=1e-6)


LOOP_BUFFERS = """
  buffer x: f32[{rows},3] global input
  buffer k: f32[6,3] global input
  buffer st: f32[{rows},3] global output
  buffer t: f32[{rows},3] global temp
"""
LOOP_OPS = [   # (a point's own rows, or a neighbour's: `{o}` 0 or 1)
    "t[m + {o}, 0:3] = add(st[m, 0:3], k[r, 0:3])",
    "st[m, 0:3] = mul(st[m, 0:3], tanh(t[m + {o}, 0:3]))",
    "st[m, 0:3] = add(st[m, 0:3], x[m + {o}, 0:3])",
    "t[m, 0:3] = sub(k[r, 0:3], st[m + {o}, 0:3])",
]


@st.composite
def step_loops(draw):
    """A sequential loop of 1-3 stages over one dim `m` of 4 points, or of 37 (the emitter runs
    those in blocks, the last one partial), whole or shrinking with the steps, their ops
    touching a point's own rows or a neighbour's: legal point-major or not."""
    n = draw(st.sampled_from([4, 37]))
    dims = [f"m in 0:{n}", f"m in 0:{n} - floor(r / 3)", f"m in floor(r / 2):{n}"]
    stages = [drawn_stage(draw, f"s{j}", draw(st.sampled_from(dims)), LOOP_OPS) for j in range(draw(st.integers(1, 3)))]
    return drawn_program(LOOP_BUFFERS.format(rows=n + 1), "for r in 0:6 sequential host {\n" + "\n".join(stages) + "\n}")


@needs_compiler
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(step_loops())
def test_random_step_loops_run_point_major_where_legal_and_match_the_pointwise_executor(p):
    loop = next(s for s in p.body if isinstance(s, Loop))
    rows = next(b.shape[0] for b in p.buffers if b.name == "x")
    inputs = {"x": np.linspace(-1, 1, rows * 3, dtype=np.float32).reshape(rows, 3),
              "k": np.linspace(0.5, -0.5, 18, dtype=np.float32).reshape(6, 3)}
    exe = NativeExecutable(p, threads=2, target=with_order("point-major"))
    pm = point_major_box(loop, Scope(), p, with_order("point-major"))
    assert ("point-major over (m)" in exe.source) == (pm is not None)
    assert ("points of m at a time" in exe.source) == (pm is not None and pm.block > 1)
    want = run_pointwise(p, inputs)
    np.testing.assert_allclose(exe.run(inputs)["st"], want["st"], rtol=1e-5, atol=1e-6, err_msg=str(p))


@needs_compiler
@pytest.mark.parametrize("name", ["flash_attention", "retention", "selective_scan", "bigru", "transformer_block"])
@pytest.mark.parametrize("ragged, dtype", [(True, np.float32), (False, np.float64)], ids=["ragged-f32", "regular-f64"])
def test_zoo_models_with_every_legal_loop_point_major_equal_the_interpreter(name, ragged, dtype):
    m = zoo.load(name)
    args = m.inputs("small", dtype=dtype, ragged=ragged)
    compiled = m.model.compile(*args, target=with_order("point-major"))
    assert "point-major over" in compiled.source
    got = m.outputs(compiled.run(*args))
    want = m.outputs(m.model(*args, backend="interpreter"))
    tol = 1e-9 if dtype == np.float64 else zoo.tolerance(dtype)
    assert compare(got, want, rtol=tol, atol=tol) == []


@pytest.mark.parametrize("field, value, allowed", [
    ("loop_order", "pointmajor", "'cheapest', 'point-major', 'step-major'"),
    ("schedule", "wave", "'cheapest', 'wavefront', 'batched', 'as written'"),
])
def test_a_policy_naming_an_order_or_schedule_it_does_not_have_is_refused(field, value, allowed):
    with pytest.raises(ValueError, match=f"^CpuPolicy\\({field}='{value}'\\): {field} is one of {allowed}$"):
        CpuPolicy(**{field: value})
