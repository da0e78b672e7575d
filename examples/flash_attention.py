"""FlashAttention: blocked multi-head attention with the online (streaming) softmax.

Queries, keys and values are blocked along the sequence into `[Bq, d]` tiles:
`q, k, v: ft<ft<ft<[Bq, d]>>>` = batch x heads x blocks.  Samples may have
different sequence lengths (a different number of blocks, ragged), without
padding.  For every query block `Q` the program computes

    softmax(Q K^T / sqrt(d)) V

as `map` (batch) x `map` (heads) x `map` (query blocks) x `reduce` (key/value
blocks of `ft.zip(ks, vs)`), never forming the full score row.  The reduce's
state is the online-softmax triple (Rabe & Staats; §9.7 of the design reference)

    m [Bq, 1]  running row max of the scores seen so far
    l [Bq, 1]  running row sum of exp(score - m)
    o [Bq, d]  running sum of exp(score - m) @ V

and the result of a query block is `o / l`.  Each step turns its key/value
block into the state of that block alone (`block_state`) and merges it into
the running state with `combine`, which rescales both sides to the new max:

    m = max(m1, m2)    l = e^(m1-m) l1 + e^(m2-m) l2    o = e^(m1-m) o1 + e^(m2-m) o2

`combine` is associative with identity `(m, l, o) = (-inf, 0, 0)` — the
reduce's initial state, in the same order as the state tuple — so a backend
may split the key blocks and merge partial states in any bracketing.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import ragged_lengths

DESCRIPTION = "FlashAttention (batch map x head map x query-block map x key-block reduce, online softmax)"

CONFIGS = {
    "small": dict(batch=2, heads=2, length=12, head_dim=4, block=3),
    "cpu": dict(batch=2, heads=8, length=1024, head_dim=64, block=64),
    "cpu_seq2048": dict(batch=2, heads=8, length=2048, head_dim=64, block=64),
    "paper": dict(batch=2, heads=8, length=1024, head_dim=32, block=64),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"batch": [1, 2], "heads": [1, 2], "length": [3, 6, 12], "head_dim": [1, 4], "block": [3]}


class SoftmaxState(NamedTuple):
    """The online-softmax state of one query block over the key blocks seen so far."""
    m: object  # [Bq, 1] row max of the scores
    l: object  # [Bq, 1] row sum of exp(score - m)
    o: object  # [Bq, d] exp(score - m) @ V


def initial_state(rows: int, head_dim: int, dtype) -> SoftmaxState:
    """The identity of `combine`: no key seen yet."""
    return SoftmaxState(m=ft.full((rows, 1), float("-inf"), dtype),
                        l=ft.zeros((rows, 1), dtype),
                        o=ft.zeros((rows, head_dim), dtype))


def block_state(q, k, v) -> SoftmaxState:
    """The state of query block `q` [Bq, d] over one key/value block `k`, `v` [Bk, d]."""
    s = (q @ k.T) * float(1.0 / np.sqrt(q.shape[-1]))
    m = ft.max(s, axis=-1, keepdims=True)
    p = ft.exp(s - m)
    return SoftmaxState(m, ft.sum(p, axis=-1, keepdims=True), p @ v)


def combine(a: SoftmaxState, b: SoftmaxState) -> SoftmaxState:
    """Merge the states of two disjoint sets of keys (associative)."""
    m = ft.maximum(a.m, b.m)
    scale_a, scale_b = ft.exp(a.m - m), ft.exp(b.m - m)
    return SoftmaxState(m, scale_a * a.l + scale_b * b.l, scale_a * a.o + scale_b * b.o)


def attend_block(q, ks, vs):
    """One query block against all key/value blocks of its sequence."""
    init = initial_state(q.shape[0], q.shape[1], q.dtype)
    final = ft.reduce(lambda state, kv: combine(state, block_state(q, *kv)), ft.zip(ks, vs), init)
    return final.o / final.l


@ft.function
def model(q, k, v):
    """q, k, v: ft<ft<ft<[Bq, d]>>> (batch x heads x blocks) -> the same shape of outputs."""
    def head(qs, ks, vs):
        return ft.map(lambda qb: attend_block(qb, ks, vs), qs)

    return ft.map(lambda qh, kh, vh: ft.map(head, qh, kh, vh), q, k, v)


def lengths_for(config: dict, ragged: bool, seed: int) -> list[int]:
    """Per-sample numbers of blocks: all `length/block`, or random in [n/2, n] when ragged."""
    return ragged_lengths(config["length"] // config["block"], config["batch"], ragged, seed)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    heads, d, bq = cfg["heads"], cfg["head_dim"], cfg["block"]
    blocks = lengths_for(cfg, ragged, seed)
    rng = np.random.default_rng(seed)
    t = ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[ft.Tensor[(bq, d), dtype]]]]

    def blocked():  # one tensor per sample [heads, blocks, Bq, d] -> nested lists
        return ft.fractal([ft.from_numpy(rng.standard_normal((heads, nb, bq, d)).astype(dtype), depth=2)
                           for nb in blocks], type=t)

    return blocked(), blocked(), blocked()


def _padded(x):
    """[B, H, T, d] zero-padded to the longest sequence, and the per-sample lengths T_b."""
    a = x.to_numpy(pad_value=0.0)                               # [B, H, nb, Bq, d]
    b, h, nb, bq, d = a.shape
    lengths = np.array([len(s[0]) * bq for s in x])
    return a.reshape(b, h, nb * bq, d), lengths


def reference(q, k, v):
    """Plain NumPy over the padded batch: masked softmax(Q K^T / sqrt(d)) V."""
    (qa, lengths), (ka, _), (va, _) = _padded(q), _padded(k), _padded(v)
    s = qa @ ka.swapaxes(-1, -2) / np.sqrt(qa.shape[-1])        # [B, H, T, T]
    key_ok = np.arange(s.shape[-1])[None, :] < lengths[:, None]   # [B, T]
    s = np.where(key_ok[:, None, None, :], s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    out = (p / p.sum(axis=-1, keepdims=True)) @ va
    return [out[i, :, :n] for i, n in enumerate(lengths)]


def outputs(result):
    """Per sample, the query blocks joined into one `[heads, T, d]` array."""
    out = []
    for sample in result:
        a = sample.to_numpy()                                   # [H, nb, Bq, d]
        out.append(a.reshape(a.shape[0], -1, a.shape[-1]))
    return out


def torch_reference(q, k, v):
    """`torch.nn.functional.scaled_dot_product_attention` with a key-padding mask."""
    import torch

    (qa, lengths), (ka, _), (va, _) = _padded(q), _padded(k), _padded(v)
    mask = torch.from_numpy(np.arange(qa.shape[2])[None, :] < lengths[:, None])[:, None, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(qa), torch.from_numpy(ka), torch.from_numpy(va), attn_mask=mask).numpy()
    return [out[i, :, :n] for i, n in enumerate(lengths)]
