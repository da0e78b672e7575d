"""Transformer encoder block over a ragged batch: multi-head self-attention + FFN.

One block of a Transformer encoder (as `torch.nn.TransformerEncoderLayer`,
dropout 0, GELU in its tanh form), pre-norm or post-norm:

    pre-norm  (norm_first=True):  y = x + MHA(LN1(x));   out = y + FFN(LN2(y))
    post-norm (norm_first=False): y = LN1(x + MHA(x));   out = LN2(y + FFN(y))

    MHA(h)_t = bo + sum_heads (sum_j softmax_j(q_t . k_j / sqrt(dh)) v_j) @ Wo[head]
    FFN(y)   = gelu(y @ W1 + b1) @ W2 + b2

`norm_first` is a static Python bool argument (each value traces its own
program).  A token is a `[1, D]` tensor; a sample is a list of tokens of its
own length (no padding, no mask).  The combinator nest:

    map over the batch
      map over tokens                       LN1 (pre-norm)
      map over heads (zip of the per-head weights)
        map over tokens                     q, k, v projections of this head
        map over queries
          map over keys                     scores q . k
          reduce over keys (maximum)        the softmax's running max
          map over keys                     exp(score - max)
          reduce over keys (+)              the softmax's denominator
          reduce over zip(weights, values)  the weighted sum of the values
      map over tokens                       x + bo: the residual, initial state of ...
      reduce over heads                     ... state = the token list: residual + sum of heads
      map over tokens                       (LN1 if post-norm), residual + FFN, LN2

Attention is written per query token with its softmax over a *list* of scores
(max-reduce, exp-map, sum-reduce, weighted-sum reduce), because a ragged
sequence has no static length: `ft.stack` of the keys into a `[T, dh]` tensor
would need one.  The heads are a `map` over `zip(Wq, bq, Wk, bk, Wv, bv, Wo)`
(per-head weight lists); the heads' outputs are merged by a `reduce` whose
state is the block's residual stream (a list of tokens), so no concat is
needed: `concat(heads) @ Wo == sum_h head_h @ Wo[h]`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = ("transformer encoder block (batch map x head map x query map x key reduce), "
               "ragged sequences, pre/post-norm, tanh-GELU FFN")

CONFIGS = {
    "small": dict(batch=2, length=6, d_model=8, heads=2, ffn=16, norm_first=True),
    "small_post_norm": dict(batch=2, length=6, d_model=8, heads=2, ffn=16, norm_first=False),
    "cpu": dict(batch=8, length=128, d_model=256, heads=4, ffn=1024, norm_first=True),
    "paper": dict(batch=16, length=512, d_model=1024, heads=16, ffn=4096, norm_first=True),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {
    "batch": [1, 2], "length": [1, 2, 6], "d_model": [4, 8], "heads": [1, 2], "ffn": [4, 16],
    "norm_first": [True, False]
}


class BlockParams(NamedTuple):
    wq: ft.FractalTensor  # ft<[D, dh]>, one per head: query projection
    bq: ft.FractalTensor  # ft<[1, dh]>
    wk: ft.FractalTensor  # ft<[D, dh]>: key projection
    bk: ft.FractalTensor  # ft<[1, dh]>
    wv: ft.FractalTensor  # ft<[D, dh]>: value projection
    bv: ft.FractalTensor  # ft<[1, dh]>
    wo: ft.FractalTensor  # ft<[dh, D]>: this head's rows of the output projection
    bo: np.ndarray        # [1, D]
    ln1_w: np.ndarray     # [1, D]  layer norm before (pre-norm) or after (post-norm) attention
    ln1_b: np.ndarray
    ln2_w: np.ndarray     # [1, D]  layer norm of the FFN sub-block
    ln2_b: np.ndarray
    w1: np.ndarray        # [D, F]
    b1: np.ndarray        # [1, F]
    w2: np.ndarray        # [F, D]
    b2: np.ndarray        # [1, D]


def attend(q, kts, vs):
    """One query `[1, dh]` against the keys (as columns `[dh, 1]`) and values of its sequence."""
    dtype = q.dtype
    scores = ft.map(lambda kt: q @ kt, kts)                                 # ft<[1, 1]>
    top = ft.reduce(ft.maximum, scores, ft.full((1, 1), -math.inf, dtype))
    weights = ft.map(lambda s: ft.exp(s - top), scores)                     # unnormalised softmax
    total = ft.reduce(lambda acc, w: acc + w, weights, ft.zeros((1, 1), dtype))
    ctx = ft.reduce(lambda acc, wv: acc + wv[0] * wv[1], ft.zip(weights, vs), ft.zeros(q.shape, dtype))
    return ctx / total


def attention_head(hs, head):
    """One head over a sequence: its tokens' contributions `[1, D]` to the attention output."""
    wq, bq, wk, bk, wv, bv, wo = head
    scale = 1.0 / math.sqrt(wq.shape[1])
    qs = ft.map(lambda h: (h @ wq + bq) * scale, hs)
    kts = ft.map(lambda h: (h @ wk + bk).T, hs)
    vs = ft.map(lambda h: h @ wv + bv, hs)
    return ft.map(lambda q: attend(q, kts, vs) @ wo, qs)


def feed_forward(y, p: BlockParams):
    return ft.gelu(y @ p.w1 + p.b1) @ p.w2 + p.b2


@ft.function
def model(batch, p: BlockParams, norm_first=True):
    heads = ft.zip(p.wq, p.bq, p.wk, p.bk, p.wv, p.bv, p.wo)

    def ln1(x):
        return ft.layer_norm(x, p.ln1_w, p.ln1_b)

    def ln2(x):
        return ft.layer_norm(x, p.ln2_w, p.ln2_b)

    def block(xs):
        hs = ft.map(ln1, xs) if norm_first else xs
        per_head = ft.map(lambda head: attention_head(hs, head), heads)      # heads x tokens
        ys = ft.reduce(lambda acc, out: ft.map(lambda a, o: a + o, acc, out),  # residual + sum of heads
                       per_head, ft.map(lambda x: x + p.bo, xs))
        if norm_first:
            return ft.map(lambda y: y + feed_forward(ln2(y), p), ys)
        return ft.map(lambda y: ln2(y + feed_forward(y, p)), ft.map(ln1, ys))

    return ft.map(block, batch)


# -- inputs ---------------------------------------------------------------------------------


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, nh, f = cfg["d_model"], cfg["heads"], cfg["ffn"]
    dh = d // nh
    rng = np.random.default_rng(seed)
    lengths = lengths_for(cfg, ragged, seed)
    x = rng.standard_normal((sum(lengths), 1, d)).astype(dtype)
    seqs = [list(x[k - n:k]) for n, k in zip(lengths, np.cumsum(lengths))]

    def uniform(fan_in, *shape):
        s = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-s, s, shape).astype(dtype)

    def per_head(fan_in, *shape):
        return ft.from_numpy(uniform(fan_in, nh, *shape))

    def near(value, dim):  # layer-norm scale / shift: value + small noise
        return (value + 0.1 * rng.standard_normal((1, dim))).astype(dtype)

    params = BlockParams(
        wq=per_head(d, d, dh), bq=per_head(d, 1, dh),
        wk=per_head(d, d, dh), bk=per_head(d, 1, dh),
        wv=per_head(d, d, dh), bv=per_head(d, 1, dh),
        wo=per_head(d, dh, d), bo=uniform(d, 1, d),
        ln1_w=near(1.0, d), ln1_b=near(0.0, d), ln2_w=near(1.0, d), ln2_b=near(0.0, d),
        w1=uniform(d, d, f), b1=uniform(d, 1, f), w2=uniform(f, f, d), b2=uniform(f, 1, d))
    batch = ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, d), dtype]]])
    return batch, params, bool(cfg["norm_first"])


# -- references -----------------------------------------------------------------------------

def _merged(p: BlockParams):
    """Full `[D, D]` projections (heads side by side in the columns) and `[1, D]` biases."""
    def cols(w):  # [H, a, dh] -> [a, H*dh]
        w = w.to_numpy()
        return w.transpose(1, 0, 2).reshape(w.shape[1], -1)
    wo = p.wo.to_numpy()
    return (cols(p.wq), cols(p.bq), cols(p.wk), cols(p.bk), cols(p.wv), cols(p.bv),
            wo.reshape(-1, wo.shape[-1]))


def _layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference(batch, p: BlockParams, norm_first=True):
    """NumPy, vectorised over the batch: pad to the longest sequence, mask padded keys."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                      # [B, T, D]
    nb, t, d = x.shape
    nh = len(p.wq)
    dh = d // nh
    key_ok = (np.arange(t)[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, T]
    wq, bq, wk, bk, wv, bv, wo = _merged(p)
    x = x.reshape(nb * t, d)  # token rows: 2-D matmuls are BLAS calls (3-D @ 2-D is much slower)

    def heads(a):  # [B*T, D] -> [B, H, T, dh]
        return a.reshape(nb, t, nh, dh).transpose(0, 2, 1, 3)

    def mha(h):
        q, k, v = heads(h @ wq + bq), heads(h @ wk + bk), heads(h @ wv + bv)
        s = np.where(key_ok, np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(dh), -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("bhqk,bhkd->bqhd", a, v).reshape(nb * t, d)
        return o @ wo + p.bo

    def ffn(y):
        return _gelu_tanh(y @ p.w1 + p.b1) @ p.w2 + p.b2

    if norm_first:
        y = x + mha(_layer_norm(x, p.ln1_w, p.ln1_b))
        out = y + ffn(_layer_norm(y, p.ln2_w, p.ln2_b))
    else:
        y = _layer_norm(x + mha(x), p.ln1_w, p.ln1_b)
        out = _layer_norm(y + ffn(y), p.ln2_w, p.ln2_b)
    out = out.reshape(nb, t, d)
    return [out[i, :n] for i, n in enumerate(lengths)]


def outputs(result):
    return [seq.to_numpy()[:, 0, :] for seq in result]


def torch_layer(p: BlockParams, d: int, dtype, norm_first=True):
    """`torch.nn.TransformerEncoderLayer` (tanh GELU, dropout 0, eval mode) holding `p`."""
    import torch
    import torch.nn.functional as F

    nh, ffn_dim = len(p.wq), p.w1.shape[1]
    layer = torch.nn.TransformerEncoderLayer(
        d, nh, ffn_dim, dropout=0.0, activation=lambda v: F.gelu(v, approximate="tanh"),
        layer_norm_eps=1e-5, batch_first=True, norm_first=norm_first, dtype=dtype)
    wq, bq, wk, bk, wv, bv, wo = _merged(p)

    def tt(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(tt(np.concatenate([wq, wk, wv], axis=1).T))
        layer.self_attn.in_proj_bias.copy_(tt(np.concatenate([bq, bk, bv], axis=1)[0]))
        layer.self_attn.out_proj.weight.copy_(tt(wo.T))
        layer.self_attn.out_proj.bias.copy_(tt(p.bo[0]))
        for mod, w, b in ((layer.linear1, p.w1.T, p.b1[0]), (layer.linear2, p.w2.T, p.b2[0]),
                          (layer.norm1, p.ln1_w[0], p.ln1_b[0]), (layer.norm2, p.ln2_w[0], p.ln2_b[0])):
            mod.weight.copy_(tt(w))
            mod.bias.copy_(tt(b))
    return layer.eval()


def torch_reference(batch, p: BlockParams, norm_first=True):
    """`torch.nn.TransformerEncoderLayer` (tanh GELU, dropout 0) on each sample separately."""
    import torch

    dtype = torch.float64 if batch.type.leaf.dtype == np.float64 else torch.float32
    layer = torch_layer(p, batch.type.leaf.shape[-1], dtype, norm_first)
    with torch.no_grad():
        return [layer(torch.from_numpy(np.ascontiguousarray(seq.to_numpy()[:, 0, :]))[None])[0].numpy()
                for seq in batch]
