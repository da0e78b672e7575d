"""RetNet's multi-scale retention, in its recurrent and its parallel form.

Retention (Sun et al., 2023) replaces softmax attention by a decayed linear
one.  For one head with decay gamma, queries/keys/values of the inputs x_t [1, D]

    q_t = x_t @ W_Q        k_t = (x_t @ W_K) / sqrt(d_k)        v_t = x_t @ W_V
    [1, d_k]               [1, d_k]                             [1, d_v]

give, in the recurrent form (state S [d_k, d_v], S_0 = 0),

    S_t = gamma * S_{t-1} + k_t^T v_t            o_t = q_t S_t           [1, d_v]

and, in the equivalent parallel form over a sequence of length n,

    O = (Q K^T * Dmask) V,      Dmask[i, j] = gamma^(i - j) if i >= j else 0.

Multi-scale: head h has its own decay gamma_h = 1 - 2^(-5 - h).  (RetNet's xPos
rotation of q and k, the per-head group norm, the swish gate and the output
projection are left out: this is the retention operator itself.)

How it maps onto fractal (the result is [batch][head][time] of o_t [1, d_v]):

* `model`, the recurrent form: `ft.map` over the ragged batch x `ft.map` over
  heads (the zipped per-head weights and decays) x `ft.map` over time for the
  projections, then `ft.scan` over time carrying S, then `ft.map` over
  (q_t, S_t) for the read-out.
* `parallel_model`, the parallel form: the same batch and head maps, then
  `ft.map` over the query positions (`ft.enumerate` gives i) x `ft.map` over the
  key positions (`ft.enumerate` gives j) computing Dmask[i, j] (q_i . k_j) v_j
  with the decay from the two positions, summed by an `ft.reduce` over keys.
  Ragged sequences need no mask beyond causality: each sample is its own list.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = "RetNet multi-scale retention (batch map x head map x time scan; parallel form: query map x key reduce)"

CONFIGS = {
    "small": dict(batch=2, length=5, heads=2, d_model=4, head_dim=3),
    "cpu": dict(batch=8, length=256, heads=4, d_model=256, head_dim=64),
    "paper": dict(batch=16, length=2048, heads=8, d_model=1024, head_dim=128),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"batch": [1, 2, 3], "length": [1, 2, 5], "heads": [1, 2], "d_model": [1, 4], "head_dim": [1, 3]}


class RetentionParams(NamedTuple):
    wq: ft.FractalTensor     # ft<[D, d_k]>, one per head
    wk: ft.FractalTensor     # ft<[D, d_k]>
    wv: ft.FractalTensor     # ft<[D, d_v]>
    gamma: ft.FractalTensor  # ft<[]>: the decay of each head


def project(xs, wq, wk, wv):
    """q_t, k_t (scaled by 1/sqrt(d_k)) and v_t of every step (map over time)."""
    scale = 1.0 / float(np.sqrt(wk.shape[1]))
    return ft.map(lambda x: (x @ wq, (x @ wk) * scale, x @ wv), xs)


@ft.function
def model(batch, p: RetentionParams):
    """Recurrent form: S_t = gamma S_{t-1} + k_t^T v_t, o_t = q_t S_t."""
    d_k, d_v = p.wq.type.elem.shape[1], p.wv.type.elem.shape[1]
    s0 = ft.zeros((d_k, d_v), p.wq.type.elem.dtype)

    def head(xs, wq, wk, wv, gamma):
        qs, ks, vs = project(xs, wq, wk, wv)
        states = ft.scan(lambda s, kv: gamma * s + kv[0].T @ kv[1], ft.zip(ks, vs), s0)
        return ft.map(lambda q, s: q @ s, qs, states)

    return ft.map(lambda xs: ft.map(lambda *w: head(xs, *w), p.wq, p.wk, p.wv, p.gamma), batch)


@ft.function
def parallel_model(batch, p: RetentionParams):
    """Parallel form: o_i = sum_j [j <= i] gamma^(i - j) (q_i . k_j) v_j."""
    d_v = p.wv.type.elem.shape[1]
    dtype = p.wv.type.elem.dtype
    zero = ft.zeros((1, d_v), dtype)

    def head(xs, wq, wk, wv, gamma):
        qs, ks, vs = project(xs, wq, wk, wv)

        def query(i, q):
            def key(j, kv):
                k, v = kv
                decay = ft.where(j <= i, gamma ** ft.maximum(i - j, 0).astype(dtype), 0.0)
                return (decay * (q @ k.T)) * v

            terms = ft.map(lambda jkv: key(*jkv), ft.enumerate(ft.zip(ks, vs)))
            return ft.reduce(lambda a, b: a + b, terms, zero)

        return ft.map(lambda iq: query(*iq), ft.enumerate(qs))

    return ft.map(lambda xs: ft.map(lambda *w: head(xs, *w), p.wq, p.wk, p.wv, p.gamma), batch)


def decays(heads: int) -> np.ndarray:
    """RetNet's multi-scale decays gamma_h = 1 - 2^(-5 - h)."""
    return 1.0 - 2.0 ** (-5.0 - np.arange(heads))


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    h, d, dh = cfg["heads"], cfg["d_model"], cfg["head_dim"]
    rng = np.random.default_rng(seed)
    lengths = lengths_for(cfg, ragged, seed)
    x = rng.standard_normal((sum(lengths), 1, d)).astype(dtype)
    seqs, k = [], 0
    for n in lengths:
        seqs.append(list(x[k:k + n]))
        k += n
    scale = 1.0 / np.sqrt(d)
    gamma = np.asarray(cfg["gamma"], np.float64) if "gamma" in cfg else decays(h)
    params = RetentionParams(
        *(ft.from_numpy(rng.uniform(-scale, scale, (h, d, dh)).astype(dtype)) for _ in range(3)),
        gamma=ft.from_numpy(np.broadcast_to(gamma, (h,)).astype(dtype)))
    batch = ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, d), dtype]]])
    return batch, params


def reference(batch, p):
    """NumPy parallel form, vectorised over batch and heads: padded, causal decay mask + length mask."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                     # [B, T, D]
    wq, wk, wv, gamma = (a.to_numpy() for a in p)                     # [H, D, dk] x3, [H]
    q = np.einsum("btd,hde->bhte", x, wq)                             # [B, H, T, dk]
    k = np.einsum("btd,hde->bhte", x, wk) / np.sqrt(wk.shape[-1])
    v = np.einsum("btd,hde->bhte", x, wv)
    t = np.arange(x.shape[1])
    diff = t[:, None] - t[None, :]                                    # i - j
    mask = np.where(diff >= 0, gamma[:, None, None] ** np.maximum(diff, 0), 0.0)  # [H, T, T]
    valid = t[None, :] < lengths[:, None]                             # [B, T]
    mask = mask[None] * valid[:, None, None, :]                       # keys past the end: 0
    o = ((q @ k.swapaxes(-1, -2)) * mask) @ v                         # [B, H, T, dv]
    return [o[i, :, :n] for i, n in enumerate(lengths)]


def outputs(result):
    """[batch][head][time] of [1, d_v] -> per sample an array [H, T, d_v]."""
    return [np.stack([head.to_numpy()[:, 0, :] for head in sample]) for sample in result]
