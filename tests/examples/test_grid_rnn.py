"""Grid RNN: map > fold > scan > scan over the product grid; cell (i, j) sees only (i' <= i, j' <= j)."""

import numpy as np

import fractal as ft
from examples import grid_rnn as m
from examples import zoo


def _combinators(region):
    return [e for e in region.eqns if e.op in ("map", "scan", "fold", "reduce")]


def test_nest_is_batch_map_layer_fold_row_scan_column_scan():
    program = m.model.trace(*m.inputs("small"))
    (batch_map,) = _combinators(program.body)
    assert batch_map.op == "map"
    sample = batch_map.regions[0].eqns
    assert [e.op for e in sample] == ["map", "product", "fold"]   # zero row, input grid, layers
    fold = sample[2]
    assert fold.inputs[:2] == sample[1].outputs                   # the fold starts from the product grid
    (rows,) = _combinators(fold.regions[0])
    assert rows.op == "scan" and rows.attrs["n_state"] == 2      # state: previous row (x, y lists)
    assert [str(v.type) for v in rows.inputs[:2]] == ["ft<f32[1,4]>"] * 2
    (cols,) = _combinators(rows.regions[0])
    assert cols.op == "scan" and [str(v.type) for v in cols.inputs[:2]] == ["f32[1,4]"] * 2
    cell_ops = [e.op for e in cols.regions[0].eqns]
    assert cell_ops.count("concat") == 1 and cell_ops.count("matmul") == 4 and cell_ops.count("tanh") == 2


def test_result_grids_are_ragged_per_sample():
    src, trg, params = m.inputs("small")
    got = m.outputs(m.model(src, trg, params))
    assert [g[0].shape[:2] for g in got] == list(zip(src.lengths(), trg.lengths()))
    assert len(set(src.lengths())) > 1 and len(set(trg.lengths())) > 1


def _perturbed(seqs, sample, pos):
    rows = [list(s.to_numpy()) for s in seqs]
    rows[sample][pos] = rows[sample][pos] + 1.0
    return ft.fractal(rows, type=seqs.type)


def test_cell_i_j_depends_only_on_inputs_up_to_i_and_j():
    """The d + i + j wavefront: changing src[i0] leaves rows i < i0 unchanged and changes row i0;
    changing trg[j0] leaves columns j < j0 unchanged and changes column j0."""
    src, trg, params = m.inputs(dict(depth=2, src_length=4, trg_length=4, batch=1, hidden=4),
                                dtype=np.float64, ragged=False)
    base_x, base_y = m.outputs(m.model(src, trg, params))[0]
    x, y = m.outputs(m.model(_perturbed(src, 0, 2), trg, params))[0]
    changed = (np.abs(x - base_x) + np.abs(y - base_y)).max(axis=-1) > 0      # [S, T]
    assert not changed[:2].any() and changed[2:].all()
    x, y = m.outputs(m.model(src, _perturbed(trg, 0, 1), params))[0]
    changed = (np.abs(x - base_x) + np.abs(y - base_y)).max(axis=-1) > 0
    assert not changed[:, :1].any() and changed[:, 1:].all()


def test_a_one_by_one_grid_is_two_stacked_vanilla_cells():
    src, trg, params = m.inputs(dict(depth=2, src_length=1, trg_length=1, batch=1, hidden=3),
                                dtype=np.float64, ragged=False)
    (gx, gy), = m.outputs(m.model(src, trg, params))
    x, y = src.to_numpy()[0, 0], trg.to_numpy()[0, 0]                       # [1, H]
    (wx, ux, bx), (wy, uy, by) = ((p.to_numpy() for p in cell) for cell in params)
    for d in range(2):  # no neighbours: the concatenated state is zero
        x, y = np.tanh(x @ ux[d] + bx[d]), np.tanh(y @ uy[d] + by[d])
    assert zoo.max_abs_error((gx[0], gy[0]), (x, y)) <= 1e-12
