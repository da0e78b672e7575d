"""Grouped products: each group of points multiplies by its own right operand on its own block
of PEs; exact on random shapes and meshes, and a layer's weights move once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from examples import zoo
from fractal.backends.dataflow.bsp import run_bsp
from fractal.backends.dataflow.mesh_ir import Sends
from fractal.backends.dataflow.plan import Planner
from fractal.backends.dataflow.spec import mesh_spec
from fractal.backends.pointwise import run_pointwise
from fractal.lower.tile_parser import parse_tile_program
from fractal.testing.compare import compare

F64 = np.float64


def _ints(shape, rng):
    return rng.integers(-3, 4, shape).astype(F64)


@ft.function
def per_group(xss, ws):
    """Every group's rows times the group's own weight."""
    return ft.map(lambda xs, w: ft.map(lambda x: x @ w, xs), xss, ws)


def _grouped_steps(program):
    return [s.label for s in program.steps if " grouped " in s.label]


@settings(max_examples=20, deadline=None)
@given(groups=st.integers(1, 4), points=st.lists(st.integers(1, 5), min_size=4, max_size=4), m=st.sampled_from([1, 2, 3]), k=st.sampled_from([1, 2, 4]),
       n=st.sampled_from([1, 2, 4, 6]), rows=st.integers(1, 4), cols=st.integers(1, 4), seed=st.integers(0, 99))
def test_grouped_products_equal_the_interpreter_exactly(groups, points, m, k, n, rows, cols, seed):
    rng = np.random.default_rng(seed)
    xss = ft.fractal([[_ints((m, k), rng) for _ in range(points[g])] for g in range(groups)],   # (ragged)
                     type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(m, k), F64]]])
    ws = ft.fractal([_ints((k, n), rng) for _ in range(groups)], type=ft.FractalTensor[ft.Tensor[(k, n), F64]])
    compiled = per_group.compile(xss, ws, target=ft.targets.mesh(rows, cols, sram_bytes=1 << 20))
    got, want = compiled.run(xss, ws), per_group(xss, ws, backend="interpreter")
    if 1 < groups <= rows * cols and len(set(points[:groups])) == 1:
        # (one group shares its weight: a stacked product; more groups than PEs: windows; ragged
        # lists are padded through a gather in the same stage: windows)
        assert _grouped_steps(compiled._executable.program)
    assert all(np.array_equal(g, e) for gs, es in zip(got.to_list(), want.to_list()) for g, e in zip(gs, es))


_TRIANGLE = """tile @triangle {
  buffer x: f64[18,2,4] global input
  buffer w: f64[3,4,6] global input
  buffer y: f64[18,2,6] global output
  stage cells(f in 0:3, s in 0:f + 1, m in 0:2) device {
    y[6*f + 2*s + m, 0:2, 0:6] = gemm(x[6*f + 2*s + m, 0:2, 0:4], w[f, 0:4, 0:6])
  }
}"""


@pytest.mark.parametrize("rows, cols", [(3, 4), (4, 4), (2, 8)])
def test_groups_of_different_sizes_share_one_band_size(rows, cols):
    """A wavefront's triangle: layer f has f + 1 cells of 2 points (4 rows each): bands of 4
    rows, 1, 2 and 3 grid rows."""
    tile = parse_tile_program(_TRIANGLE)
    program = Planner(tile, mesh_spec(rows, cols, "tiny", sram_bytes=1 << 20)).program()
    assert _grouped_steps(program)
    rng = np.random.default_rng(rows * cols)
    inputs = {"x": _ints((18, 2, 4), rng), "w": _ints((3, 4, 6), rng)}
    want = run_pointwise(tile, inputs)["y"]
    got = run_bsp(program, inputs)[0]["y"]
    written = [6 * f + 2 * s + m for f in range(3) for s in range(f + 1) for m in range(2)]
    assert np.array_equal(got[written], want[written])


_TRIANGLE_7 = _TRIANGLE.replace("f64[18,2,4]", "f64[98,2,4]").replace("f64[3,4,6]", "f64[7,4,6]") \
    .replace("f64[18,2,6]", "f64[98,2,6]").replace("f in 0:3", "f in 0:7").replace("6*f", "14*f")


def test_a_group_with_more_bands_than_its_block_has_rows_runs_them_in_rounds():
    """7 layers of up to 7 cells (bands of 4 rows) on 8 PEs: a block of one PE per layer,
    so layer f's f + 1 bands take f + 1 rounds, its weight loaded once."""
    tile = parse_tile_program(_TRIANGLE_7)
    program = Planner(tile, mesh_spec(2, 4, "tiny", sram_bytes=1 << 20)).program()
    labels = _grouped_steps(program)
    assert any(label.endswith("round 6") for label in labels) and not any("round 7" in x for x in labels)
    loads = [t for s in program.steps for t in s.transfers if isinstance(t, Sends) and t.src.buffer == "h_w"]
    assert sum(len(t) for t in loads) == 7                     # each layer's weight to its PE, once
    rng = np.random.default_rng(7)
    inputs = {"x": _ints((98, 2, 4), rng), "w": _ints((7, 4, 6), rng)}
    written = [14 * f + 2 * s + m for f in range(7) for s in range(f + 1) for m in range(2)]
    assert np.array_equal(run_bsp(program, inputs)[0]["y"][written], run_pointwise(tile, inputs)["y"][written])


def test_a_stacked_lstm_whose_cell_does_not_fit_a_pe_keeps_each_layers_weights_on_its_block():
    # one point of the step (a row times two 32 x 128 weights, 32 KiB) does not fit 24 KiB: the
    # step runs op by op, its two products grouped by layer, each layer's weight tiles resident
    config = dict(depth=3, length=5, batch=4, hidden=32)
    target = ft.targets.mesh(4, 4, sram_bytes=24 << 10)
    m = zoo.load("stacked_lstm")
    args = m.inputs(config, ragged=False)
    compiled = m.model.compile(*args, target=target)
    program = compiled._executable.program
    assert _grouped_steps(program), "the products of the step are grouped by layer"
    homes = {f"h_{b.name}" for b in compiled.tile_ir.buffers if b.name.startswith(("in_params_w", "in_params_u"))}
    moved = [s.label for s in program.steps if any(isinstance(t, Sends) and t.src.buffer in homes for t in s.transfers)]
    # each weight's tiles leave their homes in the first run that meets their layer: runs 0..depth-1
    assert moved and all(int(label.split("#")[1].split()[0]) < config["depth"] for label in moved)
    got, want = m.outputs(compiled.run(*args)), m.outputs(m.model(*args, backend="interpreter"))
    assert compare(got, want, rtol=1e-4, atol=1e-4) == []


@pytest.mark.parametrize("hidden", [4, 32])
def test_a_weight_an_earlier_stage_lays_out_stays_resident_like_an_input(hidden):
    # grid_rnn concatenates its x and y input-to-hidden weights into one temp before the
    # wavefront: nothing writes that temp afterwards, so its tiles stay on their PEs too.
    # hidden 4: the cell fits a PE (windows, resident boxes); 32: it does not (products grouped
    # by layer, each group growing along the wavefront: its new PEs load their tiles then)
    m = zoo.load("grid_rnn")
    args = m.inputs(dict(depth=2, src_length=3, trg_length=4, batch=3, hidden=hidden), ragged=False)
    compiled = m.model.compile(*args, target=ft.targets.mesh(4, 4, sram_bytes=24 << 10))
    program = compiled._executable.program
    assert bool(_grouped_steps(program)) == (hidden == 32)
    (weight,) = [b.name for b in compiled.tile_ir.buffers if b.role == "temp" and "i2h" in b.name]
    runs_of: dict = {}   # PE -> the runs in which it receives the weight's tiles
    for step in program.steps:
        for t in step.transfers:
            # (hidden 32: a run whose groups share no band size runs windows instead: not counted)
            if isinstance(t, Sends) and t.src.buffer == f"h_{weight}" and \
                    (hidden == 4 or t.dst.buffer.startswith("grouped_")):
                for r0, c0, r1, c1 in t.routes.tolist():
                    runs_of.setdefault((r1, c1), set()).add(step.label.split()[0])
    assert runs_of and all(len(runs) == 1 for runs in runs_of.values())    # each PE loads it once
    got, want = m.outputs(compiled.run(*args)), m.outputs(m.model(*args, backend="interpreter"))
    assert compare(got, want, rtol=1e-4, atol=1e-4) == []
