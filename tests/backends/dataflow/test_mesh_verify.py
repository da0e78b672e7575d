"""`verify_mesh`: valid programs pass; each rule, broken once, gives its own message."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractal.backends.dataflow.collectives import expand
from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, HostArray, Load, LocalBuffer, MeshProgram, Multicast, Sends,
                                               Pes, Send, Shift, Store, Superstep)
from fractal.backends.dataflow.mesh_parser import parse_mesh
from fractal.backends.dataflow.mesh_verify import verify_mesh
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lang.errors import VerifyError
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Copy, Dim, Elementwise, Gemm, Load as Read, Region, Unary
from fractal.lower.tile_parser import parse_index, parse_region

from .mesh_strategies import mesh_programs
from .test_mesh_text import ALL, docstring_example, program

R = parse_region


def step(*, allocs=(), computes=(), transfers=(), frees=(), label="s") -> Superstep:
    return Superstep(label, allocs, computes, transfers, frees)


def with_step(s: Superstep, **changes):
    return program(steps=(s,), **changes)


def test_the_programs_of_these_tests_verify():
    verify_mesh(program())
    verify_mesh(parse_mesh(docstring_example()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh_programs())
def test_random_valid_programs_verify(p):
    verify_mesh(p)


def test_a_multicast_source_is_read_on_the_roots_only():
    # v[2*pc...] is in bounds only where pc = 0, the root of each row
    t = Multicast(ALL, R("v[2*pc:2*pc + 4]"), R("a[0:2, 0:2]"), "row", 0, 0)
    verify_mesh(with_step(step(transfers=(t,))))
    with pytest.raises(VerifyError, match=r"region v\[2:6\] is out of bounds: at pr = \d, pc = \d, axis 0 reaches "
                                          r"2..5, outside 0..3 of v\n  in superstep 's': multicast pes"):
        verify_mesh(with_step(step(transfers=(dataclasses.replace(t, root=1),))))


A = R("a[0:2, 0:2]")
BAD = [  # (what changes, the message), one per message
    (dict(name="two words"), "program name 'two words' is not a name like cannon or model.layer_0"),
    (dict(spec="tiny"), "the machine is a str, not a MeshSpec"),
    (dict(buffers=(LocalBuffer("max", (2,), "float32"),)), "buffer name 'max' is a reserved word"),
    (dict(buffers=(LocalBuffer("x", (2,), "float32"),)),
     r"'x' is declared twice \(host arrays and local buffers share one namespace\)"),
    (dict(buffers=(LocalBuffer("a", (2,), "complex64"),)), "buffer a: dtype complex64 is not supported"),
    (dict(buffers=(LocalBuffer("a", (-2,), "float32"),)), r"buffer a: shape \(-2,\) has a negative dimension"),
    (dict(arrays=(HostArray("x", (2,), "float32", "scratch"),)),
     "array x: role 'scratch' is not one of input, output, const"),
    (dict(arrays=(HostArray("x", (2,), "float32", "const"),)), "array x: a const array must carry its data"),
    (dict(arrays=(HostArray("x", (2,), "float32", "input", np.zeros(2, "float32")),)),
     r"array x: an input array has no data \(only const arrays do\)"),
    (dict(arrays=(HostArray("x", (2,), "float32", "const", np.zeros(3, "float32")),)),
     r"array x: its data is float32\[3\], not float32\[2\] like the array"),
    (dict(steps=(Superstep("s", computes=(Alloc(("a",), ALL),)),)), r"expected Compute here, not an Alloc"),
    (dict(steps=("step",)), "the steps hold supersteps, not a str"),
    (dict(allocs=(Alloc(("a",), Pes(0, 3, 0, 3)),)),
     r"pes\[0:3, 0:3\] is not a non-empty rectangle of PEs inside the 2x3 mesh"),
    (dict(allocs=(Alloc((), ALL),)), "an alloc names no buffers"),
    (dict(allocs=(Alloc(("q",), ALL),)), "unknown buffer or array 'q'"),
    (dict(allocs=(Alloc(("x",), ALL),)), r"'x' is a host array, not a local buffer \(PEs allocate and move"),
    (dict(loads=(Load(ALL, A, R("b[0:2, 0:2]")),)), "'b' is a local buffer, not a host array"),
    (dict(loads=(Load(ALL, A, R("y[0:2, 0:2]")),)), "a load reads an input or const array, and 'y' is an output array"),
    (dict(stores=(Store(ALL, R("x[0:2, 0:2]"), A),)),
     "a store writes an output array, and 'x' is an input array"),
    (dict(loads=(Load(ALL, A, R("x[2*pr + 1:2*pr + 3, 0:2]")),)),
     r"region x\[2\*pr \+ 1:2\*pr \+ 3, 0:2\] is out of bounds: at pr = 1, pc = 0, axis 0 reaches 3..4, "
     r"outside 0..3 of x\n  in the loads: load pes"),
    (dict(loads=(Load(ALL, R("v[0:4]"), R("x[0:2, 0:3]")),)), r"copy from shape \(2, 3\) to shape \(4,\): sizes 6 "
                                                               r"and 4 differ\n  in the loads"),
    (dict(loads=(Load(Pes.one(0, 2), R("v[0:3]"), R("ids[0:3]")),)),
     r"source dtype i64 differs from destination dtype f32\n  in the loads"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_a_broken_program_names_the_rule(change, message):
    with pytest.raises(VerifyError, match=message):
        verify_mesh(program(**change))


COMPUTE_BAD = [
    (Compute(ALL, (Copy(R("x[0:2, 0:2]"), A),), label="load x"),
     r"compute 'load x' on pes\[0:2, 0:3\] reads host array 'x': a remote load \(a PE's compute touches only its "
     r"own buffers; load it into a local buffer\)\n  in superstep 's': compute pes"),
    (Compute(ALL, (Copy(A, R("y[0:2, 0:2]")),)),
     r"compute on pes\[0:2, 0:3\] writes host array 'y': a remote store \(.*store it from a local buffer\)"),
    (Compute(ALL, (Gemm(A, R("v[0:4]"), A),)),
     r"gemm operand b must be 2-d, got shape \(4,\)\n  in: a\[0:2, 0:2\] = gemm\(a\[0:2, 0:2\], v\[0:4\]\)"),
    (Compute(ALL, (Copy(R("a[k, 0:2]"), R("b[k, 0:2]")),), (Dim("k", parse_index("0"), parse_index("pc + 1")),)),
     r"region a\[k, 0:2\] is out of bounds: at pr = 0, pc = 2, k = 2, axis 0 reaches index 2, outside 0..1 of a"),
    (Compute(ALL, (Copy(R("a[pr, 0:2]"), R("b[pr, 0:2]")),), (Dim("pr", parse_index("0"), parse_index("1")),)),
     "compute dim pr shadows an enclosing variable"),
    (Compute(ALL, (Elementwise(A, Unary("exp", Read(A))), "op")),
     "a compute holds only tile ops"),
]


@pytest.mark.parametrize("compute, message", COMPUTE_BAD)
def test_a_broken_compute_names_the_rule(compute, message):
    with pytest.raises(VerifyError, match=message):
        verify_mesh(with_step(step(computes=(compute,))))


TRANSFER_BAD = [
    (Send((0, 0), (2, 0), A, A, 0), r"PE \(2, 0\) is outside the 2x3 mesh\n  in superstep 's': send \(0, 0\)"),
    (Send((0, 0), (1, 0), A, A, -1), "channel -1 must be an int of 0 or more"),
    (Send((0, 0), (1, 0), R("a[pr:pr + 2, 0:2]"), A, 0), None),  # pr = 0 at the sender: in bounds
    (Send((0, 0), (1, 0), A, R("a[pr:pr + 2, 0:2]"), 0),
     r"region a\[1:3, 0:2\] is out of bounds: axis 0 reaches 1..2, outside 0..1 of a"),
    (Send((0, 0), (1, 0), A, R("v[0:3]"), 0), r"copy from shape \(2, 2\) to shape \(3,\): sizes 4 and 3 differ"),
    (Shift(ALL, A, A, "diagonal"), "axis 'diagonal' is not one of row, col"),
    (Shift(ALL, A, A, "row", 1, "spiral"), "ring 'spiral' is not one of wrap, interleaved"),
    (Shift(ALL, A, A, "row", 1.5), r"shift by 1.5: not an int"),
    (Shift(ALL, A, R("a[pc:pc + 2, 0:2]"), "col"), r"at pr = 0, pc = 1, axis 0 reaches 1..2, outside 0..1 of a"),
    (Multicast(ALL, A, A, "col", 2), "multicast root 2 is not an offset on its lines of 2 PEs"),
    (Multicast(ALL, A, A, "all", 6), "multicast root 6 is not an offset on the rectangle's 6 PEs"),
    (Multicast(ALL, A, A, "all", 5), None),
    (Sends(R("a[0:1, 0:2]"), R("v[0:2]"), ((0, 0, 1, 2), (0, 1, 1, 1)), ((1, 0), (0, 0)), ((2,), (0,))), None),
    (Sends(R("a[0:1, 0:2]"), R("v[0:2]"), ((0, 0, 2, 2),), ((1, 0),), ((2,),)),
     r"message 0 goes from \(0, 0\) to \(2, 2\): outside the 2x3 mesh"),
    (Sends(R("a[0:1, 0:2]"), R("v[0:2]"), ((0, 0, 1, 2), (0, 1, 1, 1)), ((1, 0), (0, 0)), ((2,), (3,))),
     r"message 1's destination region starts at \(3,\), out of v's bounds \(4,\)"),
    (Sends(R("a[0:1, 0:2]"), R("v[1:3]"), ((0, 0, 1, 2),), ((1, 0),), ((0,),)),
     "a sends table's regions are templates: their own starts must be 0"),
    (Sends(R("a[0:1, 0:2]"), R("v[0:3]"), ((0, 0, 1, 2),), ((1, 0),), ((0,),)),
     r"copy from shape \(1, 2\) to shape \(3,\): sizes 2 and 3 differ"),
]


@pytest.mark.parametrize("transfer, message", TRANSFER_BAD)
def test_a_broken_transfer_names_the_rule(transfer, message):
    p = with_step(step(transfers=(transfer,)))
    if message is None:
        verify_mesh(p)
        return
    with pytest.raises(VerifyError, match=message):
        verify_mesh(p)


@st.composite
def strided_transfers(draw):
    """A shift or multicast on a rectangle of a 3x4 mesh whose source starts at `i*pr + j*pc + d`
    in an 8-element buffer: in bounds on some PEs, out on others."""
    rows, cols = 3, 4
    r0, c0 = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
    pes = Pes(r0, draw(st.integers(r0 + 1, rows)), c0, draw(st.integers(c0 + 1, cols)))
    i, j, d = draw(st.integers(-2, 2)), draw(st.integers(-2, 2)), draw(st.integers(-3, 6))
    src = Region("w", (aff("pr") * i + aff("pc") * j + d,), (2,))
    axis = draw(st.sampled_from(["row", "col"]))
    if draw(st.booleans()):
        return Shift(pes, src, R("u[0:2]"), axis, draw(st.integers(-2, 2)))
    line = pes.shape[1] if axis == "row" else pes.shape[0]
    return Multicast(pes, src, R("u[0:2]"), axis, draw(st.integers(0, line - 1)))


@settings(max_examples=80, deadline=None)
@given(strided_transfers())
def test_a_source_region_is_checked_on_exactly_the_pes_that_send_it(t):
    senders = {m.src for m in expand(t)}
    start = t.src.start[0]
    fits = all(0 <= start.evaluate({"pr": r, "pc": c}) <= 6 for r, c in senders)
    p = MeshProgram("t", mesh_spec(3, 4), (), (LocalBuffer("w", (8,), "int32"), LocalBuffer("u", (2,), "int32")),
                    (Alloc(("w", "u"), Pes(0, 3, 0, 4)),), steps=(Superstep(transfers=(t,)),))
    if fits:
        verify_mesh(p)
    else:
        with pytest.raises(VerifyError, match="is out of bounds"):
            verify_mesh(p)


def test_a_sends_table_and_a_broadcast_read_back_from_their_text():
    table = Sends(R("a[0:1, 0:2]"), R("v[0:2]"), ((0, 0, 1, 2), (0, 1, 1, 1)), ((1, 0), (0, 0)), ((2,), (0,)), 4)
    p = with_step(step(transfers=(table, Multicast(ALL, A, A, "all", 4, 1))))
    verify_mesh(p)
    assert "sends channel 4: a[0:1, 0:2] -> v[0:2] {\n" in str(table) and "(0, 1) [0, 0] -> (1, 1) [0]" in str(table)
    assert parse_mesh(str(p)) == p
