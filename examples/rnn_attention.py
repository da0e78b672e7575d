"""RNN encoder-decoder with additive (Bahdanau) attention over a ragged batch.

Each sample is a pair (source sequence, target sequence) of embedded tokens
`[1, E]`, both of their own lengths.  The encoder is a GRU scanned over the
source; the decoder is a GRU scanned over the target (teacher forcing: the
target inputs are given) that starts from the encoder's last state and, at
each step, attends over all encoder states with the previous decoder state:

    e_j   = v^T tanh(s @ W_q + enc_j @ W_k)            (additive score, [1, 1])
    a     = softmax_j(e)                              (over this sample's source positions)
    ctx   = sum_j a_j * enc_j
    s'    = GRU(s, concat(ctx, y_t))

GRU cells follow PyTorch (gates r, z, n; `n = tanh(x W_n + b_in + r * (h U_n + b_hn))`).
The combinator nest:

    map over the batch of zip(sources, targets)
      scan over source tokens               encoder GRU
      map over encoder states               keys enc_j @ W_k (computed once per sample)
      scan over target tokens               decoder; state (s, ctx)
        map over encoder states             additive scores
        reduce (maximum), map (exp),
        reduce (+), map (/)                 softmax over the source positions
        reduce over zip(weights, states)    the context vector

The model returns, per sample, the decoder states and the context vectors of
each target step.  Source and target lengths are ragged (per sample, no
padding): the softmax runs over exactly the sample's own source positions,
and `enc[-1]` is each sample's own last encoder state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

import fractal as ft

DESCRIPTION = ("GRU encoder-decoder with additive (Bahdanau) attention: batch map x target scan "
               "x source map/reduce, ragged source and target lengths")

CONFIGS = {
    "small": dict(batch=3, src_length=5, trg_length=4, embed=4, hidden=6, attention=5),
    "cpu": dict(batch=32, src_length=50, trg_length=50, embed=256, hidden=256, attention=256),
    "paper": dict(batch=64, src_length=50, trg_length=50, embed=512, hidden=512, attention=512),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {
    "batch": [1, 2, 3], "src_length": [1, 2, 5], "trg_length": [1, 2, 4], "embed": [1, 4],
    "hidden": [1, 6], "attention": [1, 5]
}


class GRUParams(NamedTuple):
    w: np.ndarray    # [I, 3H] input projection of the gates r, z, n
    u: np.ndarray    # [H, 3H] recurrent projection
    b_i: np.ndarray  # [1, 3H] input bias
    b_h: np.ndarray  # [1, 3H] recurrent bias (inside r * (...) for the n gate)


class Params(NamedTuple):
    encoder: GRUParams  # input size E
    decoder: GRUParams  # input size H + E: concat(context, target token)
    w_q: np.ndarray     # [H, A] attention: query (decoder state) projection
    w_k: np.ndarray     # [H, A] attention: key (encoder state) projection
    v: np.ndarray       # [A, 1] attention: score vector


def gru_cell(h, x, p: GRUParams):
    hidden = h.shape[-1]
    gi = x @ p.w + p.b_i
    gh = h @ p.u + p.b_h
    r = ft.sigmoid(gi[:, :hidden] + gh[:, :hidden])
    z = ft.sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    n = ft.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
    return (1.0 - z) * n + z * h


def softmax_list(scores, dtype):
    """softmax over a list of `[1, 1]` scores (its length is runtime data)."""
    top = ft.reduce(ft.maximum, scores, ft.full((1, 1), -math.inf, dtype))
    e = ft.map(lambda s: ft.exp(s - top), scores)
    total = ft.reduce(lambda acc, x: acc + x, e, ft.zeros((1, 1), dtype))
    return ft.map(lambda x: x / total, e)


@ft.function
def model(sources, targets, p: Params):
    hidden = p.encoder.u.shape[0]
    dtype = p.encoder.u.dtype
    zero = ft.zeros((1, hidden), dtype)

    def translate(src, trg):
        enc = ft.scan(lambda h, x: gru_cell(h, x, p.encoder), src, zero)
        keys = ft.map(lambda e: e @ p.w_k, enc)

        def decode_step(state, y):
            s, _ = state
            q = s @ p.w_q
            weights = softmax_list(ft.map(lambda k: ft.tanh(q + k) @ p.v, keys), dtype)
            ctx = ft.reduce(lambda acc, we: acc + we[0] * we[1], ft.zip(weights, enc), zero)
            return gru_cell(s, ft.concat([ctx, y], axis=1), p.decoder), ctx

        return ft.scan(decode_step, trg, (enc[-1], zero))  # (decoder states, contexts)

    return ft.map(translate, sources, targets)


# -- inputs ---------------------------------------------------------------------------------

def lengths_for(n: int, batch: int, ragged: bool, rng) -> list[int]:
    """Per-sample lengths: all `n`, or random in [n/2, n] when ragged (the first sample full)."""
    if not ragged:
        return [n] * batch
    lengths = rng.integers(max(1, n // 2), n + 1, size=batch)
    lengths[0] = n
    return [int(v) for v in lengths]


def _sequences(rng, lengths, dim, dtype):
    x = rng.standard_normal((sum(lengths), 1, dim)).astype(dtype)
    seqs = [list(x[k - n:k]) for n, k in zip(lengths, np.cumsum(lengths))]
    return ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, dim), dtype]]])


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    e, h, a, b = cfg["embed"], cfg["hidden"], cfg["attention"], cfg["batch"]
    lrng = np.random.default_rng(seed + 1)
    src_lengths = lengths_for(cfg["src_length"], b, ragged, lrng)
    trg_lengths = lengths_for(cfg["trg_length"], b, ragged, lrng)
    rng = np.random.default_rng(seed)
    sources = _sequences(rng, src_lengths, e, dtype)
    targets = _sequences(rng, trg_lengths, e, dtype)

    def uniform(fan_in, *shape):
        s = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-s, s, shape).astype(dtype)

    def gru(inp):
        return GRUParams(w=uniform(h, inp, 3 * h), u=uniform(h, h, 3 * h),
                         b_i=uniform(h, 1, 3 * h), b_h=uniform(h, 1, 3 * h))

    params = Params(encoder=gru(e), decoder=gru(h + e), w_q=uniform(h, h, a), w_k=uniform(h, h, a),
                    v=uniform(a, a, 1))
    return sources, targets, params


# -- references -----------------------------------------------------------------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru(x, h, p: GRUParams):
    gi = x @ p.w + p.b_i
    gh = h @ p.u + p.b_h
    r_i, z_i, n_i = np.split(gi, 3, axis=-1)
    r_h, z_h, n_h = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(r_i + r_h), _sigmoid(z_i + z_h)
    n = np.tanh(n_i + r * n_h)
    return (1 - z) * n + z * h


def reference(sources, targets, p: Params):
    """NumPy, vectorised over the batch: padded sequences, masked steps and masked source positions."""
    src_len, trg_len = np.array(sources.lengths()), np.array(targets.lengths())
    x = sources.to_numpy(pad_value=0.0)[:, :, 0, :]                   # [B, S, E]
    y = targets.to_numpy(pad_value=0.0)[:, :, 0, :]                   # [B, T, E]
    nb, ns, _ = x.shape
    nt = y.shape[1]
    hdim = p.encoder.u.shape[0]
    src_ok = np.arange(ns)[None, :] < src_len[:, None]                # [B, S]
    trg_ok = np.arange(nt)[None, :] < trg_len[:, None]                # [B, T]

    h = np.zeros((nb, hdim), x.dtype)
    enc = np.zeros((nb, ns, hdim), x.dtype)
    for t in range(ns):  # finished samples keep their last state
        h = np.where(src_ok[:, t, None], _gru(x[:, t], h, p.encoder), h)
        enc[:, t] = h
    keys = (enc.reshape(nb * ns, hdim) @ p.w_k).reshape(nb, ns, -1)   # [B, S, A]

    s = h  # the last valid encoder state of each sample
    states = np.zeros((nb, nt, hdim), x.dtype)
    contexts = np.zeros_like(states)
    for t in range(nt):
        e = (np.tanh((s @ p.w_q)[:, None, :] + keys) @ p.v)[..., 0]  # [B, S]
        e = np.where(src_ok, e, -np.inf)
        a = np.exp(e - e.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        ctx = np.einsum("bs,bsh->bh", a, enc)
        s = np.where(trg_ok[:, t, None], _gru(np.concatenate([ctx, y[:, t]], axis=1), s, p.decoder), s)
        states[:, t], contexts[:, t] = s, ctx
    return ([states[i, :n] for i, n in enumerate(trg_len)],
            [contexts[i, :n] for i, n in enumerate(trg_len)])


def outputs(result):
    states, contexts = result
    return [s.to_numpy()[:, 0, :] for s in states], [c.to_numpy()[:, 0, :] for c in contexts]


def torch_reference(sources, targets, p: Params):
    """`torch.nn.GRU` encoder and `torch.nn.GRUCell` decoder, one sample at a time (no padding)."""
    import torch

    def tt(a):
        return torch.from_numpy(np.ascontiguousarray(a))

    dtype = torch.float64 if sources.type.leaf.dtype == np.float64 else torch.float32
    e, hdim = p.encoder.w.shape[0], p.encoder.u.shape[0]
    encoder = torch.nn.GRU(e, hdim, batch_first=True, dtype=dtype)
    decoder = torch.nn.GRUCell(hdim + e, hdim, dtype=dtype)
    w_q, w_k, v = tt(p.w_q), tt(p.w_k), tt(p.v)
    states, contexts = [], []
    with torch.no_grad():
        for mod, g, sfx in ((encoder, p.encoder, "_l0"), (decoder, p.decoder, "")):
            getattr(mod, f"weight_ih{sfx}").copy_(tt(g.w.T))
            getattr(mod, f"weight_hh{sfx}").copy_(tt(g.u.T))
            getattr(mod, f"bias_ih{sfx}").copy_(tt(g.b_i[0]))
            getattr(mod, f"bias_hh{sfx}").copy_(tt(g.b_h[0]))
        for src, trg in zip(sources, targets):
            enc, h_n = encoder(tt(src.to_numpy()[:, 0, :])[None])      # [1, S, H], [1, 1, H]
            enc, s = enc[0], h_n[0]
            keys = enc @ w_k
            hs, cs = [], []
            for y in tt(trg.to_numpy()[:, 0, :]):
                a = torch.softmax((torch.tanh(s @ w_q + keys) @ v)[:, 0], dim=0)  # [S]
                ctx = (a[:, None] * enc).sum(0, keepdim=True)
                s = decoder(torch.cat([ctx, y[None]], dim=1), s)
                hs.append(s[0])
                cs.append(ctx[0])
            states.append(torch.stack(hs).numpy())
            contexts.append(torch.stack(cs).numpy())
    return states, contexts
