"""PyTorch peers of the recurrent zoo models (imported by `torch_peers`, which owns the table).

Ragged batches are padded to the longest sequence (as a PyTorch user does) and either packed
for the library kernels (`nn.LSTM`, `nn.GRU` over `pack_padded_sequence`) or masked in the
hand-written cell loops (a step past a sequence's end keeps its state: `torch.where`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmarks.peers import Prepared


def tensor(a) -> torch.Tensor:
    """`a` on torch's default device (the CPU; `benchmarks/gpu_check.py` makes it the GPU, where
    the modules and `torch.zeros` of these peers also go)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(torch.get_default_device())


def crop(lengths):
    """Padded [B, T, ...] output -> per-sample arrays of their own length."""
    return lambda y: [y[i, :n].cpu().numpy() for i, n in enumerate(lengths)]


def lstm_module(w, u, b, layers: int, batch_first: bool) -> torch.nn.LSTM:
    """`nn.LSTM` holding the zoo's fused [H, 4H] weights (gate order i, f, g, o, as PyTorch's)."""
    hdim = u.shape[-2]
    lstm = torch.nn.LSTM(hdim, hdim, num_layers=layers, batch_first=batch_first)
    with torch.no_grad():
        for l in range(layers):
            getattr(lstm, f"weight_ih_l{l}").copy_(tensor(w[l].T))
            getattr(lstm, f"weight_hh_l{l}").copy_(tensor(u[l].T))
            getattr(lstm, f"bias_ih_l{l}").copy_(tensor(b[l][0]))
            getattr(lstm, f"bias_hh_l{l}").zero_()
    return lstm.eval()


def lstm_step(x, h, c, w, u, b):
    """One LSTM cell on the batch: x, h, c [B, H]."""
    i, f, g, o = (x @ w + h @ u + b).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _padded_sequences(batch):
    """[B, T, H] padded batch and the lengths."""
    return tensor(batch.to_numpy(pad_value=0.0)[:, :, 0, :]), batch.lengths()


# -- stacked LSTM ---------------------------------------------------------------------------

def _packed(rnn, x, lengths) -> Prepared:
    """`rnn` (batch-first) over the packed ragged batch `x` [B, T, H], outputs cropped per sample."""
    lengths_t = torch.tensor(lengths, device="cpu")  # (packing wants them there)

    def run():
        with torch.no_grad():
            packed = pack_padded_sequence(x, lengths_t, batch_first=True, enforce_sorted=False)
            return pad_packed_sequence(rnn(packed)[0], batch_first=True)[0]
    return Prepared(run, crop(lengths))


def stacked_lstm_packed(module, args) -> Prepared:
    """`nn.LSTM(num_layers=depth)` over the packed ragged batch."""
    batch, params = args
    x, lengths = _padded_sequences(batch)
    w, u, b = (p.to_numpy() for p in params)
    return _packed(lstm_module(w, u, b, w.shape[0], batch_first=True), x, lengths)


def stacked_lstm_cell_loop(module, args) -> Prepared:
    """The eager cell loop: per layer, per time step, one cell on the padded batch, masked."""
    batch, params = args
    x, lengths = _padded_sequences(batch)
    xt = x.transpose(0, 1).contiguous()                                     # time-major [T, B, H]
    mask = tensor(np.arange(xt.shape[0])[:, None, None] < np.array(lengths)[None, :, None])
    w, u, b = (tensor(p.to_numpy()) for p in params)

    def run():
        with torch.no_grad():
            seq = xt
            for l in range(w.shape[0]):
                h = c = torch.zeros_like(seq[0])
                outs = []
                for t in range(seq.shape[0]):
                    h_new, c_new = lstm_step(seq[t], h, c, w[l], u[l], b[l])
                    h, c = torch.where(mask[t], h_new, h), torch.where(mask[t], c_new, c)
                    outs.append(h)
                seq = torch.stack(outs)
            return seq.transpose(0, 1)
    return Prepared(run, crop(lengths))


# -- dilated LSTM ---------------------------------------------------------------------------

def dilated_lstm_rebatched(module, args) -> Prepared:
    """One single-layer `nn.LSTM` per dilation level over the re-batched sub-sequences
    (`B*d` sequences of `T/d` steps, packed; empty ones are dropped, as packing requires)."""
    batch, params, depth = args
    x, lengths = _padded_sequences(batch)
    nb, t, hdim = x.shape
    w, u, b = (p.to_numpy() for p in params)
    levels = []
    for l in range(depth):
        d = 2 ** l
        _, mask = module._rebatch(np.zeros((nb, t, 1), np.float32), lengths, d)  # [T', B*d]
        sub_lengths = mask.sum(axis=0)
        keep = np.flatnonzero(sub_lengths > 0)
        levels.append((d, -(-t // d), lstm_module(w[l:l + 1], u[l:l + 1], b[l:l + 1], 1, batch_first=False),
                       torch.tensor(keep), torch.tensor(sub_lengths[keep], device="cpu")))

    def run():
        with torch.no_grad():
            seq = x
            for d, steps, lstm, keep, sub_lengths in levels:
                padded = F.pad(seq, (0, 0, 0, steps * d - t))
                sub = padded.reshape(nb, steps, d, hdim).transpose(0, 1).reshape(steps, nb * d, hdim)
                packed = pack_padded_sequence(sub[:, keep], sub_lengths, enforce_sorted=False)
                out = pad_packed_sequence(lstm(packed)[0], total_length=steps)[0]
                y = torch.zeros_like(sub)
                y[:, keep] = out
                seq = y.reshape(steps, nb, d, hdim).transpose(0, 1).reshape(nb, steps * d, hdim)[:, :t]
            return seq
    return Prepared(run, crop(lengths))


def dilated_lstm_cell_loop(module, args) -> Prepared:
    """The eager cell loop: per layer, per time step t, one cell on the padded batch reading the
    state of step t - 2**layer, masked."""
    batch, params, depth = args
    x, lengths = _padded_sequences(batch)
    xt = x.transpose(0, 1).contiguous()
    mask = tensor(np.arange(xt.shape[0])[:, None, None] < np.array(lengths)[None, :, None])
    w, u, b = (tensor(p.to_numpy()) for p in params)

    def run():
        with torch.no_grad():
            seq, zero = xt, torch.zeros_like(xt[0])
            for l in range(depth):
                d = 2 ** l
                hs, cs = [], []
                for t in range(seq.shape[0]):
                    h, c = (hs[t - d], cs[t - d]) if t >= d else (zero, zero)
                    h_new, c_new = lstm_step(seq[t], h, c, w[l], u[l], b[l])
                    hs.append(torch.where(mask[t], h_new, h))
                    cs.append(torch.where(mask[t], c_new, c))
                seq = torch.stack(hs)
            return seq.transpose(0, 1)
    return Prepared(run, crop(lengths))


# -- grid RNN -------------------------------------------------------------------------------

def _grid_setup(args):
    src, trg, params = args
    xs = tensor(src.to_numpy(pad_value=0.0)[:, :, 0, :]).transpose(0, 1)  # [S, B, H]
    ys = tensor(trg.to_numpy(pad_value=0.0)[:, :, 0, :]).transpose(0, 1)  # [T, B, H]
    (wx, ux, bx), (wy, uy, by) = ((tensor(p.to_numpy()) for p in cell) for cell in params)
    sizes = list(zip(src.lengths(), trg.lengths()))

    def to_reference(grids):  # [S, T, B, H] x 2 -> per sample ([S_b, T_b, H], [S_b, T_b, H])
        hx, hy = grids
        return [(hx[:m, :n, b].cpu().numpy(), hy[:m, :n, b].cpu().numpy()) for b, (m, n) in enumerate(sizes)]
    return xs, ys, (wx, ux, bx, wy, uy, by), to_reference


def _layer_inputs(x, y, ux, uy, bx, by, first: bool):
    """The projections of every cell's input from the layer below ([S, T, B, H] each); the input
    grid of the first layer is a product, so project the S + T inputs and broadcast."""
    if first:
        s, t = x.shape[0], y.shape[0]
        return ((x @ ux + bx)[:, None].expand(s, t, *x.shape[1:]),
                (y @ uy + by)[None, :].expand(s, t, *y.shape[1:]))
    return x @ ux + bx, y @ uy + by


def grid_rnn_wavefront(module, args) -> Prepared:
    """Hand-written wavefront: per layer, the anti-diagonals i + j = m in order, all cells of a
    diagonal (times the batch) in one GEMM with the x and y weights side by side."""
    xs, ys, (wx, ux, bx, wy, uy, by), to_reference = _grid_setup(args)
    ns, nt, nb, hdim = xs.shape[0], ys.shape[0], xs.shape[1], xs.shape[2]
    w_cat = torch.cat([wx, wy], dim=2)                                      # [D, 2H, 2H]
    diagonals = []
    for m in range(ns + nt - 1):
        ii = torch.arange(max(0, m - nt + 1), min(m, ns - 1) + 1)
        diagonals.append((ii, m - ii))

    def run():
        with torch.no_grad():
            x, y = xs, ys
            for d in range(w_cat.shape[0]):
                gx, gy = _layer_inputs(x, y, ux[d], uy[d], bx[d], by[d], first=d == 0)
                hx = torch.zeros(ns + 1, nt + 1, nb, hdim)                 # cell (i, j) at (i+1, j+1)
                hy = torch.zeros(ns + 1, nt + 1, nb, hdim)
                for ii, jj in diagonals:
                    s = torch.cat([hx[ii, jj + 1], hy[ii + 1, jj]], dim=-1)  # above x, left y
                    z = s @ w_cat[d]
                    hx[ii + 1, jj + 1] = torch.tanh(z[..., :hdim] + gx[ii, jj])
                    hy[ii + 1, jj + 1] = torch.tanh(z[..., hdim:] + gy[ii, jj])
                x, y = hx[1:, 1:], hy[1:, 1:]
            return x, y
    return Prepared(run, to_reference)


def grid_rnn_cell_loop(module, args) -> Prepared:
    """The eager cell loop: per layer, rows i, columns j, one cell on the padded batch."""
    xs, ys, (wx, ux, bx, wy, uy, by), to_reference = _grid_setup(args)
    ns, nt, nb, hdim = xs.shape[0], ys.shape[0], xs.shape[1], xs.shape[2]

    def run():
        with torch.no_grad():
            x, y, zero = xs, ys, torch.zeros(nb, hdim)
            for d in range(wx.shape[0]):
                gx, gy = _layer_inputs(x, y, ux[d], uy[d], bx[d], by[d], first=d == 0)
                hx, hy = torch.empty(ns, nt, nb, hdim), torch.empty(ns, nt, nb, hdim)
                for i in range(ns):
                    for j in range(nt):
                        s = torch.cat([hx[i - 1, j] if i else zero, hy[i, j - 1] if j else zero], dim=-1)
                        hx[i, j] = torch.tanh(s @ wx[d] + gx[i, j])
                        hy[i, j] = torch.tanh(s @ wy[d] + gy[i, j])
                x, y = hx, hy
            return x, y
    return Prepared(run, to_reference)


# -- bidirectional GRU, GRU encoder-decoder with attention, selective scan ---------------------

def bigru_packed(module, args) -> Prepared:
    """`nn.GRU(bidirectional=True, num_layers=depth)` over the packed ragged batch."""
    batch, params = args
    x, lengths = _padded_sequences(batch)
    fwd, bwd = ([p.to_numpy() for p in d] for d in params)
    depth, hdim = fwd[0].shape[0], fwd[1].shape[1]
    gru = torch.nn.GRU(2 * hdim, hdim, num_layers=depth, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for l in range(depth):
            for suffix, (w_i, w_h, b_i, b_h) in (("", fwd), ("_reverse", bwd)):
                for name, value in (("weight_ih", w_i[l].T), ("weight_hh", w_h[l].T),
                                    ("bias_ih", b_i[l][0]), ("bias_hh", b_h[l][0])):
                    getattr(gru, f"{name}_l{l}{suffix}").copy_(tensor(value))
    gru.eval()
    return _packed(gru, x, lengths)


def rnn_attention_batched(module, args) -> Prepared:
    """`nn.GRU` encoder over the packed sources, then a `nn.GRUCell` decoder loop over the
    padded targets with masked additive attention (finished samples keep their state)."""
    sources, targets, p = args
    src, src_len = _padded_sequences(sources)
    trg, trg_len = _padded_sequences(targets)
    e, hdim = p.encoder.w.shape[0], p.encoder.u.shape[0]
    encoder = torch.nn.GRU(e, hdim, batch_first=True)
    decoder = torch.nn.GRUCell(hdim + e, hdim)
    with torch.no_grad():
        for mod, g, sfx in ((encoder, p.encoder, "_l0"), (decoder, p.decoder, "")):
            for name, value in (("weight_ih", g.w.T), ("weight_hh", g.u.T), ("bias_ih", g.b_i[0]),
                                ("bias_hh", g.b_h[0])):
                getattr(mod, f"{name}{sfx}").copy_(tensor(value))
    w_q, w_k, v = tensor(p.w_q), tensor(p.w_k), tensor(p.v)
    src_ok = tensor(np.arange(src.shape[1])[None, :] < np.array(src_len)[:, None])  # [B, S]
    trg_ok = tensor(np.arange(trg.shape[1])[None, :] < np.array(trg_len)[:, None])  # [B, T]
    src_len_t = torch.tensor(src_len, device="cpu")

    def run():
        with torch.no_grad():
            packed = pack_padded_sequence(src, src_len_t, batch_first=True, enforce_sorted=False)
            out, h_n = encoder(packed)
            enc = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])[0]  # [B, S, H]
            keys, s = enc @ w_k, h_n[0]
            states, contexts = [], []
            for t in range(trg.shape[1]):
                scores = (torch.tanh((s @ w_q)[:, None, :] + keys) @ v)[..., 0]    # [B, S]
                a = torch.softmax(scores.masked_fill(~src_ok, float("-inf")), dim=1)
                ctx = (a[:, None, :] @ enc)[:, 0]
                s = torch.where(trg_ok[:, t, None], decoder(torch.cat([ctx, trg[:, t]], dim=1), s), s)
                states.append(s)
                contexts.append(ctx)
            return torch.stack(states, 1), torch.stack(contexts, 1)
    return Prepared(run, lambda out: tuple(crop(trg_len)(y) for y in out))


def selective_scan_eager(module, args) -> Prepared:
    """The S6 recurrence as eager PyTorch on the padded batch, vectorised over channels, masked."""
    batch, p = args
    x, lengths = _padded_sequences(batch)
    d_model = x.shape[-1]
    a = -torch.exp(tensor(p.a_log.to_numpy().reshape(d_model, -1)))        # [D, N]
    d_skip = tensor(p.d_skip.to_numpy().reshape(d_model))
    w_delta, b_delta, w_b, w_c = (tensor(t) for t in (p.w_delta, p.b_delta, p.w_b, p.w_c))
    mask = tensor(np.arange(x.shape[1])[None, :] < np.array(lengths)[:, None])  # [B, T]

    def run():
        with torch.no_grad():
            delta = F.softplus(x @ w_delta + b_delta)                          # [B, T, D]
            bs, cs = x @ w_b, x @ w_c                                          # [B, T, N]
            h = torch.zeros(x.shape[0], d_model, a.shape[1])
            ys = []
            for t in range(x.shape[1]):
                h_new = torch.exp(delta[:, t, :, None] * a) * h \
                    + (delta[:, t] * x[:, t])[:, :, None] * bs[:, t, None, :]
                h = torch.where(mask[:, t, None, None], h_new, h)
                ys.append((h @ cs[:, t, :, None])[..., 0] + d_skip * x[:, t])
            return torch.stack(ys, 1)
    return Prepared(run, crop(lengths))
