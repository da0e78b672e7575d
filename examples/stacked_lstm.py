"""Stacked LSTM: fold over layers x map over the batch x scan over time.

Each layer is an LSTM with the four gate projections fused into one
`[H, 4H]` weight (gate order i, f, g, o, as in PyTorch):

    g = x @ W[l] + h @ U[l] + b[l]
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)        h' = sigmoid(o) * tanh(c')

Sequences in the batch have different lengths (ragged): each sample is simply
its own list, no padding or masking.  The fold over layers carries the whole
batch from layer to layer (the paper's `[depth, length, batch, hidden]`
iteration space); only element t of a sequence in layer l-1 feeds step t of
layer l, which the ETDG analysis exposes as the `layer + time` wavefront.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = "stacked LSTM (layer fold x batch map x time scan), fused 4-gate projection"

CONFIGS = {
    "small": dict(depth=2, length=5, batch=3, hidden=8),
    "cpu": dict(depth=8, length=64, batch=64, hidden=256),
    "cpu_small_batch": dict(depth=16, length=64, batch=8, hidden=256),
    "paper": dict(depth=32, length=64, batch=256, hidden=256),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"depth": [1, 2], "length": [1, 2, 3, 5], "batch": [1, 2, 3], "hidden": [1, 2, 8]}


class LSTMParams(NamedTuple):
    w: ft.FractalTensor  # ft<[H, 4H]>, one per layer: input projection of the 4 gates
    u: ft.FractalTensor  # ft<[H, 4H]>: recurrent projection
    b: ft.FractalTensor  # ft<[1, 4H]>: bias


def lstm_cell(state, x, w, u, b):
    h, c = state
    hidden = h.shape[-1]
    g = x @ w + h @ u + b
    i = ft.sigmoid(g[:, :hidden])
    f = ft.sigmoid(g[:, hidden:2 * hidden])
    cand = ft.tanh(g[:, 2 * hidden:3 * hidden])
    o = ft.sigmoid(g[:, 3 * hidden:])
    c = f * c + i * cand
    return o * ft.tanh(c), c


@ft.function
def model(batch, params: LSTMParams):
    hidden = params.u.type.elem.shape[0]
    dtype = params.u.type.elem.dtype
    zero = ft.zeros((1, hidden), dtype)

    def layer(seqs, p):
        w, u, b = p

        def sequence(seq):
            hs, _ = ft.scan(lambda s, x: lstm_cell(s, x, w, u, b), seq, (zero, zero))
            return hs

        return ft.map(sequence, seqs)

    # the fold carries the whole batch from layer to layer; step t of a sequence in layer l
    # only reads step t of the same sequence in layer l-1
    return ft.fold(layer, ft.zip(params.w, params.u, params.b), batch)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, h = cfg["depth"], cfg["hidden"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((sum(lengths_for(cfg, ragged, seed)), 1, h)).astype(dtype)
    seqs, k = [], 0
    for n in lengths_for(cfg, ragged, seed):
        seqs.append(list(x[k:k + n]))
        k += n
    scale = 1.0 / np.sqrt(h)
    params = LSTMParams(
        w=ft.from_numpy((rng.uniform(-scale, scale, (d, h, 4 * h))).astype(dtype)),
        u=ft.from_numpy((rng.uniform(-scale, scale, (d, h, 4 * h))).astype(dtype)),
        b=ft.from_numpy((rng.uniform(-scale, scale, (d, 1, 4 * h))).astype(dtype)))
    return ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, h), dtype]]]), params


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(batch, params):
    """NumPy, vectorised over the batch: pad to the longest sequence, mask finished steps."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                  # [B, T, H]
    mask = (np.arange(x.shape[1])[None, :] < lengths[:, None])[..., None]
    w, u, b = (p.to_numpy() for p in params)
    hdim = x.shape[-1]
    for l in range(w.shape[0]):
        h = np.zeros((x.shape[0], hdim), x.dtype)
        c = np.zeros_like(h)
        out = np.zeros_like(x)
        for t in range(x.shape[1]):
            g = x[:, t] @ w[l] + h @ u[l] + b[l]
            i, f, cand, o = np.split(g, 4, axis=-1)
            c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cand)
            h_new = _sigmoid(o) * np.tanh(c_new)
            h = np.where(mask[:, t], h_new, h)
            c = np.where(mask[:, t], c_new, c)
            out[:, t] = h
        x = out
    return [x[i, :n] for i, n in enumerate(lengths)]


def outputs(result):
    return [seq.to_numpy()[:, 0, :] for seq in result]


def torch_reference(batch, params):
    """`torch.nn.LSTM` over packed variable-length sequences."""
    import torch

    lengths = batch.lengths()
    x = torch.from_numpy(batch.to_numpy(pad_value=0.0)[:, :, 0, :])
    w, u, b = (p.to_numpy() for p in params)
    depth, hdim = w.shape[0], x.shape[-1]
    lstm = torch.nn.LSTM(hdim, hdim, num_layers=depth, batch_first=True).to(x.dtype)
    with torch.no_grad():
        for l in range(depth):
            getattr(lstm, f"weight_ih_l{l}").copy_(torch.from_numpy(w[l].T))
            getattr(lstm, f"weight_hh_l{l}").copy_(torch.from_numpy(u[l].T))
            getattr(lstm, f"bias_ih_l{l}").copy_(torch.from_numpy(b[l][0]))
            getattr(lstm, f"bias_hh_l{l}").zero_()
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = lstm(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    return [padded[i, :n].numpy() for i, n in enumerate(lengths)]
