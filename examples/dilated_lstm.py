"""Stacked dilated LSTM: map over the batch x (unrolled) layers x dilate / map / scan / interleave.

Layer k (k = 0 .. depth-1) is an LSTM with dilation `d = 2**k`: its recurrence
skips `d` steps, so step t reads the state of step t - d of the same layer

    h[k][t], c[k][t] = lstm_cell((h[k][t-d], c[k][t-d]), h[k-1][t], W[k], U[k], b[k])

(zero state for t < d; `h[-1]` is the input sequence).  That is `d` independent
ordinary LSTMs over the interleaved sub-sequences `xs[j::d]`, which is how the
program says it, with access operators rather than a special combinator:

    ft.interleave(ft.map(lambda sub: ft.scan(lstm_cell, sub, (0, 0)), ft.dilate(seq, d)))

`ft.dilate(seq, d)` gives the `d` sub-sequences (`map`: they are independent),
each is a `scan` over time, and `ft.interleave` puts the outputs back in time
order (its inverse).  The dilation must be a static int, so the layers are
unrolled in Python: `depth` is a static Python int argument (traced programs are
cached per value), and layer k's weights are `params.w[k]` etc., static indices
into the per-layer weight lists (read once, outside the batch map).  The
combinator nest is therefore `map(batch) { depth x [dilate; map(sub-sequence)
{ scan(time) }; interleave] }`.

Sequences in the batch have different lengths (ragged); for a short sequence
some sub-sequences are short or empty (`ft.dilate` always returns `d` of them),
and `ft.interleave` restores the sequence exactly.  The cell is `lstm_cell` of
`examples/stacked_lstm.py` (fused [H, 4H] gate weights, gate order i, f, g, o).
"""

from __future__ import annotations

import numpy as np

import fractal as ft
from examples.stacked_lstm import LSTMParams, lstm_cell
from examples.zoo import lengths_for

DESCRIPTION = "stacked dilated LSTM (layer k has dilation 2^k): dilate / map / scan / interleave per layer"

CONFIGS = {
    "small": dict(depth=3, length=6, batch=2, hidden=4),
    "cpu": dict(depth=6, length=64, batch=64, hidden=256),
    "paper": dict(depth=6, length=50, batch=256, hidden=256),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"depth": [1, 2, 3], "length": [1, 2, 3, 6], "batch": [1, 2], "hidden": [1, 4]}


@ft.function
def model(batch, params: LSTMParams, depth: int):
    hidden = params.u.type.elem.shape[0]
    dtype = params.u.type.elem.dtype
    zero = ft.zeros((1, hidden), dtype)
    layers = [(params.w[k], params.u[k], params.b[k]) for k in range(depth)]

    def lstm(seq, w, u, b):
        hs, _ = ft.scan(lambda s, x: lstm_cell(s, x, w, u, b), seq, (zero, zero))
        return hs

    def dilated_layer(seq, dilation, w, u, b):
        subs = ft.dilate(seq, dilation)                           # subs[j] == seq[j::dilation]
        return ft.interleave(ft.map(lambda sub: lstm(sub, w, u, b), subs))

    def one_sequence(xs):
        for k, (w, u, b) in enumerate(layers):
            xs = dilated_layer(xs, 2 ** k, w, u, b)
        return xs

    return ft.map(one_sequence, batch)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, h = cfg["depth"], cfg["hidden"]
    rng = np.random.default_rng(seed)
    lengths = lengths_for(cfg, ragged, seed)
    x = rng.standard_normal((sum(lengths), 1, h)).astype(dtype)
    seqs, k = [], 0
    for n in lengths:
        seqs.append(list(x[k:k + n]))
        k += n
    scale = 1.0 / np.sqrt(h)
    params = LSTMParams(
        w=ft.from_numpy(rng.uniform(-scale, scale, (d, h, 4 * h)).astype(dtype)),
        u=ft.from_numpy(rng.uniform(-scale, scale, (d, h, 4 * h)).astype(dtype)),
        b=ft.from_numpy(rng.uniform(-scale, scale, (d, 1, 4 * h)).astype(dtype)))
    batch = ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, h), dtype]]])
    return batch, params, d


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rebatch(x, lengths, dilation):
    """[B, T, H] -> [T', B*d, H] (T' = ceil(T/d)) and its [T', B*d] mask: row b*d + j is xs_b[j::d]."""
    b, t, h = x.shape
    steps = -(-t // dilation)
    padded = np.zeros((b, steps * dilation, h), x.dtype)
    padded[:, :t] = x
    sub = padded.reshape(b, steps, dilation, h).transpose(1, 0, 2, 3).reshape(steps, b * dilation, h)
    pos = (np.arange(steps)[:, None, None] * dilation + np.arange(dilation)[None, None, :])  # [T', 1, d]
    mask = (pos < np.asarray(lengths)[None, :, None]).reshape(steps, b * dilation)
    return sub, mask


def _unbatch(y, batch, length, dilation):
    """Inverse of `_rebatch`: [T', B*d, H] -> [B, T, H]."""
    steps, _, h = y.shape
    return y.reshape(steps, batch, dilation, h).transpose(1, 0, 2, 3).reshape(batch, steps * dilation, h)[:, :length]


def reference(batch, params, depth):
    """NumPy, as the PyTorch baseline does it: per layer, re-batch the padded sequences into
    `dilation` times as many sub-sequences of `T/dilation` steps, run one masked LSTM over them."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                  # [B, T, H]
    w, u, b = (p.to_numpy() for p in params)
    nb, t, hdim = x.shape
    for l in range(depth):
        dilation = 2 ** l
        sub, mask = _rebatch(x, lengths, dilation)                  # [T', B*d, H], [T', B*d]
        h = np.zeros((sub.shape[1], hdim), x.dtype)
        c = np.zeros_like(h)
        out = np.zeros_like(sub)
        for s in range(sub.shape[0]):
            g = sub[s] @ w[l] + h @ u[l] + b[l]
            i, f, cand, o = np.split(g, 4, axis=-1)
            c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cand)
            h_new = _sigmoid(o) * np.tanh(c_new)
            h = np.where(mask[s][:, None], h_new, h)
            c = np.where(mask[s][:, None], c_new, c)
            out[s] = h
        x = _unbatch(out, nb, t, dilation)
    return [x[i, :n] for i, n in enumerate(lengths)]


def outputs(result):
    return [seq.to_numpy()[:, 0, :] for seq in result]


def torch_reference(batch, params, depth):
    """One single-layer `torch.nn.LSTM` per dilation level over the re-batched, packed sub-sequences."""
    import torch

    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]
    w, u, b = (p.to_numpy() for p in params)
    nb, t, hdim = x.shape
    for l in range(depth):
        dilation = 2 ** l
        sub, mask = _rebatch(x, lengths, dilation)                  # time-major
        sub_lengths = mask.sum(axis=0)
        keep = np.flatnonzero(sub_lengths > 0)                      # packing rejects empty sequences
        lstm = torch.nn.LSTM(hdim, hdim, num_layers=1).to(torch.from_numpy(x).dtype)
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch.from_numpy(w[l].T))
            lstm.weight_hh_l0.copy_(torch.from_numpy(u[l].T))
            lstm.bias_ih_l0.copy_(torch.from_numpy(b[l][0]))
            lstm.bias_hh_l0.zero_()
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                torch.from_numpy(np.ascontiguousarray(sub[:, keep])), sub_lengths[keep].tolist(),
                enforce_sorted=False)
            out, _ = lstm(packed)
            padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=sub.shape[0])
        y = np.zeros_like(sub)
        y[:, keep] = padded.numpy()
        x = _unbatch(y, nb, t, dilation)
    return [x[i, :n] for i, n in enumerate(lengths)]
