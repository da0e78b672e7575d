"""Bidirectional GRU: map over the batch x fold over layers x (forward scan, backward scan) over time.

Each direction of each layer is a GRU with the three gate projections fused
into one weight (gate order r, z, n, as in PyTorch):

    gi = x @ W_i + b_i        gh = h @ W_h + b_h                   # [1, 3H] each
    r = sigmoid(gi_r + gh_r)  z = sigmoid(gi_z + gh_z)  n = tanh(gi_n + r * gh_n)
    h' = (1 - z) * n + z * h

The forward direction is `ft.scan` over the sequence; the backward one is
`ft.scan(..., reverse=True)`, which runs from the last element to the first and
returns its states in the original order, so both lists line up and the layer
output at step t is `concat([forward h_t, backward h_t], axis=1)` ([1, 2H]), a
`map` over the two zipped lists.  The two scans are independent of each other
(both read only the layer's input), the `map` joins them.

Sequences in the batch have different lengths (ragged): the backward scan
starts at each sequence's own last element, no padding or masking.  The input
features have the width of a layer's output (2H), so every layer has the same
weight shapes ([2H, 3H] input, [H, 3H] recurrent) and the layers are a `fold`
over the zipped per-layer weight lists, carrying the whole sequence.  Nest:
`map(batch) { fold(layers) { scan(time), scan(time, reverse); map(time) } }`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = "bidirectional GRU (batch map x layer fold x forward and reverse time scans, outputs concatenated)"

CONFIGS = {
    "small": dict(depth=1, length=5, batch=3, hidden=4),
    "cpu": dict(depth=2, length=64, batch=32, hidden=256),
    "paper": dict(depth=4, length=64, batch=256, hidden=512),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"depth": [1], "length": [1, 2, 5], "batch": [1, 2, 3], "hidden": [1, 4]}


class GRUParams(NamedTuple):
    w_i: ft.FractalTensor  # ft<[2H, 3H]>, one per layer: input projection of the gates r, z, n
    w_h: ft.FractalTensor  # ft<[H, 3H]>: recurrent projection
    b_i: ft.FractalTensor  # ft<[1, 3H]>: input bias
    b_h: ft.FractalTensor  # ft<[1, 3H]>: recurrent bias (inside r * (...) for the n gate)


class BiGRUParams(NamedTuple):
    fwd: GRUParams
    bwd: GRUParams


def gru_cell(h, x, w_i, w_h, b_i, b_h):
    hidden = h.shape[-1]
    gi = x @ w_i + b_i
    gh = h @ w_h + b_h
    r = ft.sigmoid(gi[:, :hidden] + gh[:, :hidden])
    z = ft.sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    n = ft.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    return (1.0 - z) * n + z * h


@ft.function
def model(batch, params: BiGRUParams):
    hidden = params.fwd.w_h.type.elem.shape[0]
    dtype = params.fwd.w_h.type.elem.dtype
    zero = ft.zeros((1, hidden), dtype)

    def layer(seq, p):
        fwd, bwd = p
        hf = ft.scan(lambda h, x: gru_cell(h, x, *fwd), seq, zero)
        hb = ft.scan(lambda h, x: gru_cell(h, x, *bwd), seq, zero, reverse=True)
        return ft.map(lambda a, b: ft.concat([a, b], axis=1), hf, hb)

    layers = ft.zip(ft.zip(*params.fwd), ft.zip(*params.bwd))
    return ft.map(lambda xs: ft.fold(layer, layers, xs), batch)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, h = cfg["depth"], cfg["hidden"]
    rng = np.random.default_rng(seed)
    lengths = lengths_for(cfg, ragged, seed)
    x = rng.standard_normal((sum(lengths), 1, 2 * h)).astype(dtype)
    seqs, k = [], 0
    for n in lengths:
        seqs.append(list(x[k:k + n]))
        k += n
    scale = 1.0 / np.sqrt(h)

    def direction():
        return GRUParams(*(ft.from_numpy(rng.uniform(-scale, scale, (d,) + shape).astype(dtype))
                           for shape in ((2 * h, 3 * h), (h, 3 * h), (1, 3 * h), (1, 3 * h))))

    batch = ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2 * h), dtype]]])
    return batch, BiGRUParams(fwd=direction(), bwd=direction())


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru(x, mask, w_i, w_h, b_i, b_h):
    """One masked GRU direction over a padded batch: x [B, T, F], mask [B, T] -> [B, T, H]."""
    nb, nt, _ = x.shape
    h = np.zeros((nb, w_h.shape[0]), x.dtype)
    gi = x @ w_i + b_i                                           # all input projections at once
    out = np.zeros((nb, nt, h.shape[1]), x.dtype)
    for t in range(nt):
        gh = h @ w_h + b_h
        i_r, i_z, i_n = np.split(gi[:, t], 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        n = np.tanh(i_n + r * h_n)
        h = np.where(mask[:, t, None], (1 - z) * n + z * h, h)
        out[:, t] = h
    return out


def reference(batch, params):
    """NumPy, padded and masked; the backward direction runs forward over each sequence reversed
    within its own length (then its outputs are reversed back)."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]               # [B, T, 2H]
    nt = x.shape[1]
    mask = np.arange(nt)[None, :] < lengths[:, None]             # [B, T]
    rev = np.where(mask, lengths[:, None] - 1 - np.arange(nt)[None, :], np.arange(nt)[None, :])  # [B, T]
    rows = np.arange(len(lengths))[:, None]
    fwd = [p.to_numpy() for p in params.fwd]
    bwd = [p.to_numpy() for p in params.bwd]
    for l in range(fwd[0].shape[0]):
        hf = _gru(x, mask, *(p[l] for p in fwd))
        hb = _gru(x[rows, rev], mask, *(p[l] for p in bwd))[rows, rev]
        x = np.concatenate([hf, hb], axis=-1)
    return [x[i, :n] for i, n in enumerate(lengths)]


def outputs(result):
    return [seq.to_numpy()[:, 0, :] for seq in result]


def torch_reference(batch, params):
    """`torch.nn.GRU(bidirectional=True)` over packed variable-length sequences."""
    import torch

    lengths = batch.lengths()
    x = torch.from_numpy(batch.to_numpy(pad_value=0.0)[:, :, 0, :])
    fwd = [p.to_numpy() for p in params.fwd]
    bwd = [p.to_numpy() for p in params.bwd]
    depth, hdim = fwd[0].shape[0], fwd[1].shape[1]
    gru = torch.nn.GRU(2 * hdim, hdim, num_layers=depth, batch_first=True, bidirectional=True).to(x.dtype)
    with torch.no_grad():
        for l in range(depth):
            for suffix, (w_i, w_h, b_i, b_h) in (("", fwd), ("_reverse", bwd)):
                getattr(gru, f"weight_ih_l{l}{suffix}").copy_(torch.from_numpy(w_i[l].T))
                getattr(gru, f"weight_hh_l{l}{suffix}").copy_(torch.from_numpy(w_h[l].T))
                getattr(gru, f"bias_ih_l{l}{suffix}").copy_(torch.from_numpy(b_i[l][0]))
                getattr(gru, f"bias_hh_l{l}{suffix}").copy_(torch.from_numpy(b_h[l][0]))
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = gru(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    return [padded[i, :n].numpy() for i, n in enumerate(lengths)]
