"""Weights laid out at load time (`replicas`): a product's shared weight, or a layout of input
weights, loaded whole onto every PE with the program, read in place by the stationary plan;
which weights qualify, the SRAM budget, and every engine's answer equal to the interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from examples import zoo
from fractal.backends.dataflow import gemm_choice, replicas
from fractal.backends.dataflow.blocked import run_local
from fractal.backends.dataflow.bsp import run_bsp
from fractal.backends.dataflow.mesh_ir import Pes, Sends
from fractal.backends.dataflow.mesh_parser import parse_mesh
from fractal.backends.dataflow.mesh_printer import print_mesh
from fractal.backends.dataflow.plan import Planner
from fractal.backends.dataflow.spec import mesh_spec
from fractal.compile import compile_function
from fractal.lower.lower_program import lower_program
from fractal.lower.pipeline import run_pipeline
from fractal.lower.tile_parser import parse_tile_program
from fractal.testing.compare import compare

from .products import ints, project, tensors
from .test_mpi import needs_mpi

F64 = np.float64


def _stationary_only():
    every = gemm_choice.candidates
    return lambda *a: {k: v for k, v in every(*a).items() if k.startswith("stationary")}


@settings(max_examples=10, deadline=None)
@given(points=st.integers(1, 6), m=st.sampled_from([1, 2, 4]), k=st.sampled_from([2, 4, 8]),
       n=st.sampled_from([2, 3, 8]), rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 99))
def test_the_stationary_plan_reads_a_replicated_weight_in_place_and_equals_numpy(points, m, k, n, rows, cols, seed):
    xs, w = tensors(points, (m, k), seed), ints((k, n), seed + 99)
    target = ft.targets.mesh(rows, cols, sram_bytes=1 << 20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm_choice, "candidates", _stationary_only())
        compiled = compile_function(project, (xs, w), {}, target)
    program = compiled._executable.program
    (name, local), = Planner(compiled.tile_ir, target.policy.spec).replicas.items()
    every = Pes(0, rows, 0, cols)
    assert [ld.pes for ld in program.loads if ld.dst.buffer == local] == [every]
    # nothing of the weight moves at run time: no message leaves its home blocks
    assert not any(isinstance(t, Sends) and t.src.buffer == f"h_{name}" and len(t) for s in program.steps for t in s.transfers)
    assert any(op.b.buffer == local for s in program.steps for c in s.computes for op in c.ops if hasattr(op, "b"))
    got, want = compiled.run(xs, w), [x @ w for x in xs.to_list()]
    assert all(np.array_equal(g, e) for g, e in zip(got.to_list(), want))


def test_every_engine_reads_the_replica_alike():
    xs, w = tensors(4, (2, 8), 0), ints((8, 4), 1)
    target = ft.targets.mesh(2, 2, sram_bytes=1 << 20)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm_choice, "candidates", _stationary_only())
        compiled = compile_function(project, (xs, w), {}, target)
    assert any(ld.dst.buffer.startswith("rep_") for ld in compiled._executable.program.loads)
    want = [x @ w for x in xs.to_list()]
    for executor in ("bsp", "event"):
        got = compiled.run(xs, w, executor=executor)
        assert all(np.array_equal(g, e) for g, e in zip(got.to_list(), want)), executor
    program = compiled._executable.program
    names = [a.name for a in program.arrays if a.role == "input"]
    inputs = dict(zip(names, (np.stack(xs.to_list()), w[None])))
    bsp_out, _ = run_bsp(program, inputs)
    local_out = run_local(program, inputs)   # (the MPI executor's blocks of PEs, in one process)
    assert bsp_out.keys() == local_out.keys() and all(np.array_equal(bsp_out[k], local_out[k]) for k in bsp_out)


def test_a_replicated_program_prints_and_reads_back():
    xs, w = tensors(2, (2, 4), 0), ints((4, 4), 1)
    compiled = compile_function(project, (xs, w), {}, ft.targets.mesh(2, 2, sram_bytes=1 << 20))
    program = compiled._executable.program
    assert any(ld.dst.buffer.startswith("rep_") for ld in program.loads)
    assert parse_mesh(print_mesh(program)) == program


_WEIGHTS = """tile @weights {
  buffer x: f64[4,2,8] global input
  buffer w: f64[8,4] global input
  buffer v: f64[2,4,4] global input
  buffer lay: f64[4,8] global temp
  buffer made: f64[8,4] global temp
  buffer per: f64[4,8,4] global input
  buffer y: f64[4,2,4] global output
  buffer z: f64[4,2,8] global output
  buffer u: f64[4,2,4] global output
  stage lay(r in 0:2) device {
    lay[0:4, 4*r:4*r + 4] = copy(v[r, 0:4, 0:4])
  }
  stage made() device {
    made[0:8, 0:4] = add(w[0:8, 0:4], w[0:8, 0:4])
  }
  stage by_w(m in 0:4) device {
    y[m, 0:2, 0:4] = gemm(x[m, 0:2, 0:8], w[0:8, 0:4])
  }
  stage by_lay(m in 0:4) device {
    z[m, 0:2, 0:8] = gemm(y[m, 0:2, 0:4], lay[0:4, 0:8])
  }
  stage by_made(m in 0:4) device {
    u[m, 0:2, 0:4] = gemm(x[m, 0:2, 0:8], made[0:8, 0:4])
  }
  stage by_point(m in 0:4) device {
    u[m, 0:2, 0:4] = gemm(x[m, 0:2, 0:8], per[m, 0:8, 0:4])
  }
}"""


def test_which_weights_qualify():
    tile = parse_tile_program(_WEIGHTS)
    # an input weight, and a temp that only copies inputs (its loads: one per copy, from the host);
    # not a temp computed from them, nor a right operand that differs per point
    assert replicas.shared_weights(tile) == ["w", "lay"]
    starts = lambda r: tuple(s.evaluate({}) for s in r.start)  # noqa: E731
    (d0, s0), (d1, s1) = replicas.layouts(tile)["lay"]
    assert (d0.buffer, starts(d0), s0.buffer, starts(s0)) == ("lay", (0, 0), "v", (0, 0, 0))
    assert (starts(d1), starts(s1)) == ((0, 4), (1, 0, 0))
    assert "made" not in replicas.layouts(tile)


def test_the_weights_take_at_most_half_the_sram_left_beside_the_homes_smallest_first():
    tile = parse_tile_program(_WEIGHTS)
    spec = mesh_spec(2, 2, "tiny", sram_bytes=4096)
    # w and lay are 256 bytes each: the budget is half of what the homes leave
    assert replicas.choose(tile, spec, spec.usable_bytes - 1024) == {"lay": "rep_lay", "w": "rep_w"}
    assert replicas.choose(tile, spec, spec.usable_bytes - 1023) == {"lay": "rep_lay"}
    assert replicas.choose(tile, spec, spec.usable_bytes - 511) == {}


def test_the_planner_counts_the_replicas_on_every_pe_and_the_program_equals_the_interpreter():
    tile = parse_tile_program(_WEIGHTS)
    spec = mesh_spec(2, 2, "tiny", sram_bytes=1 << 20)
    planner = Planner(tile, spec)
    assert planner.replicas == {"lay": "rep_lay", "w": "rep_w"}
    assert (planner.resident_live == 2 * 256).all()
    program = planner.program()
    rng = np.random.default_rng(0)
    inputs = {"x": rng.integers(-3, 4, (4, 2, 8)).astype(F64), "w": rng.integers(-3, 4, (8, 4)).astype(F64),
              "v": rng.integers(-3, 4, (2, 4, 4)).astype(F64), "per": rng.integers(-3, 4, (4, 8, 4)).astype(F64)}
    out, _ = run_bsp(program, inputs)
    y = inputs["x"] @ inputs["w"]
    lay = np.concatenate(list(inputs["v"]), axis=1)
    assert np.array_equal(out["y"], y)
    assert np.array_equal(out["z"], y @ lay)
    assert np.array_equal(out["u"], inputs["x"] @ inputs["per"])


def test_the_stationary_plan_without_room_for_a_replica_broadcasts_the_weight():
    xs, w = tensors(4, (2, 8), 0), ints((8, 4), 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm_choice, "candidates", _stationary_only())
        patch.setattr(replicas, "choose", lambda *a: {})
        compiled = compile_function(project, (xs, w), {}, ft.targets.mesh(2, 2, sram_bytes=1 << 20))
    program = compiled._executable.program
    assert not any(ld.dst.buffer.startswith("rep_") for ld in program.loads)
    assert any(t.src.buffer.startswith("h_in_w") for s in program.steps for t in s.transfers)
    got = compiled.run(xs, w)
    assert all(np.array_equal(g, x @ w) for g, x in zip(got.to_list(), xs.to_list()))


def test_b2b_gemm_reads_its_weights_in_place_on_a_mesh_with_room():
    m = zoo.load("b2b_gemm")
    args = m.inputs("small", dtype=np.float64, ragged=False)
    target = ft.targets.mesh(4, 4, sram_bytes=1 << 20)
    program, _, leaves, _ = m.model.traced_call(args, {})
    tile, _ = run_pipeline(lower_program(program, leaves).program, target=target)
    # the second product's weight copies an input; the first's copies a copy (not loaded yet)
    assert replicas.shared_weights(tile) == ["st18_0_rhs"] == list(Planner(tile, target.policy.spec).replicas)
    compiled = m.model.compile(*args, target=target)
    got, want = m.outputs(compiled.run(*args)), m.outputs(m.model(*args, backend="interpreter"))
    assert compare(got, want, rtol=1e-12, atol=1e-12) == []


def test_a_temp_two_copies_write_alike_is_no_layout():
    # (its loads would then need the copies' order)
    twice = _WEIGHTS.replace("  stage made() device {", "  stage again() device {\n    lay[0:4, 0:4] = copy(v[1, 0:4, 0:4])\n  }\n"
                             "  stage made() device {")
    assert "lay" not in replicas.layouts(parse_tile_program(twice))
    assert replicas.shared_weights(parse_tile_program(twice)) == ["w"]


@needs_mpi
def test_the_mpi_executor_loads_the_replicas_on_each_rank():
    xs, w = tensors(4, (2, 8), 0), ints((8, 4), 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gemm_choice, "candidates", _stationary_only())
        compiled = compile_function(project, (xs, w), {}, ft.targets.mesh(2, 2, sram_bytes=1 << 20))
    assert any(ld.dst.buffer.startswith("rep_") for ld in compiled._executable.program.loads)
    got = compiled.run(xs, w, executor="mpi", ranks=2)
    assert all(np.array_equal(g, x @ w) for g, x in zip(got.to_list(), xs.to_list()))


def test_a_program_that_does_not_fit_beside_its_replicas_is_planned_without_them():
    # (a replica only saves time: a stage that needs the room gets it back)
    xs, w = tensors(4, (16, 64), 0), ints((64, 64), 1)   # the weight: 32 KiB
    target = ft.targets.mesh(2, 2, sram_bytes=40 << 10)
    with pytest.MonkeyPatch.context() as patch:   # a policy that replicates it anyway
        patch.setattr(replicas, "choose", lambda tile, spec, peak: {"in_w_0": "rep_in_w_0"})
        compiled = compile_function(project, (xs, w), {}, target)
    assert not any(ld.dst.buffer.startswith("rep_") for ld in compiled._executable.program.loads)
    got = compiled.run(xs, w)
    assert all(np.array_equal(g, x @ w) for g, x in zip(got.to_list(), xs.to_list()))
