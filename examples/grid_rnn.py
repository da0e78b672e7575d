"""Stacked 2-D grid RNN (NMT-style): map over the batch x fold over layers x scan over rows x scan along a row.

Each sample is a pair of sequences, a source `src` (length S) and a target
`trg` (length T), of [1, H] vectors; S and T differ from sample to sample
(ragged).  The model computes, for every layer d = 1 .. depth, a 2-D grid of
S x T cells, each holding an x-state and a y-state ([1, H] each):

    hx[0][i][j] = src[i]        hy[0][i][j] = trg[j]             (the grid of input pairs)

    s           = concat([hx[d][i-1][j], hy[d][i][j-1]], axis=1)  # [1, 2H]; zeros off the grid
    hx[d][i][j] = tanh(s @ i2h_x[d] + hx[d-1][i][j] @ h2h_x[d] + b_x[d])
    hy[d][i][j] = tanh(s @ i2h_y[d] + hy[d-1][i][j] @ h2h_y[d] + b_y[d])

so cell (d, i, j) reads exactly three neighbours:

* from above, (d, i-1, j): its x-state (zero in row i = 0);
* from the left, (d, i, j-1): its y-state (zero in column j = 0);
* from the layer below, (d-1, i, j): both states, its input (the input pair for d = 1).

The dependence distance vectors are (1,0,0), (0,1,0) and (0,0,1) in (d, i, j):
all cells on a hyperplane `d + i + j = m` are independent, which is the
wavefront the ETDG analysis should derive (with `i == 0`, `j == 0`, `d == 1`
as the boundary predicates of its 8 control regions).  The batch dimension is
a `map` (fully parallel).  The result is the top layer's grid, per sample an
S x T list of lists of (x-state, y-state) pairs.

How it maps onto combinators and access operators:

* `map` over the batch (`src` and `trg` zipped);
* `ft.product(src, trg)`: the initial grid, `grid[i][j] == (src[i], trg[j])`;
* `fold` over the layers (`ft.zip` of the per-layer weight lists), the state
  being the whole grid;
* per layer, a `scan` over the rows i whose state is the previous row, i.e. the
  lists of x- and y-states of row i-1 (row -1 is a row of zeros: a `map` over
  `trg` giving a zero state per column, since the row length is per sample);
* per row, a `scan` along j over `ft.zip(above_x, row)`, whose state is the
  left neighbour's (x, y) pair (initially zeros): the element at j pairs the x-
  state of cell (i-1, j) with the cell's input from the layer below.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft

DESCRIPTION = "stacked 2-D grid RNN (batch map x layer fold x row scan x column scan), d+i+j wavefront"

CONFIGS = {
    "small": dict(depth=2, src_length=3, trg_length=4, batch=3, hidden=4),
    "cpu": dict(depth=4, src_length=16, trg_length=16, batch=32, hidden=128),
    "paper": dict(depth=32, src_length=10, trg_length=10, batch=32, hidden=256),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {
    "depth": [1, 2], "src_length": [1, 2, 3], "trg_length": [1, 2, 4], "batch": [1, 2, 3],
    "hidden": [1, 4]
}


class CellParams(NamedTuple):
    i2h: ft.FractalTensor  # ft<[2H, H]>, one per layer: projection of concat(above x-state, left y-state)
    h2h: ft.FractalTensor  # ft<[H, H]>: projection of the cell's own input from the layer below
    b: ft.FractalTensor    # ft<[1, H]>


class GridParams(NamedTuple):
    x: CellParams  # produces the x-state (passed down the rows, i -> i+1)
    y: CellParams  # produces the y-state (passed along a row, j -> j+1)


def vanilla_cell(s, inp, i2h, h2h, b):
    return ft.tanh(s @ i2h + inp @ h2h + b)


def grid_cell(left, cur, p):
    """Cell (d, i, j): `left` is the (x, y) state of cell (d, i, j-1); `cur` pairs the x-state of
    cell (d, i-1, j) with the cell's input, the (x, y) state of cell (d-1, i, j)."""
    _, left_y = left
    above_x, (x_in, y_in) = cur
    px, py = p
    s = ft.concat([above_x, left_y], axis=1)
    return vanilla_cell(s, x_in, *px), vanilla_cell(s, y_in, *py)


@ft.function
def model(src, trg, params: GridParams):
    hidden = params.x.h2h.type.elem.shape[0]
    dtype = params.x.h2h.type.elem.dtype
    zero = ft.zeros((1, hidden), dtype)
    layers = ft.zip(ft.zip(*params.x), ft.zip(*params.y))

    def one_sample(xs, ys):
        zero_row = ft.map(lambda _: zero, ys)  # the states "above" row 0: one zero per column

        def row(above, inputs, p):  # above: the (x, y) state lists of the previous row
            above_x, _ = above
            return ft.scan(lambda left, cur: grid_cell(left, cur, p), ft.zip(above_x, inputs), (zero, zero))

        def layer(grid, p):  # -> the (x-states, y-states) rows of the layer's grid
            return ft.scan(lambda above, inputs: row(above, inputs, p), grid, (zero_row, zero_row))

        return ft.fold(layer, layers, ft.product(xs, ys))

    return ft.map(one_sample, src, trg)


def _lengths(n: int, batch: int, ragged: bool, rng) -> list[int]:
    """All `n`, or random in [n/2, n] with the first sample full length."""
    if not ragged:
        return [n] * batch
    lengths = rng.integers(max(1, n // 2), n + 1, size=batch)
    lengths[0] = n
    return [int(v) for v in lengths]


def _sequences(lengths, h, dtype, rng):
    x = rng.standard_normal((sum(lengths), 1, h)).astype(dtype)
    seqs, k = [], 0
    for n in lengths:
        seqs.append(list(x[k:k + n]))
        k += n
    return ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, h), dtype]]])


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, h, b = cfg["depth"], cfg["hidden"], cfg["batch"]
    rng = np.random.default_rng(seed)
    lengths = np.random.default_rng(seed + 1)
    src = _sequences(_lengths(cfg["src_length"], b, ragged, lengths), h, dtype, rng)
    trg = _sequences(_lengths(cfg["trg_length"], b, ragged, lengths), h, dtype, rng)

    def cell():
        scale = 1.0 / np.sqrt(h)
        return CellParams(*(ft.from_numpy(rng.uniform(-scale, scale, (d,) + shape).astype(dtype))
                            for shape in ((2 * h, h), (h, h), (1, h))))

    return src, trg, GridParams(x=cell(), y=cell())


def reference(src, trg, params):
    """NumPy loops over layers, rows and columns, vectorised over the (padded) batch.

    No mask is needed: a cell inside a sample's S x T grid only reads cells with
    smaller or equal (d, i, j), which are inside it too; the padding cells compute
    values nobody valid reads, and are cropped at the end."""
    src_len, trg_len = np.array(src.lengths()), np.array(trg.lengths())
    xs = src.to_numpy(pad_value=0.0)[:, :, 0, :]                  # [B, S, H]
    ys = trg.to_numpy(pad_value=0.0)[:, :, 0, :]                  # [B, T, H]
    (wx, ux, bx), (wy, uy, by) = ((p.to_numpy() for p in cell) for cell in params)
    nb, ns, hdim = xs.shape
    nt = ys.shape[1]
    x = np.broadcast_to(xs[:, :, None, :], (nb, ns, nt, hdim))    # grid of input pairs
    y = np.broadcast_to(ys[:, None, :, :], (nb, ns, nt, hdim))
    zero = np.zeros((nb, hdim), xs.dtype)
    for d in range(wx.shape[0]):
        gx, gy = x @ ux[d] + bx[d], y @ uy[d] + by[d]            # the layer inputs' projections, all cells
        hx, hy = np.zeros_like(gx), np.zeros_like(gy)
        for i in range(ns):
            for j in range(nt):
                above = hx[:, i - 1, j] if i > 0 else zero
                left = hy[:, i, j - 1] if j > 0 else zero
                s = np.concatenate([above, left], axis=-1)        # [B, 2H]
                hx[:, i, j] = np.tanh(s @ wx[d] + gx[:, i, j])
                hy[:, i, j] = np.tanh(s @ wy[d] + gy[:, i, j])
        x, y = hx, hy
    return [(x[b, :m, :n], y[b, :m, :n]) for b, (m, n) in enumerate(zip(src_len, trg_len))]


def outputs(result):
    """Per sample, the (x-states, y-states) grids as [S, T, H] arrays."""
    (hx, hy), _ = ft.lang.tree.flatten(result)                    # the two component lists
    return [(gx.to_numpy()[:, :, 0, :], gy.to_numpy()[:, :, 0, :]) for gx, gy in zip(hx, hy)]
