"""The event-driven engine: exact results, the cost model's invariants (dataflow.md 11.5),
bounded channels, deadlock reports and SRAM limits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.dataflow.cost import message_cycles
from fractal.backends.dataflow.errors import DeadlockError, SramCapacityError
from fractal.backends.dataflow.event import EventEngine, run_event
from fractal.backends.dataflow.mesh_ir import Compute, LocalBuffer, Pes, Send
from fractal.backends.dataflow.routes import hops, ring_order
from fractal.backends.dataflow.spec import mesh_spec
from fractal.backends.dataflow.streams import Allocate, Isend, Recv, WaitSends, messages_by_step, pe_stream
from fractal.lang.errors import ArgumentError
from fractal.lower.tile_expr import Load as Read
from fractal.lower.tile_ir import Binary, Const, Elementwise, Region

from .programs import cannon, vector_program

CAPACITIES = (None, 0, 1, 2)


def integers(shape, seed=0):
    return np.random.default_rng(seed).integers(-8, 9, shape).astype(np.float64)


def costs(summary) -> dict:
    """Every field of a summary, arrays as lists: two runs cost the same iff these are equal."""
    return {f.name: getattr(summary, f.name).tolist() if isinstance(getattr(summary, f.name), np.ndarray)
            else getattr(summary, f.name) for f in dataclasses.fields(summary)}


def faster(spec):
    return dataclasses.replace(spec, link_bytes_per_cycle=2 * spec.link_bytes_per_cycle)


# --- results ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_cannon_equals_numpy_exactly_at_every_channel_capacity(q, capacity):
    a, b = integers((2 * q, 2 * q), 1), integers((2 * q, 2 * q), 2)
    out, summary = run_event(cannon(q), {"a": a, "b": b}, capacity=capacity)
    assert np.array_equal(out["c"], a @ b)
    assert summary.supersteps == q and summary.engine == "event"


def test_cannon_costs_add_up_by_hand():
    # 2x2 f64 tiles on tiny: gemm = max(16 flop, 96 bytes / 4) = 24 cycles, then 32 with the accumulator;
    # each shift message is 32 bytes over one hop: 1 + 32 / 4 = 9 cycles, row and column on different links
    _, s = run_event(cannon(2), {"a": integers((4, 4)), "b": integers((4, 4))})
    assert s.makespan_cycles == 24 + 9 + 32
    assert (s.compute_cycles == 56).all() and (s.comm_cycles == 9).all()
    assert s.messages == 8 and s.bytes_sent == 8 * 32 and set(s.link_bytes.values()) == {32}
    assert (s.sram_peak == 3 * 32 + 32).all()   # three tiles and the incoming tile of the rotation
    assert s.sram_peak_at[(1, 0)] == ("step 0", "ta (incoming)")
    assert (s.router_channels == 2).all()


def test_rendezvous_serialises_a_pes_receives():
    # capacity 0: the column message leaves only once the row message has landed and the PE posts its receive
    _, s = run_event(cannon(2), {"a": integers((4, 4)), "b": integers((4, 4))}, capacity=0)
    assert s.makespan_cycles == 24 + 2 * 9 + 32


# --- the cost model's invariants ----------------------------------------------------------------------

@pytest.mark.parametrize("preset,kind", [("tiny", "mesh"), ("tiny", "torus"), ("wormhole", "torus"), ("ipu_mk2", "crossbar")])
@pytest.mark.parametrize("dst", [(0, 1), (2, 3), (3, 0)])
def test_one_message_costs_hops_times_latency_plus_bytes_over_bandwidth(preset, kind, dst):
    spec = mesh_spec(4, 4, preset=preset, kind=kind)
    program = vector_program(spec, 1000, [("sends", [((0, 0), dst)], 0)])
    _, s = run_event(program, {"x": integers((4, 4, 1000))})
    n = 8000
    assert s.makespan_cycles == message_cycles(n, hops((0, 0), dst, spec), spec)
    if preset == "tiny" and kind == "mesh":
        assert s.makespan_cycles == (dst[0] + dst[1]) * 1 + n / 4
    assert s.bytes_sent == s.bytes_received == s.pe_sent[0, 0] == s.pe_received[dst] == n


def test_two_messages_on_one_link_queue_behind_each_other():
    # (0,0)->(0,2) and (0,1)->(0,2) share the link (0,1)->(0,2): the second starts when the first has passed
    spec = mesh_spec(1, 3)
    program = vector_program(spec, 4, [("sends", [((0, 0), (0, 2)), ((0, 1), (0, 2))], 0)])
    _, s = run_event(program, {"x": integers((1, 3, 4))})
    assert s.makespan_cycles == 8 + (1 + 8)      # 32 bytes: 8 cycles on the link, then one hop
    assert s.link_bytes == {((0, 0), (0, 1)): 32, ((0, 1), (0, 2)): 64}


def test_a_crossbar_queues_messages_at_the_receivers_port():
    spec = mesh_spec(1, 3, preset="ipu_mk2")
    program = vector_program(spec, 4, [("sends", [((0, 0), (0, 2)), ((0, 1), (0, 2))], 0)])
    _, s = run_event(program, {"x": integers((1, 3, 4))})
    assert s.makespan_cycles == 8 + (15 + 8) and s.link_bytes == {}   # ejection port busy 8 cycles


@pytest.mark.parametrize("p", [2, 3, 4, 6])
@pytest.mark.parametrize("ring", ["wrap", "interleaved"])
def test_a_ring_shift_of_n_bytes_puts_n_bytes_on_each_ring_link(p, ring):
    # mesh: the ring's logical steps cover every directed link of the line once each way
    n = 8 * 5
    spec = mesh_spec(1, p)
    _, s = run_event(vector_program(spec, 5, [("shift", "row", 1, ring, 0)]), {"x": integers((1, p, 5))})
    line = [((0, c), (0, c + 1)) for c in range(p - 1)] + [((0, c + 1), (0, c)) for c in range(p - 1)]
    assert s.link_bytes == {link: n for link in line}
    assert sum(s.link_bytes.values()) == s.bytes_hops


def test_a_multicast_loads_each_link_of_its_line_once():
    # root (0,1) of a row of 4: copies to (0,0), (0,2), (0,3); (0,3)'s copy follows (0,2)'s on (0,1)->(0,2)
    spec = mesh_spec(1, 4)
    out, s = run_event(vector_program(spec, 5, [("multicast", "row", 1, 0)]), {"x": integers((1, 4, 5))})
    assert s.link_bytes == {((0, 1), (0, 0)): 40, ((0, 1), (0, 2)): 40, ((0, 2), (0, 3)): 40}
    assert s.bytes_hops == 3 * 40 and s.bytes_sent == s.bytes_received == 3 * 40 and s.messages == 3
    assert s.makespan_cycles == message_cycles(40, 2, spec)
    assert (out["y"] == integers((1, 4, 5))[:, 1:2]).all()


def test_a_wrap_shift_on_a_torus_uses_the_wrap_link():
    _, s = run_event(vector_program(mesh_spec(1, 5, kind="torus"), 5, [("shift", "row", 1, "wrap", 0)]),
                     {"x": integers((1, 5, 5))})
    assert s.link_bytes == {((0, c), (0, (c + 1) % 5)): 40 for c in range(5)}


@pytest.mark.parametrize("q", [2, 3])
def test_doubling_bandwidth_never_slows_cannon_and_halves_its_wire_time(q):
    a, b = integers((2 * q, 2 * q)), integers((2 * q, 2 * q), 3)
    program = cannon(q, 2)
    _, slow = run_event(program, {"a": a, "b": b})
    _, fast = run_event(dataclasses.replace(program, spec=faster(program.spec)), {"a": a, "b": b})
    assert fast.makespan_cycles < slow.makespan_cycles
    assert (fast.comm_cycles <= slow.comm_cycles).all()
    assert fast.compute_cycles.tolist() == slow.compute_cycles.tolist()


def test_repeated_runs_give_identical_results_and_costs():
    inputs = {"a": integers((6, 6)), "b": integers((6, 6), 4)}
    (out1, s1), (out2, s2) = run_event(cannon(3), inputs, capacity=1), run_event(cannon(3), inputs, capacity=1)
    assert out1["c"].tobytes() == out2["c"].tobytes() and costs(s1) == costs(s2)


# --- random programs of shifts and sends ------------------------------------------------------------

def reference(spec, k, moves, x):
    """The vector program's meaning in NumPy (independent of the collectives' expansion)."""
    x = x.copy()
    for move in moves:
        if move[0] == "shift":
            _, axis, by, ring, _ = move
            grid = x if axis == "row" else x.transpose(1, 0, 2)
            order = ring_order(grid.shape[1], ring)
            new = grid.copy()
            for pos, offset in enumerate(order):
                new[:, order[(pos + by) % len(order)]] = grid[:, offset]
            x = new if axis == "row" else new.transpose(1, 0, 2).copy()
        elif move[0] == "multicast":
            _, axis, root, _ = move
            x = np.broadcast_to(x[:, root:root + 1] if axis == "row" else x[root:root + 1], x.shape).copy()
        elif move[0] == "sends":
            new = x.copy()
            for src, dst in move[1]:
                new[dst] = x[src]
            x = new
        else:
            x = x + move[1]
    return x


@st.composite
def programs(draw):
    rows, cols, k = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["mesh", "torus", "crossbar"]))
    pes = [(r, c) for r in range(rows) for c in range(cols)]
    moves = []
    for _ in range(draw(st.integers(1, 5))):
        what = draw(st.sampled_from(["shift", "multicast", "sends", "add"]))
        if what == "shift":
            moves.append(("shift", draw(st.sampled_from(["row", "col"])), draw(st.integers(-3, 3)),
                          draw(st.sampled_from(["wrap", "interleaved"])), draw(st.integers(0, 2))))
        elif what == "multicast":
            axis = draw(st.sampled_from(["row", "col"]))
            root = draw(st.integers(0, (cols if axis == "row" else rows) - 1))
            moves.append(("multicast", axis, root, draw(st.integers(0, 2))))
        elif what == "sends":   # a permutation of some PEs: every PE receives at most one message
            targets = draw(st.permutations(pes))
            keep = draw(st.lists(st.booleans(), min_size=len(pes), max_size=len(pes)))
            moves.append(("sends", [(s, d) for s, d, kept in zip(pes, targets, keep) if kept], draw(st.integers(0, 2))))
        else:
            moves.append(("add", float(draw(st.integers(-3, 3)))))
    return mesh_spec(rows, cols, kind=kind), k, moves


@settings(max_examples=60, deadline=None)
@given(programs())
def test_random_programs_are_exact_and_keep_the_cost_invariants(case):
    spec, k, moves = case
    x = integers((spec.rows, spec.cols, k), 5)
    program = vector_program(spec, k, moves)
    want = reference(spec, k, moves, x)
    out, s = run_event(program, {"x": x})
    assert np.array_equal(out["y"], want)
    assert s.bytes_sent == s.bytes_received == s.pe_sent.sum() == s.pe_received.sum()
    if spec.kind != "crossbar":
        assert sum(s.link_bytes.values()) == s.bytes_hops
    for capacity in (0, 1):
        out_c, s_c = run_event(program, {"x": x}, capacity=capacity)
        assert np.array_equal(out_c["y"], want) and s_c.bytes_sent == s.bytes_sent
    _, again = run_event(program, {"x": x})
    assert costs(again) == costs(s)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(programs())
def test_doubling_bandwidth_never_slows_random_programs_of_shifts_and_sends(case):
    # not a theorem of a first-come link schedule (the anomaly test below): a fixed search, which
    # found no counterexample in 4000 examples among equal-sized messages and equal computes
    spec, k, moves = case
    program, x = vector_program(spec, k, moves), {"x": integers((spec.rows, spec.cols, k), 5)}
    _, slow = run_event(program, x)
    _, fast = run_event(dataclasses.replace(program, spec=faster(spec)), x)
    assert fast.makespan_cycles <= slow.makespan_cycles


def test_a_first_come_link_schedule_can_be_slowed_by_faster_links():
    # Graham's anomaly: with faster links (0,0)'s big message M2 is ready before (0,1)'s small M1 and
    # takes their shared link first; M1 then feeds a long compute at (0,2).  Bandwidth 4: M0 lands at
    # 13, M1 leaves at 12 and lands at 15, 15 + 1000 = 1015.  Bandwidth 8: M0 lands at 7, M2 holds
    # (0,1)->(0,2) from 7 to 107, M1 lands at 109, 109 + 1000 = 1109.
    buf = {name: LocalBuffer(name, (n,), np.float64) for name, n in (("m0", 6), ("m1", 1), ("m2", 100), ("w", 250))}
    whole = {name: Region(name, (0,), (b.shape[0],)) for name, b in buf.items()}
    m = lambda name, src, dst: Send(src, dst, whole[name], whole[name], 0)  # noqa: E731
    work = lambda pe, n: Compute(Pes.one(*pe), (Elementwise(Region("w", (0,), (n,)), Binary(  # noqa: E731
        "add", Read(Region("w", (0,), (n,))), Const(1.0))),))   # 4n cycles: n flops, 16n bytes
    a, b, r = (0, 1), (0, 0), (0, 2)
    streams = lambda: {  # noqa: E731
        b: [*map(Allocate, buf.values()), Recv(m("m0", a, b)), Isend(m("m2", b, r)), WaitSends()],
        a: [*map(Allocate, buf.values()), Isend(m("m0", a, b)), work(a, 3), Isend(m("m1", a, r)), WaitSends()],
        r: [*map(Allocate, buf.values()), Recv(m("m1", a, r)), work(r, 250), Recv(m("m2", b, r))]}
    spec = mesh_spec(1, 3)
    assert EventEngine(spec, streams(), {}).run().makespan_cycles == 1015
    assert EventEngine(faster(spec), streams(), {}).run().makespan_cycles == 1109


# --- deadlock -------------------------------------------------------------------------------------------

X = LocalBuffer("x", (4,), np.float64)
XR = Region("x", (0,), (4,))


def message(src, dst, channel):
    return Send(src, dst, XR, XR, channel)


def run_streams(streams, capacity=None):
    return EventEngine(mesh_spec(1, 2), streams, {}, capacity).run()


def test_a_receive_before_send_cycle_is_a_deadlock_naming_the_cycle():
    a, b = (0, 0), (0, 1)
    streams = {a: [Allocate(X), Recv(message(b, a, 3)), Isend(message(a, b, 4))],
               b: [Allocate(X), Recv(message(a, b, 4)), Isend(message(b, a, 3))]}
    with pytest.raises(DeadlockError) as e:
        run_streams(streams)
    assert e.value.message == ("deadlock: 2 PEs are blocked and no message is on its way; "
                            "PE (0,0) waits for (0,1) on channel 3 <- PE (0,1) waits for (0,0) on channel 4")
    assert e.value.cycle == ((a, b, 3), (b, a, 4))


def test_sends_that_wait_for_their_receivers_deadlock_at_capacity_zero_only():
    a, b = (0, 0), (0, 1)
    streams = lambda: {a: [Allocate(X), Isend(message(a, b, 1)), WaitSends(), Recv(message(b, a, 2))],  # noqa: E731
                       b: [Allocate(X), Isend(message(b, a, 2)), WaitSends(), Recv(message(a, b, 1))]}
    run_streams(streams(), capacity=1)
    with pytest.raises(DeadlockError) as e:
        run_streams(streams(), capacity=0)
    assert e.value.message.endswith("PE (0,0) waits for (0,1) to receive on channel 1 "
                                 "<- PE (0,1) waits for (0,0) to receive on channel 2")


def test_a_receive_nobody_sends_is_a_deadlock_on_a_finished_pe():
    with pytest.raises(DeadlockError) as e:
        run_streams({(0, 0): [Allocate(X), Recv(message((0, 1), (0, 0), 0))], (0, 1): []})
    assert e.value.message == ("deadlock: 1 PE is blocked and no message is on its way; "
                            "PE (0,0) waits for (0,1) on channel 0; (0,1) has finished")
    assert e.value.cycle == () and e.value.chain == (((0, 0), (0, 1), 0),)


def test_a_negative_channel_capacity_is_refused():
    with pytest.raises(ArgumentError, match="channel capacity must be None or at least 0, not -1"):
        run_event(cannon(2), {"a": integers((4, 4)), "b": integers((4, 4))}, capacity=-1)


# --- SRAM ------------------------------------------------------------------------------------------------

def test_sram_at_exactly_the_capacity_runs_and_one_byte_less_raises():
    program = vector_program(mesh_spec(1, 2, sram_bytes=32), 4, [("add", 1.0)])
    _, s = run_event(program, {"x": integers((1, 2, 4))})
    assert s.sram_peak.tolist() == [[32, 32]] and s.sram_peak_at[(0, 1)] == ("load", "v")
    with pytest.raises(SramCapacityError) as e:
        run_event(dataclasses.replace(program, spec=mesh_spec(1, 2, sram_bytes=31)), {"x": integers((1, 2, 4))})
    assert e.value.message.startswith("PE (0, 0) runs out of SRAM at load: v needs 32 bytes while 0 are live, 32 > 31 usable")
    assert (e.value.pe, e.value.where, e.value.buffer, e.value.requested, e.value.live, e.value.capacity) == \
        ((0, 0), "load", "v", 32, 0, 31)


def test_a_rotation_needs_room_for_the_incoming_buffer():
    moves = [("shift", "row", 1, "wrap", 0)]
    program = vector_program(mesh_spec(1, 2, sram_bytes=64), 4, moves)
    _, s = run_event(program, {"x": integers((1, 2, 4))})
    assert s.sram_peak_at[(0, 0)] == ("shift 0", "v (incoming)") and s.sram_peak.max() == 64
    with pytest.raises(SramCapacityError, match=r"PE \(0, 0\) runs out of SRAM at shift 0: v \(incoming\) needs 32 "
                                                r"bytes while 32 are live, 64 > 63 usable bytes per PE"):
        run_event(dataclasses.replace(program, spec=mesh_spec(1, 2, sram_bytes=63)), {"x": integers((1, 2, 4))})


# --- streams ----------------------------------------------------------------------------------------------

def test_a_pes_stream_posts_its_sends_before_its_receives():
    program = cannon(2)
    kinds = [type(i).__name__ for i in pe_stream(program, (0, 1), messages_by_step(program))]
    assert kinds == ["Begin", "Allocate", "Allocate", "Allocate", "Load", "Load",
                     "Begin", "Compute", "Isend", "Isend", "Recv", "Recv", "WaitSends", "Begin", "Compute"]


def test_a_stream_only_sends_and_receives_its_own_messages():
    with pytest.raises(ArgumentError, match=r"PE \(0,0\) sends a message of \(0,1\) \(from \(0,1\) to \(0,0\)\)"):
        run_streams({(0, 0): [Allocate(X), Isend(message((0, 1), (0, 0), 0))], (0, 1): []})
    with pytest.raises(ArgumentError, match=r"PE \(0,1\) receives a message of \(0,0\) \(from \(0,1\) to \(0,0\)\)"):
        run_streams({(0, 0): [], (0, 1): [Allocate(X), Recv(message((0, 1), (0, 0), 0))]})
