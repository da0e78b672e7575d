"""Stage fusion (`fractal.backends.native.stage_fusion`): which consecutive stages run as one
point loop, by the dependence engine (legal) and the CPU policy (worth it); how the emitter
writes them; and that they compute what stage-by-stage order computes, on random programs and
the zoo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fractal as ft
from examples import zoo
from fractal.backends.cpu.policy import CpuPolicy
from fractal.backends.native.backend import native_target
from fractal.backends.native.executable import NativeExecutable
from fractal.backends.native.stage_fusion import fused_run
from fractal.backends.pointwise import run_pointwise
from fractal.lower.policy import StageFusionFacts
from fractal.lower.tile_isl import Scope
from fractal.testing.compare import compare
from tests.backends.cpu.programs import program, tile
from tests.backends.native.conftest import drawn_program, drawn_stage, needs_compiler

HOST = native_target()
HW = HOST.hardware


class Always(CpuPolicy):
    """The host's policy, fusing every legal run of stages."""

    def fuse_stages(self, facts, hw) -> bool:
        return True


ALWAYS = dataclasses.replace(HOST, name=HOST.name + " [fuse always]",
                             policy=Always(**{f.name: getattr(HOST.policy, f.name)
                                              for f in dataclasses.fields(HOST.policy)}))


# --- is it worth it? (the CPU policy) -----------------------------------------------------------

BUDGET = int(HW.level(HW.tile_level).size_bytes * CpuPolicy().cache_share)
WORTH_IT = StageFusionFacts(points=64 * HW.cores, point_handed_bytes=BUDGET // 2, gemm_rows=128)   # (b2b_gemm's, 2 cores)


def test_the_policy_fuses_stages_that_hand_over_more_than_the_caches_hold_a_point_at_a_time_fits():
    assert CpuPolicy().fuse_stages(WORTH_IT, HW)
    assert CpuPolicy().fuse_stages(dataclasses.replace(WORTH_IT, gemm_rows=None), HW)


@pytest.mark.parametrize("why, change", [
    ("fewer points than cores", dict(points=HW.cores - 1)),
    ("a point's hand-over overflows the tile budget", dict(point_handed_bytes=BUDGET + 1)),
    ("all points' hand-over fits the cores' caches", dict(points=2 * HW.cores, point_handed_bytes=BUDGET // 2)),
    ("a shared weight's product of one row a point (stage by stage: one BLAS call)", dict(gemm_rows=1)),
])
def test_the_policy_leaves_stages_apart(why, change):
    assert not CpuPolicy().fuse_stages(dataclasses.replace(WORTH_IT, **change), HW), why


# --- is it legal? (the dependence engine) -------------------------------------------------------

BUFFERS = """
  buffer x: f32[{rows},3] global input
  buffer t: f32[{rows},3] global temp
  buffer y: f32[{rows},3] global output
"""


def run_length(body: str, rows: int = 5) -> int:
    p = program(tile(BUFFERS.format(rows=rows), body))
    return fused_run(p.body, 0, Scope(), p, ALWAYS)


def test_stages_that_meet_only_at_each_point_fuse():
    assert run_length("""
      stage a(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
      stage b(m in 0:4) device { y[m, 0:3] = add(t[m, 0:3], x[m, 0:3]) }
      stage c(m in 0:4) device { y[m, 0:3] = mul(y[m, 0:3], t[m, 0:3]) }
    """) == 3


def test_a_stage_reading_what_another_point_wrote_ends_the_run():
    """Point by point, point m would read point m + 1's `t` before it ran."""
    assert run_length("""
      stage a(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
      stage b(m in 0:4) device { y[m, 0:3] = copy(t[m + 1, 0:3]) }
    """) == 1


def test_stages_over_other_dims_stay_apart():
    assert run_length("""
      stage a(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
      stage b(n in 0:4) device { y[n, 0:3] = copy(t[n, 0:3]) }
    """) == 1


def test_the_host_policy_keeps_small_stages_apart():
    p = program(tile(BUFFERS.format(rows=5), """
      stage a(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
      stage b(m in 0:4) device { y[m, 0:3] = copy(t[m, 0:3]) }
    """))
    assert fused_run(p.body, 0, Scope(), p, HOST) == 1   # (12 floats handed over: cached either way)


# --- the emitted loop, run ------------------------------------------------------------------------

@needs_compiler
def test_the_fused_loop_runs_each_points_stages_in_turn_and_profiles_each_stage():
    p = program(tile(BUFFERS.format(rows=5), """
      stage a(m in 0:4) device { t[m, 0:3] = exp(x[m, 0:3]) }
      stage b(m in 0:4) device { y[m, 0:3] = add(t[m, 0:3], x[m, 0:3]) }
    """))
    exe = NativeExecutable(p, threads=2, target=ALWAYS)
    text = exe.source
    assert text.count("// stages a, b fused, point by point") == 1 and text.count("for (long long v_m = 0;") == 1
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    profile: dict = {}
    np.testing.assert_allclose(exe.run({"x": x}, profile=profile)["y"], run_pointwise(p, {"x": x})["y"], rtol=1e-6)
    assert set(profile) == {"a", "b"} and all(s >= 0 for s in profile.values())


OPS = [   # (a point's own rows, or a neighbour's: `{o}` 0 or 1)
    "t[m + {o}, 0:3] = exp(x[m, 0:3])",
    "y[m, 0:3] = add(t[m + {o}, 0:3], x[m, 0:3])",
    "y[m + {o}, 0:3] = mul(y[m, 0:3], 0.5)",
    "t[m, 0:3] = sub(y[m + {o}, 0:3], x[m, 0:3])",
]


@st.composite
def stage_runs(draw):
    """2-4 consecutive stages over one dim `m`, their ops touching a point's own rows or a
    neighbour's: fusable or not."""
    stages = [drawn_stage(draw, f"s{j}", "m in 0:4", OPS) for j in range(draw(st.integers(2, 4)))]
    return drawn_program(BUFFERS.format(rows=5), "\n".join(stages))


@needs_compiler
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(stage_runs())
def test_random_stage_runs_fuse_where_legal_and_match_the_pointwise_executor(p):
    x = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
    exe = NativeExecutable(p, threads=2, target=ALWAYS)
    runs, k = [], 0
    while k < len(p.body):
        runs.append(fused_run(p.body, k, Scope(), p, ALWAYS))
        k += runs[-1]
    assert exe.source.count("fused, point by point") == sum(n > 1 for n in runs)
    np.testing.assert_allclose(exe.run({"x": x})["y"], run_pointwise(p, {"x": x})["y"], rtol=1e-5, atol=1e-6,
                               err_msg=str(p))


@needs_compiler
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b2b_gemm_fused_equals_the_interpreter(dtype):
    m = zoo.load("b2b_gemm")
    args = m.inputs("small", dtype=dtype)
    compiled = m.model.compile(*args, target=ALWAYS)
    assert "fused, point by point" in compiled.source
    got = m.outputs(compiled.run(*args))
    want = m.outputs(m.model(*args, backend="interpreter"))
    tol = 1e-9 if dtype == np.float64 else zoo.tolerance(dtype)
    assert compare(got, want, rtol=tol, atol=tol) == []


@pytest.mark.parametrize("target, fused", [("cpu-generic-native", True), ("epyc-9654-native", False)])
def test_b2b_gemm_at_its_cpu_config_fuses_its_two_products_where_the_cores_caches_cannot_hold_the_intermediate(
        target, fused):
    """Its 8 MiB intermediate: 2 cores of 1 MiB L2 cannot hold it, 96 can (named targets: the
    same answer on any machine)."""
    t = ft.targets.get(target)
    m = zoo.load("b2b_gemm")
    tile_ir = m.model.compile(*m.inputs("cpu"), target=t).tile_ir
    k = next(i for i, s in enumerate(tile_ir.body) if getattr(s, "name", "").startswith("matmul"))
    assert fused_run(tile_ir.body, k, Scope(), tile_ir, t) == (2 if fused else 1)
