"""Pass 1d, sink (`fractal.lower.sink`): a parallel nest reading each step's big result of a
sequential loop runs inside it.  Before/expected programs for the rule and each reason not
to; the retention model at its cpu size has its output GEMM in the time loop, next to the
state update; sunk programs compute what the interpreter does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fractal as ft

from examples import retention, zoo
from fractal.backends.cpu import CpuExecutable
from fractal.lower import Loop, Stage, parse_tile_program
from fractal.lower.hardware import KiB, MiB, MemoryLevel
from fractal.lower.pipeline import PassContext, run_pipeline
from fractal.lower.sink import sink

from tests.lang.strategies import assert_values_close, build, make_args, program_descs

from .test_passes import TINY_CPU, cpu_target, program

# TINY_CPU with a 1 KiB L2 and a DRAM so slow that any step's results are worth reading from
# cache: the policy's per-step minimum is 0 bytes, its cache 512 bytes (half the L2).
SLOW_DRAM_CPU = cpu_target(dataclasses.replace(TINY_CPU.hardware, levels=(
    MemoryLevel("L1", 512, 100.0), MemoryLevel("L2", 1 * KiB, 50.0), MemoryLevel("DRAM", 1 * MiB, 1e-6))))

BUFFERS = """
    buffer q: f32[64,1,8] global input
    buffer w: f32[8,8] global input
    buffer st: f32[72,8,8] global temp
    buffer o: f32[64,1,8] global output
"""
# a retention-like loop: 8 steps x 8 points, each step's state [8, 8] (2 KiB per step)
LOOP = """
    for s in 0:8 sequential host {
      for m in 0:8 parallel host {
        stage step() device { st[8*s + m + 8, 0:8, 0:8] = mul(st[8*s + m, 0:8, 0:8], 0.5) }
      }
    }
"""


def sunk(before: str, target=SLOW_DRAM_CPU):
    ctx = PassContext(target)
    return sink(parse_tile_program(before).verify(), ctx).verify(), ctx


def test_a_map_over_each_steps_state_runs_inside_the_loop():
    """`o[t] = q[t] @ st[t + 1]` for all t after the loop: the t loop goes, t becomes s, the
    nest joins the loop's body after its last statement, and the pass says so."""
    before = program(BUFFERS, LOOP + """
    for m in 0:8 parallel host {
      for t in 0:8 parallel host {
        stage out() device { o[8*m + t, 0:1, 0:8] = gemm(q[8*m + t, 0:1, 0:8], st[8*t + m + 8, 0:8, 0:8]) }
      }
    }""")
    after = program(BUFFERS, """
    for s in 0:8 sequential host {
      for m in 0:8 parallel host {
        stage step() device { st[8*s + m + 8, 0:8, 0:8] = mul(st[8*s + m, 0:8, 0:8], 0.5) }
      }
      for m in 0:8 parallel host {
        stage out() device { o[8*m + s, 0:1, 0:8] = gemm(q[8*m + s, 0:1, 0:8], st[8*s + m + 8, 0:8, 0:8]) }
      }
    }""")
    got, ctx = sunk(before)
    assert got == parse_tile_program(after).verify()
    assert ctx.notes == ["sink: out into the loop over s"]
    # and it computes the same (from the same initial states)
    rng = np.random.default_rng(0)
    inputs = {"q": rng.standard_normal((64, 1, 8)).astype(np.float32),
              "w": np.zeros((8, 8), np.float32)}
    want = CpuExecutable(parse_tile_program(before).verify())
    have = CpuExecutable(got)
    init = rng.standard_normal((8, 8, 8)).astype(np.float32)
    for exe in (want, have):
        exe.memory["st"].array[:8] = init
    np.testing.assert_array_equal(have.run(inputs)["o"], want.run(inputs)["o"])


@pytest.mark.parametrize("why, nest", [
    ("a weight shared by the steps: batched, one bigger GEMM",
     "stage out() device { o[8*m + t, 0:1, 0:8] = gemm(st[8*t + m + 8, 0:1, 0:8], w[0:8, 0:8]) }"),
    ("reads the state before the step's: another step's row",
     "stage out() device { o[8*m + t, 0:1, 0:8] = gemm(q[8*m + t, 0:1, 0:8], st[8*t + m, 0:8, 0:8]) }"),
    ("reads another point's row",
     "stage out() device { o[8*m + t, 0:1, 0:8] = gemm(q[8*m + t, 0:1, 0:8], st[8*t + 7 - m + 8, 0:8, 0:8]) }"),
    ("writes what the loop writes: the loop's later steps would see it",
     "stage out() device { st[8*t + m + 8, 0:1, 0:8] = mul(st[8*t + m + 8, 0:1, 0:8], 2.0) }"),
    ("reads nothing the loop writes",
     "stage out() device { o[8*m + t, 0:1, 0:8] = mul(q[8*m + t, 0:1, 0:8], 2.0) }"),
])
def test_nests_that_stay_after_the_loop(why, nest):
    before = program(BUFFERS, LOOP + f"""
    for m in 0:8 parallel host {{
      for t in 0:8 parallel host {{
        {nest}
      }}
    }}""")
    got, ctx = sunk(before)
    assert got == parse_tile_program(before), why
    assert ctx.notes == []


def test_a_nest_over_other_steps_or_past_a_conflicting_statement_stays():
    """A loop over 0:7 is not the loop's steps; a statement between the loop and the nest that
    writes what the nest writes keeps the order."""
    out = "stage out() device { o[8*m + t, 0:1, 0:8] = gemm(q[8*m + t, 0:1, 0:8], st[8*t + m + 8, 0:8, 0:8]) }"
    other_steps = program(BUFFERS, LOOP + "for m in 0:8 parallel host { for t in 0:7 parallel host { " + out + " } }")
    between = program(BUFFERS, LOOP + "stage poke() device { o[0, 0:1, 0:8] = 1.0 }\n"
                      "for m in 0:8 parallel host { for t in 0:8 parallel host { " + out + " } }")
    for before in (other_steps, between):
        got, ctx = sunk(before)
        assert got == parse_tile_program(before) and ctx.notes == []


def test_small_states_stay_batched_on_a_real_cache():
    """On TINY_CPU (10 GB/s DRAM: 50 KB a step before sinking pays) 2 KiB steps stay batched;
    without a hardware record the pass changes nothing."""
    before = program(BUFFERS, LOOP + """
    for m in 0:8 parallel host {
      for t in 0:8 parallel host {
        stage out() device { o[8*m + t, 0:1, 0:8] = gemm(q[8*m + t, 0:1, 0:8], st[8*t + m + 8, 0:8, 0:8]) }
      }
    }""")
    assert sunk(before, TINY_CPU)[0] == parse_tile_program(before)
    assert sink(parse_tile_program(before), None) == parse_tile_program(before)


def _stages_in_loops(body, inside=False):
    for s in body:
        if isinstance(s, Loop):
            yield from _stages_in_loops(s.body, inside or s.kind == "sequential")
        elif isinstance(s, Stage):
            yield s, inside


def test_retention_at_its_cpu_size_reads_each_state_in_the_step_that_writes_it():
    """The output GEMM `q[t] @ S[t]` joins the state update's stage in the time loop (one stage
    per step, bucketed to the live sequences); the states are not read after the loop."""
    args = retention.inputs("cpu")
    compiled = retention.model.compile(*args, target="cpu-generic")  # (the structure is this target's)
    loop = next(s for s in compiled.tile_ir.body if isinstance(s, Loop) and s.kind == "sequential")
    (step,) = [s for s in loop.body if isinstance(s, Stage)]
    gemms = [op for op in step.body if type(op).__name__ == "Gemm"]
    assert len(gemms) == 2 and len(step.body) == 3  # outer product, state update, output GEMM
    state = step.body[1].dst.buffer
    after = [st for st, inside in _stages_in_loops(compiled.tile_ir.body) if not inside]
    assert not any(r.buffer == state for st in after for op in st.body for r in op.reads)
    assert loop.var in step.dims[0].stop.vars()  # bucketed: a step runs its live sequences only


def on_slow_dram(fn, args):
    """`fn` compiled for `args` through the verified pipeline on SLOW_DRAM_CPU, and its notes."""
    compiled = fn.compile(*args)
    tile_ir, ctx = run_pipeline(compiled._lowered.program, target=SLOW_DRAM_CPU, verify=True)
    exe = CpuExecutable(tile_ir)
    return dataclasses.replace(compiled, tile_ir=tile_ir, _executable=exe), ctx.notes


@pytest.mark.parametrize("ragged", [True, False])
def test_retention_sunk_on_a_slow_dram_equals_the_interpreter(ragged):
    """At the small size the state is sunk only where DRAM is slow; the result is the
    interpreter's, on ragged and regular batches (float64)."""
    args = retention.inputs("small", dtype=np.float64, ragged=ragged)
    compiled, notes = on_slow_dram(retention.model, args)
    assert any(n.startswith("sink: ") for n in notes)
    want = retention.outputs(retention.model(*args, backend="interpreter"))
    assert zoo.max_abs_error(retention.outputs(compiled.run(*args)), want) < 1e-12


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program_descs())
def test_random_programs_on_a_slow_dram_equal_the_interpreter(desc):
    """Where every step's results are worth reading from cache, sinking (and the passes after
    it) keep the random programs of the language tests computing what the interpreter does."""
    fn = ft.function(build(desc))
    args = make_args(desc)
    try:
        compiled, _ = on_slow_dram(fn, args)
    except ft.UnsupportedError:
        return  # (a traced gather of lists of lists: the interpreter still runs it)
    assert_values_close(compiled.run(*args), fn.interpret(*args))
