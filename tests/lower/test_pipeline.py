"""What the whole pipeline makes of the zoo's models: structure assertions on the tile IR.

The stacked LSTM (fold over layers > map over the batch > scan over time) must become the
paper's schedule: one sequential loop over the D + L - 1 anti-diagonals, whose body is one
stage batched over (layer, sequence) holding the two gate GEMMs (input and recurrent
projections of every active cell, batched) and the fused element-wise cell update, which
writes h and c straight into their state slots.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower.tile_ir import Elementwise, Gemm, Loop, Stage


TARGET = ft.targets.get("cpu-generic")  # the structure below is this target's (the host's may differ)


def _compiled(name, config, ragged=True, target=TARGET):
    model = zoo.load(name)
    args = model.inputs(config, dtype=np.float32, ragged=ragged)
    return model.model.compile(*args, target=target), args


def _top_loops(program):
    return [s for s in program.body if isinstance(s, Loop)]


@pytest.mark.parametrize("depth, length", [(2, 5), (3, 4), (4, 7), (1, 6)])
def test_stacked_lstm_is_one_wavefront_of_d_plus_l_minus_1_steps(depth, length):
    config = dict(zoo.load("stacked_lstm").CONFIGS["small"], depth=depth, length=length)
    compiled, _ = _compiled("stacked_lstm", config)
    loops = _top_loops(compiled.tile_ir)
    assert len(loops) == 1, "one sequential loop: the diagonals (layers and steps interleaved)"
    (wave,) = loops
    steps = wave.stop.const - wave.start.const
    if depth == 1:  # a single layer has no diagonal to skew: the loop is its time loop
        assert steps == length
        return
    assert wave.kind == "sequential" and steps == depth + length - 1
    (stage,) = wave.body
    assert isinstance(stage, Stage) and len(stage.dims) == 2, "batched over (layer, sequence)"
    gemms = [op for op in stage.body if isinstance(op, Gemm)]
    rest = [op for op in stage.body if not isinstance(op, Gemm)]
    assert len(gemms) == 2, "input and recurrent projections, each one batched GEMM"
    assert all(isinstance(op, Elementwise) for op in rest) and len(rest) == 3
    state_writes = {op.dst.buffer for op in rest if op.dst.buffer.startswith("st")}
    assert len(state_writes) == 2, "h and c written in place into their state slots"


def test_stacked_lstm_layers_read_the_layer_below_in_place():
    """No copy between layers: layer l's input rows are layer l - 1's hidden-state rows."""
    compiled, _ = _compiled("stacked_lstm", "small")
    (wave,) = _top_loops(compiled.tile_ir)
    (stage,) = wave.body
    x_proj = next(op for op in stage.body if isinstance(op, Gemm))
    assert x_proj.a.buffer.startswith("st"), "the GEMM reads the state buffer directly"


def test_state_rows_are_laid_out_depth_length_batch():
    """The paper's [depth, length, batch, hidden] layout: the sequences a stage batches over
    are consecutive rows (coefficient 1), so each GEMM operand is one contiguous matrix."""
    compiled, _ = _compiled("stacked_lstm", "small")
    (wave,) = _top_loops(compiled.tile_ir)
    (stage,) = wave.body
    batch = stage.dims[-1].var
    for op in stage.body:
        if isinstance(op, Gemm):
            coeff = dict(op.a.start[0].terms)
            assert coeff[batch] == 1 and all(abs(c) > 1 for v, c in coeff.items() if v != batch)


def test_input_projection_is_hoisted_out_of_a_single_layer_rnn():
    """bigru: a scan per direction; x @ W reads nothing the scan writes, so it is one GEMM
    over all steps before the loop, batched over (time, sequence)."""
    compiled, _ = _compiled("bigru", "small")
    hoisted = [s for s in compiled.tile_ir.body if isinstance(s, Stage)
               and any(isinstance(op, Gemm) for op in s.body) and len(s.dims) >= 2]
    assert len(_top_loops(compiled.tile_ir)) == 2, "one time loop per direction"
    assert hoisted, "a stage batched over at least two dims computes the input projections"


@pytest.mark.parametrize("name", zoo.MODELS)
def test_no_map_loop_is_left_unbatched(name):
    """Every map became a stage dim: no parallel loop directly around a stage remains (tiling
    loops, which carry a step, are the only parallel loops left)."""
    compiled, _ = _compiled(name, "small")

    def walk(stmts):
        for s in stmts:
            if isinstance(s, Loop):
                if s.kind == "parallel" and s.step == 1:
                    assert not any(isinstance(b, Stage) for b in s.body), f"unbatched map loop {s.var}"
                walk(s.body)
    walk(compiled.tile_ir.body)


@pytest.mark.parametrize("name", zoo.MODELS)
def test_compiled_ir_round_trips_and_verifies(name):
    from fractal.lower import parse_tile_program
    compiled, _ = _compiled(name, "small")
    compiled.tile_ir.verify()
    assert parse_tile_program(str(compiled.tile_ir)) == compiled.tile_ir


def _gemms(stmt):
    """The GEMMs directly in the stages of a block (not inside its loops)."""
    return [op for s in stmt if isinstance(s, Stage) for op in s.body if isinstance(op, Gemm)]


def test_b2b_gemm_is_two_gemms_over_the_whole_k_and_n():
    """The model's reduce over N blocks of a reduce over K blocks becomes two plain GEMMs,
    `A[8x8] @ B` and `(A@B) @ C` with K = the whole K and N: no loop is left (`contract`)."""
    compiled, _ = _compiled("b2b_gemm", "small")
    assert _top_loops(compiled.tile_ir) == []
    assert [g.a.shape[-1] for g in _gemms(compiled.tile_ir.body)] == [8, 8]


def test_attention_weights_sum_over_ragged_keys_in_one_gemm():
    """`sum_j p_ij v_j` over each sequence's own keys (lengths 6 and 5) is one GEMM with K = 6,
    the keys past a sequence's length placed as zeros (`contract`)."""
    compiled, _ = _compiled("transformer_block", "small")
    assert 6 in [g.a.shape[-1] for g in _gemms(compiled.tile_ir.body)]


def test_flash_attention_keeps_each_key_blocks_scores_in_the_key_loop():
    """At the cpu size a key block's scores fill a cache tile (256 query blocks of 64 x 64):
    they are computed inside the loop over key blocks, not batched across it (`hoist`)."""
    compiled, _ = _compiled("flash_attention", "cpu")
    (keys,) = _top_loops(compiled.tile_ir)
    assert any(g.trans_b for g in _gemms(keys.body))


@pytest.mark.parametrize("depth, rows, cols", [(2, 3, 4), (3, 2, 5), (1, 3, 3)])
def test_grid_rnn_small_is_one_wavefront_of_d_plus_s_plus_t_minus_2_steps(depth, rows, cols):
    """Tiny cells: the whole (layer, row, column) nest skewed onto its planes `d + i + j`, one
    loop of D + S + T - 2 steps whose body is one stage over the plane's (layer, row) polygon
    times the batch: the projections of each cell's three neighbours in it, per-layer weights
    (one layer: its projection of the input grid, which no step writes, is hoisted)."""
    config = dict(zoo.load("grid_rnn").CONFIGS["small"], depth=depth, src_length=rows, trg_length=cols)
    compiled, _ = _compiled("grid_rnn", config)
    (planes,) = _top_loops(compiled.tile_ir)
    assert planes.kind == "sequential" and planes.stop.const - planes.start.const == depth + rows + cols - 2
    (cell,) = planes.body
    assert isinstance(cell, Stage) and len(_gemms([cell])) == (3 if depth > 1 else 1)
    assert (not cell.rectangular) == (depth > 1)  # one layer: a (row) range per plane, a box


def test_grid_rnn_batched_projects_the_layer_below_once_per_layer():
    """The batched schedule (a policy naming it): both projections of the layer below run once
    per layer, before its (row, column) wavefront, whose diagonals keep only the projection of
    the neighbours' states."""
    target = dataclasses.replace(TARGET, policy=CpuPolicy(schedule="batched"))
    compiled, _ = _compiled("grid_rnn", "small", target=target)
    (layers,) = _top_loops(compiled.tile_ir)
    diagonals = [s for s in layers.body if isinstance(s, Loop)]
    assert len(_gemms(layers.body)) == 2 and len(diagonals) == 1
    assert len(_gemms(diagonals[0].body)) == 1
