"""The vectorised BSP engine: exact results, the cost model's invariants, SRAM checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fractal.backends.dataflow.blocked import run_local
from fractal.backends.dataflow import bsp
from fractal.backends.dataflow.bsp import BspRun, run_bsp
from fractal.backends.dataflow.errors import SramCapacityError
from fractal.backends.dataflow.event import run_event
from fractal.backends.dataflow.mesh_ir import (Alloc, Free, HostArray, Load, LocalBuffer, MeshProgram, Pes, Send,
                                               Store, Superstep)
from fractal.backends.dataflow.routes import max_ring_hops
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lang.errors import VerifyError
from fractal.lower.tile_ir import Region

from .programs import cannon, cannon_on, one_at_a_time, vector_program


def _ints(shape, seed=0):
    return np.random.default_rng(seed).integers(-4, 5, shape).astype(np.float64)


@pytest.mark.parametrize("n, p, ring", [(4, 2, "wrap"), (6, 3, "interleaved"), (12, 6, "interleaved"),
                                        (8, 4, "wrap")])
def test_cannon_equals_numpy_exactly(n, p, ring):
    a, b = _ints((n, n)), _ints((n, n), 1)
    out, summary = run_bsp(cannon_on(n, p, ring=ring), {"a": a, "b": b})
    assert np.array_equal(out["c"], a @ b)
    assert summary.supersteps == p


def test_costs_without_data_are_the_costs_with_data():
    program = cannon_on(12, 6, ring="interleaved")
    _, with_data = run_bsp(program, {"a": _ints((12, 12)), "b": _ints((12, 12))})
    out, without = run_bsp(program, None)
    assert out == {}
    assert with_data.to_json() == without.to_json()


def test_reports_are_identical_across_runs():
    program = cannon_on(8, 4)
    inputs = {"a": _ints((8, 8)), "b": _ints((8, 8), 1)}
    assert run_bsp(program, inputs)[1].to_json() == run_bsp(program, inputs)[1].to_json()


def _one_message(src, dst, nbytes, **numbers):
    spec = mesh_spec(4, 4, **numbers)
    k = nbytes // 8
    v = Region("v", (0,), (k,))
    return MeshProgram("one", spec, (HostArray("x", (k,), "f8"), HostArray("y", (k,), "f8", "output")),
                       (LocalBuffer("v", (k,), "f8"),), allocs=(Alloc(("v",), Pes(0, 4, 0, 4)),),
                       loads=(Load(Pes.one(*src), v, Region("x", (0,), (k,))),),
                       steps=(Superstep("send", transfers=(Send(src, dst, v, v),)),),
                       stores=(Store(Pes.one(*dst), Region("y", (0,), (k,)), v),))


@pytest.mark.parametrize("src, dst, hops", [((0, 0), (0, 1), 1), ((0, 0), (3, 3), 6), ((2, 1), (0, 3), 4)])
@pytest.mark.parametrize("latency, bandwidth", [(1, 4.0), (9, 32.0)])
def test_one_message_costs_its_hops_times_latency_plus_bytes_over_bandwidth(src, dst, hops, latency, bandwidth):
    program = _one_message(src, dst, 256, hop_latency_cycles=latency, link_bytes_per_cycle=bandwidth)
    x = np.arange(32.0)
    out, s = run_bsp(program, {"x": x})
    assert np.array_equal(out["y"], x)
    assert s.makespan_cycles == hops * latency + 256 / bandwidth
    assert s.bytes_sent == s.bytes_received == 256 and s.bytes_hops == 256 * hops
    assert sum(s.link_bytes.values()) == s.bytes_hops


def test_a_ring_shift_puts_its_bytes_once_on_every_ring_link_of_a_torus():
    spec = mesh_spec(1, 6, kind="torus")
    _, s = run_bsp(vector_program(spec, 4, [("shift", "row", 1, "wrap", 0)]), None)
    assert sorted(s.link_bytes.values()) == [32.0] * 6


@pytest.mark.parametrize("rows, cols, axis, root", [(1, 2, "row", 0), (2, 1, "col", 1), (3, 4, "row", 3), (4, 3, "col", 0)])
def test_a_multicast_loads_each_link_of_its_tree_once_in_both_engines(rows, cols, axis, root):
    # the vectorised tree of the BSP engine loads the links the event engine reserves, once each
    spec = mesh_spec(rows, cols)
    program = vector_program(spec, 4, [("multicast", axis, root, 0)])
    x = np.arange(rows * cols * 4.0).reshape(rows, cols, 4)
    _, fast = run_bsp(program, {"x": x})
    _, slow = run_event(program, {"x": x})
    assert fast.link_bytes == slow.link_bytes
    line = cols if axis == "row" else rows
    assert sum(fast.link_bytes.values()) == 32 * (line - 1) * (rows if axis == "row" else cols)


def test_the_interleaved_ring_has_neighbours_two_hops_apart_the_wrapped_one_p_minus_one():
    for p in (4, 6, 8, 16):
        assert max_ring_hops(p, "interleaved") == 2 and max_ring_hops(p, "wrap") == p - 1
        _, wrapped = run_bsp(vector_program(mesh_spec(1, p), 4, [("shift", "row", 1, "wrap", 0)]), None)
        _, interleaved = run_bsp(vector_program(mesh_spec(1, p), 4, [("shift", "row", 1, "interleaved", 0)]), None)
        assert interleaved.makespan_cycles < wrapped.makespan_cycles


MOVES = st.one_of(
    st.tuples(st.just("shift"), st.sampled_from(["row", "col"]), st.sampled_from([-1, 1, 2]),
              st.sampled_from(["wrap", "interleaved"]), st.integers(0, 2)),
    st.tuples(st.just("multicast"), st.sampled_from(["row", "col"]), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("add"), st.integers(-3, 3)))


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(2, 4), cols=st.integers(2, 4), k=st.integers(1, 8), moves=st.lists(MOVES, min_size=1, max_size=5),
       kind=st.sampled_from(["mesh", "torus", "crossbar"]))
def test_random_programs_invariants(rows, cols, k, moves, kind):
    spec = mesh_spec(rows, cols, kind=kind)
    program = vector_program(spec, k, moves)
    x = _ints((rows, cols, k))
    out, s = run_bsp(program, {"x": x})
    same, _ = run_event(program, {"x": x})
    assert np.array_equal(out["y"], same["y"])                          # the two simulators agree exactly
    assert s.bytes_sent == s.bytes_received
    fast = run_bsp(vector_program(mesh_spec(rows, cols, kind=kind, link_bytes_per_cycle=8.0), k, moves), None)[1]
    assert fast.makespan_cycles <= s.makespan_cycles                    # doubling bandwidth never slows a run
    if kind != "crossbar":
        assert sum(s.link_bytes.values()) == s.bytes_hops


@pytest.mark.parametrize("p, ring", [(2, "wrap"), (3, "wrap"), (4, "interleaved")])
def test_the_asynchronous_makespan_is_at_most_the_bsp_one(p, ring):
    program = cannon_on(4 * p, p, ring=ring)
    inputs = {"a": _ints((4 * p, 4 * p)), "b": _ints((4 * p, 4 * p), 1)}
    (bsp_out, bsp), (event_out, event) = run_bsp(program, inputs), run_event(program, inputs)
    assert np.array_equal(bsp_out["c"], event_out["c"])
    assert event.makespan_cycles <= bsp.makespan_cycles


def _peak(program) -> int:
    return int(run_bsp(program, None)[1].sram_peak.max())


def test_a_program_that_needs_exactly_the_sram_runs_and_one_byte_less_fails_at_run_time():
    peak = _peak(cannon(2, 4))        # 3 tiles of 4x4 doubles, and the receive buffers of the two rotations
    assert peak == 5 * 4 * 4 * 8
    a, b = _ints((8, 8)), _ints((8, 8), 1)
    out, _ = run_bsp(cannon(2, 4, spec=mesh_spec(2, 2, sram_bytes=peak)), {"a": a, "b": b})
    assert np.array_equal(out["c"], a @ b)
    with pytest.raises(SramCapacityError, match=r"PE \(0, 0\) runs out of SRAM at step 0: .* > 639 usable bytes per PE") as e:
        run_bsp(cannon(2, 4, spec=mesh_spec(2, 2, sram_bytes=peak - 1)), {"a": a, "b": b})
    assert (e.value.capacity, e.value.pe) == (peak - 1, (0, 0))


def test_a_buffer_used_where_it_is_not_allocated_is_an_error():
    program = _one_message((0, 0), (1, 1), 64)
    broken = MeshProgram(program.name, program.spec, program.arrays, program.buffers,
                         allocs=(Alloc(("v",), Pes(0, 1, 0, 1)),), loads=program.loads, steps=program.steps,
                         stores=())
    with pytest.raises(VerifyError, match=r"send: PE \(1, 1\) uses v, which it has not allocated"):
        run_bsp(broken, {"x": np.zeros(8)})


def test_the_engine_holds_a_buffers_grid_only_while_some_pe_has_it_allocated():
    spec = mesh_spec(2, 3)
    program = one_at_a_time(spec, 4, steps=3)      # acc throughout; scratches of 1, 2, 3 rows, one per step
    x = _ints((2, 3, 4))
    run = BspRun(program, {"x": x})
    out, _ = run.run()
    want = x
    for i in range(3):
        want = 2 * (want + i)
    assert np.array_equal(out["y"], want)
    assert run.grid_peak_bytes == spec.rows * spec.cols * (4 + 3 * 4) * 8   # acc and the largest scratch at once
    assert run.grid == {} and run.allocated == {}                           # the final frees leave nothing
    costs = BspRun(program, None)
    costs.run()
    assert costs.grid_peak_bytes == 0 and costs.grid == {}                  # costs only: no data at all


def test_a_buffer_reads_zero_where_a_pe_allocates_it_again_in_every_executor():
    # v is freed and allocated again on PE (0, 0) only (its grid stays for the others); w everywhere
    spec, every, one = mesh_spec(2, 2), Pes(0, 2, 0, 2), Pes.one(0, 0)
    local = lambda name: Region(name, (0,), (3,))  # noqa: E731
    host = lambda name: Region(name, ("pr", "pc", 0), (None, None, 3))  # noqa: E731
    arrays = tuple(HostArray(n, (2, 2, 3), "f8", role) for n, role in (("x", "input"), ("y", "output"), ("z", "output")))
    program = MeshProgram("again", spec, arrays, (LocalBuffer("v", (3,), "f8"), LocalBuffer("w", (3,), "f8")),
                          allocs=(Alloc(("v", "w"), every),),
                          loads=(Load(every, local("v"), host("x")), Load(every, local("w"), host("x"))),
                          steps=(Superstep("free", frees=(Free(("v",), one), Free(("w",), every))),
                                 Superstep("again", allocs=(Alloc(("v",), one), Alloc(("w",), every)))),
                          stores=(Store(every, host("y"), local("v")), Store(every, host("z"), local("w"))))
    x = _ints((2, 2, 3)) + 10
    want_v = x.copy()
    want_v[0, 0] = 0
    for out in (run_bsp(program, {"x": x})[0], run_event(program, {"x": x})[0], run_local(program, {"x": x})):
        assert np.array_equal(out["y"], want_v) and np.array_equal(out["z"], np.zeros_like(x))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), most=st.sampled_from([8, 48, 1 << 20]))
def test_transfers_that_write_no_buffer_they_read_move_in_pieces_with_the_same_bits(seed, most):
    # many sends from a to b, some to the same place (the later one wins), moved `most` bytes at a time
    rng = np.random.default_rng(seed)
    spec, every = mesh_spec(3, 4), Pes(0, 3, 0, 4)
    pe = lambda: (int(rng.integers(3)), int(rng.integers(4)))  # noqa: E731
    sends = tuple(Send(pe(), pe(), Region("a", (int(rng.integers(3)),), (3,)), Region("b", (int(rng.integers(2)),), (3,)),
                       int(rng.integers(3))) for _ in range(int(rng.integers(1, 30))))
    host = lambda name, k: Region(name, ("pr", "pc", 0), (None, None, k))  # noqa: E731
    program = MeshProgram("pieces", spec, (HostArray("x", (3, 4, 6), "f8"), HostArray("y", (3, 4, 5), "f8", "output")),
                          (LocalBuffer("a", (6,), "f8"), LocalBuffer("b", (5,), "f8")), allocs=(Alloc(("a", "b"), every),),
                          loads=(Load(every, Region("a", (0,), (6,)), host("x", 6)),), steps=(Superstep("sends", transfers=sends),),
                          stores=(Store(every, host("y", 5), Region("b", (0,), (5,))),))
    x = rng.standard_normal((3, 4, 6))
    want = np.zeros((3, 4, 5))
    for s in sends:
        start = s.dst_region.start[0].evaluate({})
        want[s.dst][start:start + 3] = x[s.src][s.src_region.start[0].evaluate({}):][:3]
    old, bsp.PIECE_BYTES = bsp.PIECE_BYTES, most
    try:
        got = run_bsp(program, {"x": x})[0]["y"]
    finally:
        bsp.PIECE_BYTES = old
    assert np.array_equal(got, want)
    assert np.array_equal(run_local(program, {"x": x})["y"], want)
    assert np.array_equal(run_event(program, {"x": x})[0]["y"], want)
