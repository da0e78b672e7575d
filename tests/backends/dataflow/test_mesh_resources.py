"""What a mesh program needs of its machine: buffers allocated where they are used, SRAM per PE
(receive buffers of rotations included) within the capacity, channels per router within the
limit; the vectorised walk agrees with a PE-by-PE count, and a large program verifies fast."""

from __future__ import annotations

import pickle
import time
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fractal.backends.dataflow.collectives import expand
from fractal.backends.dataflow.errors import RouteLimitError, SramCapacityError
from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram,
                                               Pes, Send, Shift, Store, Superstep)
from fractal.backends.dataflow.mesh_parser import parse_mesh
from fractal.backends.dataflow.mesh_verify import router_channels, sram_high_water, verify_mesh
from fractal.backends.dataflow.routes import route
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lang.errors import ResourceError, VerifyError
from fractal.lower.tile_ir import Copy, Gemm
from fractal.lower.tile_parser import parse_region

from .mesh_strategies import mesh_programs
from .test_mesh_text import docstring_example

R = parse_region
ROW = Pes(0, 1, 0, 2)


def rotation(sram_bytes: int, **changes) -> MeshProgram:
    """1x2 PEs holding a (16 bytes) and b (16 bytes); step "rotate" shifts a along the row."""
    base = dict(name="rot", spec=mesh_spec(1, 2, sram_bytes=sram_bytes),
                arrays=(HostArray("x", (2, 4), "float32"), HostArray("y", (2, 4), "float32", "output")),
                buffers=(LocalBuffer("a", (4,), "float32"), LocalBuffer("b", (2, 2), "float32")),
                allocs=(Alloc(("a", "b"), ROW),), loads=(Load(ROW, R("a[0:4]"), R("x[pc, 0:4]")),),
                steps=(Superstep("rotate", transfers=(Shift(ROW, R("a[0:4]"), R("a[0:4]"), "row", 1),)),),
                stores=(Store(ROW, R("y[pc, 0:4]"), R("a[0:4]")),))
    return MeshProgram(**{**base, **changes})


def test_a_plan_needing_exactly_the_capacity_fits_and_one_byte_less_does_not():
    verify_mesh(rotation(48))  # a and b, and a's incoming piece while a rotates
    with pytest.raises(SramCapacityError) as e:
        verify_mesh(rotation(47))
    err = e.value
    assert (err.pe, err.where, err.buffer, err.requested, err.live, err.capacity) == ((0, 0), "rotate", "a", 16, 32, 47)
    assert str(err).startswith("PE (0, 0) runs out of SRAM at rotate: a needs 16 bytes while 32 are live, 48 > 47 "
                               "usable bytes per PE (sram_bytes - reserved_bytes)")
    assert isinstance(err, ResourceError) and isinstance(err, MemoryError)
    assert pickle.loads(pickle.dumps(err)).args == err.args


def test_the_reservation_counts_and_an_alloc_that_does_not_fit_is_named():
    with pytest.raises(SramCapacityError, match="PE \\(0, 0\\) runs out of SRAM at load: b needs 16 bytes while 16 "
                                                "are live, 32 > 31 usable") as e:
        verify_mesh(rotation(31 + 1024, spec=mesh_spec(1, 2, sram_bytes=31 + 1024, reserved_bytes=1024)))
    assert (e.value.where, e.value.buffer) == ("load", "b")


def test_the_high_water_mark_says_where_and_which_buffer():
    peak, at = sram_high_water(rotation(16))  # no capacity check: the report shows what does not fit
    assert peak.tolist() == [[48, 48]] and at == {(0, 0): ("rotate", "a"), (0, 1): ("rotate", "a")}
    peak, at = sram_high_water(parse_mesh(docstring_example()))
    assert peak.tolist() == [[80, 80], [80, 80]] and set(at.values()) == {("step 0", "tb")}


def test_a_transfer_into_a_buffer_not_sent_from_needs_no_receive_buffer():
    p = rotation(32, steps=(Superstep("copy", transfers=(Shift(ROW, R("a[0:4]"), R("b[0:2, 0:2]"), "row", 1),)),))
    verify_mesh(p)
    assert sram_high_water(p)[0].tolist() == [[32, 32]]


B = ("b",)
LIFETIME_BAD = [
    (dict(allocs=(Alloc(("a", "b"), ROW), Alloc(B, Pes.one(0, 1)))),
     r"buffer 'b' is allocated twice on PE \(0, 1\)\n  in the initial allocs: alloc b on pes\[0:1, 1:2\]"),
    (dict(frees=(Free(B, ROW), Free(B, Pes.one(0, 0)))),
     r"buffer 'b' is freed on PE \(0, 0\), where it is not allocated\n  in the final frees: free b on pes\[0:1, 0:1\]"),
    (dict(allocs=(Alloc(B, ROW),)),
     r"a load uses buffer 'a' on PE \(0, 0\), where it is not allocated\n  in the loads: load pes"),
    (dict(steps=(Superstep("done", frees=(Free(("a",), ROW),)),)),
     r"a store uses buffer 'a' on PE \(0, 0\), where it is not allocated\n  in the stores: store pes"),
    (dict(steps=(Superstep("go", frees=(Free(B, Pes.one(0, 1)),)),
                 Superstep("gemm", computes=(Compute(ROW, (Copy(R("a[0:4]"), R("b[0:2, 0:2]")),)),)))),
     r"a compute uses buffer 'b' on PE \(0, 1\), where it is not allocated\n  in superstep 'gemm': compute pes"),
    (dict(steps=(Superstep(frees=(Free(B, Pes.one(0, 0)),), transfers=(Send((0, 1), (0, 0), R("a[0:4]"),
                                                                             R("b[0:2, 0:2]")),)),
                 Superstep(transfers=(Send((0, 1), (0, 0), R("a[0:4]"), R("b[0:2, 0:2]")),)))),
     r"a transfer \(send\) uses buffer 'b' on PE \(0, 0\), where it is not allocated\n  in superstep 1: send \(0, 1\)"),
]


@pytest.mark.parametrize("change, message", LIFETIME_BAD)
def test_a_buffer_is_used_only_where_and_while_it_is_allocated(change, message):
    with pytest.raises(VerifyError, match=message):
        verify_mesh(rotation(1024, **change))


# --- channels ----------------------------------------------------------------------------------

def channel_program(limit: int) -> MeshProgram:
    """On a 3x3 mesh: a shift along each row on channel 0, one along each column on channel 1, and a
    send from (0, 0) to (2, 2) on channel 2 (XY: along row 0, then down column 2)."""
    every = Pes(0, 3, 0, 3)
    a = R("a[0:2]")
    steps = (Superstep("rows", transfers=(Shift(every, a, a, "row", 1, channel=0),)),
             Superstep("cols", transfers=(Shift(every, a, a, "col", 1, channel=1),
                                          Send((0, 0), (2, 2), a, a, channel=2))))
    return MeshProgram("ch", mesh_spec(3, 3, max_channels_per_router=limit), (),
                       (LocalBuffer("a", (2,), "float32"),), (Alloc(("a",), every),), steps=steps)


def test_routers_count_the_channels_that_cross_them():
    assert router_channels(channel_program(0)).tolist() == [[3, 3, 3], [2, 2, 3], [2, 2, 3]]
    verify_mesh(channel_program(3))
    with pytest.raises(RouteLimitError) as e:
        verify_mesh(channel_program(2))
    assert (e.value.router, e.value.count, e.value.limit, e.value.channels) == ((0, 0), 3, 2, (0, 1, 2))
    assert str(e.value).startswith("router (0, 0) is crossed by messages of 3 channels (channels 0, 1, 2), more than "
                                   "the 2 it can route (max_channels_per_router)")
    assert pickle.loads(pickle.dumps(e.value)).args == e.value.args


# --- the vectorised walk against PE-by-PE counts --------------------------------------------------

def peaks_pe_by_pe(p: MeshProgram) -> np.ndarray:
    out = np.zeros((p.spec.rows, p.spec.cols), np.int64)
    size = lambda name: p.buffer(name).nbytes  # noqa: E731
    for pe in np.ndindex(*out.shape):
        live = top = 0

        def change(nodes, sign):
            nonlocal live, top
            for x in nodes:
                if pe in x.pes:
                    for name in x.buffers:
                        live += sign * size(name)
                        top = max(top, live)
        change(p.allocs, 1)
        for s in p.steps:
            change(s.allocs, 1)
            sends, received = set(), defaultdict(int)
            for m in (m for t in s.transfers for m in expand(t)):
                if m.src == pe:
                    sends.add(m.src_region.buffer)
                if m.dst == pe:
                    received[m.dst_region.buffer] += int(np.prod(m.dst_region.shape)) * p.buffer(
                        m.dst_region.buffer).dtype.itemsize
            top = max(top, live + sum(n for b, n in received.items() if b in sends))
            change(s.frees, -1)
        out[pe] = top
    return out


def channels_pe_by_pe(p: MeshProgram) -> np.ndarray:
    seen = defaultdict(set)
    for m in (m for s in p.steps for t in s.transfers for m in expand(t)):
        for router in {m.src, m.dst} | {x for link in route(m.src, m.dst, p.spec) for x in link}:
            seen[router].add(m.channel)
    out = np.zeros((p.spec.rows, p.spec.cols), np.int64)
    for router, channels in seen.items():
        out[router] = len(channels)
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh_programs())
def test_the_walk_and_the_channel_count_agree_with_pe_by_pe_counts(p):
    np.testing.assert_array_equal(sram_high_water(p)[0], peaks_pe_by_pe(p))
    np.testing.assert_array_equal(router_channels(p), channels_pe_by_pe(p))


def test_a_64x64_program_of_300_supersteps_verifies_fast():
    n, whole = 64, Pes(0, 64, 0, 64)
    a, b, c = R("a[0:4, 0:4]"), R("b[0:4, 0:4]"), R("c[0:4, 0:4]")
    steps = tuple(Superstep(f"step {k}", computes=(Compute(whole, (Gemm(a, b, c, k > 0),), label=f"k = {k}"),),
                            transfers=(Shift(whole, a, a, "row", -1, ("wrap", "interleaved")[k % 2], 0),
                                       Shift(whole, b, b, "col", -1, "interleaved", 1)))
                  for k in range(300))
    p = MeshProgram("big", mesh_spec(n, n, preset="wse2"), (), tuple(LocalBuffer(x, (4, 4), "float32") for x in "abc"),
                    (Alloc(("a", "b", "c"), whole),), steps=steps)
    start = time.perf_counter()
    verify_mesh(p)
    seconds = time.perf_counter() - start
    assert seconds < 3.0, f"verify took {seconds:.2f} s"
    assert sram_high_water(p)[0].max() == 3 * 64 + 2 * 64
    assert router_channels(p).max() == 2
