"""The mesh IR's text form: every node prints as its text, `parse_mesh(print_mesh(p)) == p` with
the machine's provenance, and malformed text or unprintable programs fail with clear errors."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fractal.backends.dataflow.mesh_ir as mesh_ir
from fractal.backends.dataflow.mesh_ir import (Alloc, Compute, Free, HostArray, Load, LocalBuffer, MeshProgram,
                                               Multicast, Pes, Send, Shift, Store, Superstep)
from fractal.backends.dataflow.mesh_parser import parse_mesh
from fractal.backends.dataflow.mesh_printer import print_mesh, print_spec
from fractal.backends.dataflow.spec import PRESETS, mesh_spec
from fractal.lang.errors import FractalTypeError, ParseError
from fractal.lower.tile_ir import Dim, Gemm
from fractal.lower.tile_parser import parse_index, parse_region

from .mesh_strategies import mesh_programs

R = parse_region
ALL = Pes(0, 2, 0, 3)


def program(**changes) -> MeshProgram:
    """A 2x3 mesh program holding one node of every kind."""
    base = dict(
        name="every.kind", spec=mesh_spec(2, 3, preset="wse2"),
        arrays=(HostArray("x", (4, 6), "float32"), HostArray("ids", (3,), "int64", "const", np.array([2, 0, 1])),
                HostArray("y", (4, 6), "float32", "output")),
        buffers=(LocalBuffer("a", (2, 2), "float32"), LocalBuffer("b", (2, 2), "float32"),
                 LocalBuffer("v", (4,), "float32"), LocalBuffer("n", (3,), "int64")),
        allocs=(Alloc(("a", "b", "v"), ALL), Alloc(("n",), Pes(0, 1, 2, 3))),
        loads=(Load(ALL, R("a[0:2, 0:2]"), R("x[2*pr:2*pr + 2, 2*pc:2*pc + 2]")),
               Load(Pes.one(0, 2), R("n[0:3]"), R("ids[0:3]"))),
        steps=(Superstep("step 0", (Alloc(("n",), Pes(1, 2, 2, 3)),),
                         (Compute(ALL, (Gemm(R("a[0:2, 0:2]"), R("a[0:2, 0:2]"), R("b[0:2, 0:2]"), True, True),)),
                          Compute(ALL, (Gemm(R("a[k:k + 1, 0:2]"), R("a[0:2, 0:2]"), R("b[k:k + 1, 0:2]")),),
                                  (Dim("k", parse_index("0"), parse_index("min(2, pc + 1)")),), "gemm rows")),
                         (Send((0, 2), (1, 0), R("a[0:2, 0:2]"), R("v[0:4]"), 3),
                          Shift(ALL, R("a[0:2, 0:2]"), R("a[0:2, 0:2]"), "row", -1, "wrap", 0),
                          Shift(ALL, R("b[0:2, 0:2]"), R("b[0:2, 0:2]"), "col", 2, "interleaved", 1),
                          Multicast(ALL, R("v[0:4]"), R("a[0:2, 0:2]"), "col", 1, 2),
                          Multicast(ALL, R("a[0:2, 0:2]"), R("b[0:2, 0:2]"), "row", 2, 2)),
                         (Free(("n",), Pes(0, 2, 2, 3)),)),
               Superstep()),
        stores=(Store(ALL, R("y[2*pr:2*pr + 2, 2*pc:2*pc + 2]"), R("b[0:2, 0:2]")),),
        frees=(Free(("a", "b", "v"), ALL),))
    return MeshProgram(**{**base, **changes})


def test_every_node_kind_round_trips_and_prints_as_its_text():
    p = program()
    text = print_mesh(p)
    assert parse_mesh(text) == p
    assert print_mesh(parse_mesh(text)) == text
    assert str(p) == text
    step = p.steps[0]
    lines = text.split("\n")
    for node in (*p.arrays, *p.buffers, *p.allocs, *p.loads, *step.transfers, *step.frees, *p.stores, *p.frees):
        assert "  " + str(node) in lines or "    " + str(node) in lines
    assert str(step.computes[1]).split("\n") == [
        'compute pes[0:2, 0:3] (k in 0:min(2, pc + 1)) label "gemm rows" {',
        "  b[k:k + 1, 0:2] = gemm(a[k:k + 1, 0:2], a[0:2, 0:2])", "}"]
    assert "  array ids: i64[3] const = [2, 0, 1]" in lines
    assert "    shift pes[0:2, 0:3] col by 2 interleaved channel 1: b[0:2, 0:2] -> b[0:2, 0:2]" in lines
    assert "    send (0, 2) -> (1, 0) channel 3: a[0:2, 0:2] -> v[0:4]" in lines
    assert "    multicast pes[0:2, 0:3] col root 1 channel 2: v[0:4] -> a[0:2, 0:2]" in lines
    assert "  superstep {" in lines  # an unlabelled step


def test_the_machine_prints_in_full_with_its_provenance():
    spec = mesh_spec(4, 4, preset="ipu_mk2", hop_latency_cycles=7)
    text = print_spec(spec)
    assert '  kind crossbar "[S] IPU-Exchange, any pattern"' in text.split("\n")
    assert '  hop_latency_cycles 7 "user"' in text.split("\n")
    assert '  flops_per_cycle [float16 128.0, float32 32.0] "[D] 250/62.5 TFLOPS over 1472 tiles at 1.33 GHz [U]"' \
        in text.split("\n")
    for preset in PRESETS:
        p = program(spec=mesh_spec(2, 3, preset=preset))
        back = parse_mesh(print_mesh(p)).spec
        assert back == p.spec and back.sources == p.spec.sources and back.name == p.spec.name


def test_a_number_reads_back_as_the_type_it_was():
    spec = mesh_spec(2, 3, link_bytes_per_cycle=8, clock_hz=2.5e9)
    back = parse_mesh(print_mesh(program(spec=spec))).spec
    assert type(back.link_bytes_per_cycle) is int and back.clock_hz == 2.5e9
    assert "    link_bytes_per_cycle 8 \"user\"" in print_mesh(program(spec=spec)).split("\n")


def test_a_machine_without_provenance_prints_bare_numbers():
    spec = dataclasses.replace(mesh_spec(2, 3), sources=())
    text = print_mesh(program(spec=spec))
    assert "    rows 2" in text.split("\n")
    assert parse_mesh(text).spec.sources == ()


def docstring_example() -> str:
    """The program text in `mesh_ir`'s docstring."""
    doc = mesh_ir.__doc__
    block = doc[doc.index("    mesh @cannon"):].split("\n")
    return "\n".join(line[4:] for line in block[:block.index("    }") + 1])


def test_the_docstring_example_is_what_the_printer_prints():
    example = docstring_example()
    p = parse_mesh(example)
    assert print_mesh(p) == example
    assert [s.label for s in p.steps] == ["step 0", "step 1"]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh_programs())
def test_random_programs_round_trip(p):
    text = print_mesh(p)
    back = parse_mesh(text)
    assert back == p
    assert back.spec.sources == p.spec.sources
    assert print_mesh(back) == text


# --- malformed text ---------------------------------------------------------------------------

def _with(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


TEXT = print_mesh(program())


@pytest.mark.parametrize("old, new, message", [
    ("superstep \"step 0\" {", "superstep \"step 0\" [", r"line 32, column 22: unexpected '\['; expected one of: '\{'"),
    ("    rows 2", "    rows 2\n    rows 3", r"line 4, column 5: machine field 'rows' is given twice"),
    ("    rows 2 \"user\"\n", "", r"line 2, column 11: the machine needs rows"),
    ("    cols 3", "    colz 3", r"line 4, column 5: unknown machine field 'colz' \(a machine has rows, cols, kind"),
    ("kind mesh", "kind ring", r"line 2, column 11: mesh 'wse2-2x3': kind 'ring' is not one of"),
    ("array x: f32", "array x: f33", r"line 21, column 12: unknown dtype 'f33' \(expected one of"),
    ("const = [2, 0, 1]", "const = [2, 0]", r"line 22, column 29: array ids: literal has 2 element\(s\), expected 3"),
    ('"user"', '"us\\qer"', r"line 3, column 12: bad string literal \"us\\qer\" \(Invalid \\escape\)"),
])
def test_malformed_text_is_a_parse_error_naming_the_place(old, new, message):
    with pytest.raises(ParseError, match=message):
        parse_mesh(_with(TEXT, old, new))


def test_text_must_be_a_str():
    with pytest.raises(FractalTypeError, match="parse_mesh takes the text as a str, got bytes"):
        parse_mesh(TEXT.encode())


# --- what cannot be printed ---------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (dict(name="no spaces"), "cannot print mesh program name 'no spaces'"),
    (dict(buffers=(LocalBuffer("max", (2,), "float32"),)), "cannot print: name 'max' is a reserved word"),
    (dict(allocs=(Alloc((), ALL),)), "cannot print an alloc that names no buffers"),
    (dict(spec=mesh_spec(2, 3, clock_hz=float("inf"))), r"cannot print clock_hz = inf: not an int or a finite float"),
    (dict(arrays=(HostArray("w", (2,), "float32", "const", np.array([1, 2])),)),
     r"cannot print array 'w': its data is int64\[2\], not float32\[2\]"),
    (dict(arrays=(HostArray("w", (2,), "float32", "in put"),)), "cannot print 'in put': not a word"),
])
def test_unprintable_programs_say_why(change, message):
    with pytest.raises(ValueError, match=message):
        print_mesh(program(**change))


def test_a_bad_flops_dtype_cannot_print():
    spec = dataclasses.replace(mesh_spec(2, 3), flops_per_cycle=(("float 32", 1.0),))
    with pytest.raises(ValueError, match=re.escape("cannot print the flops_per_cycle dtype 'float 32'")):
        print_spec(spec)
