"""PyTorch peers of the attention, GEMM and convolution zoo models (imported by `torch_peers`).

Library kernels: `F.scaled_dot_product_attention` with a padding / band / block mask,
`nn.TransformerEncoderLayer`, `F.conv2d`, `torch.matmul`.  Hand-written eager code: the
online-softmax loop over key blocks (FlashAttention), the gather-based blocked attention
(BigBird: `index_select` of each query block's window and global key blocks, then batched
matmuls), and the parallel form of retention.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.peers import Prepared
from benchmarks.peers.torch_rnn import tensor


def crop_heads(lengths):
    """Padded [B, heads, T, d] -> per-sample [heads, T_b, d] arrays."""
    return lambda y: [y[i, :, :n].cpu().numpy() for i, n in enumerate(lengths)]


# -- back-to-back GEMM ----------------------------------------------------------------------

def b2b_matmul(module, args) -> Prepared:
    """`torch.matmul` twice on the dense operands (assembled outside the timing)."""
    a, b, c = (tensor(x) for x in module._dense(*args))

    def run():
        with torch.no_grad():
            return (a @ b) @ c
    return Prepared(run, lambda d: d.cpu().numpy())


# -- FlashAttention -------------------------------------------------------------------------

def _per_sample(x):
    """Per sample, its blocks joined into one [heads, T, d] tensor (no padding)."""
    out = []
    for sample in x:
        a = sample.to_numpy()                                               # [heads, blocks, Bq, d]
        out.append(tensor(a.reshape(a.shape[0], -1, a.shape[-1])))
    return out


def flash_sdpa(module, args) -> Prepared:
    """`scaled_dot_product_attention` on the padded batch with a key-padding mask."""
    (qa, lengths), (ka, _), (va, _) = (module._padded(x) for x in args)
    q, k, v = tensor(qa), tensor(ka), tensor(va)
    mask = tensor(np.arange(qa.shape[2])[None, :] < lengths[:, None])[:, None, None, :]

    def run():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return Prepared(run, crop_heads(lengths))


def flash_online_softmax(module, args) -> Prepared:
    """Eager online softmax: per sample (no padding), a loop over the key blocks, each step
    updating the running max, sum and output of all heads and queries at once."""
    block = args[0].type.leaf.shape[0]
    q, k, v = (_per_sample(x) for x in args)
    scale = float(1.0 / np.sqrt(q[0].shape[-1]))

    def attend(qs, ks, vs):
        m = torch.full((*qs.shape[:2], 1), float("-inf"))
        l = torch.zeros_like(m)
        o = torch.zeros_like(qs)
        for j in range(0, ks.shape[1], block):
            s = (qs @ ks[:, j:j + block].transpose(1, 2)) * scale
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p, r = torch.exp(s - m_new), torch.exp(m - m_new)
            l, o, m = r * l + p.sum(-1, keepdim=True), r * o + p @ vs[:, j:j + block], m_new
        return o / l

    def run():
        with torch.no_grad():
            return [attend(*qkv) for qkv in zip(q, k, v)]
    return Prepared(run, lambda out: [y.cpu().numpy() for y in out])


# -- BigBird --------------------------------------------------------------------------------

def bigbird_gather(module, args) -> Prepared:
    """Gather-based blocked attention: `index_select` the five key/value blocks of every query
    block (window i-1, i, i+1 mod n, globals 0 and n-1) from the padded batch, then batched
    matmuls and a softmax over the 5*Bs keys."""
    qa, ka, va = (x.to_numpy(pad_value=0.0) for x in args)                  # [B, N, Bs, H]
    nb, n_max, bs, h = qa.shape
    blocks = [len(s) for s in args[0]]
    idx = np.zeros((nb, n_max, module.WINDOW + 2), np.int64)
    for b, n in enumerate(blocks):
        i = np.where(np.arange(n_max) < n, np.arange(n_max), 0)            # padded query blocks: any
        idx[b] = b * n_max + np.stack([(i - 1) % n, i, (i + 1) % n, 0 * i, 0 * i + n - 1], axis=-1)
    index = tensor(idx.reshape(-1))
    q, k, v = (tensor(x.reshape(nb * n_max, bs, h)) for x in (qa, ka, va))
    scale = float(1.0 / np.sqrt(h))

    def run():
        with torch.no_grad():
            keys = k.index_select(0, index).reshape(nb * n_max, -1, h)     # [B*N, 5*Bs, H]
            values = v.index_select(0, index).reshape(nb * n_max, -1, h)
            p = torch.softmax(torch.bmm(q, keys.transpose(1, 2)) * scale, dim=-1)
            return torch.bmm(p, values).reshape(nb, n_max * bs, h)
    return Prepared(run, lambda y: [y[b, :n * bs].cpu().numpy() for b, n in enumerate(blocks)])


def bigbird_sdpa(module, args) -> Prepared:
    """`scaled_dot_product_attention`, dense, with the block pattern as an additive [T, T] mask."""
    (qa, ka, va), lengths, bias = module._dense(*args)
    bs = qa.shape[1] // bias.shape[-1]
    mask = tensor(np.repeat(np.repeat(bias, bs, axis=1), bs, axis=2))       # [B, T, T]
    q, k, v = tensor(qa), tensor(ka), tensor(va)

    def run():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return Prepared(run, lambda y: [y[i, :n].cpu().numpy() for i, n in enumerate(lengths)])


# -- transformer block, sliding-window attention, retention, conv2d --------------------------

def _block_input(batch):
    lengths = np.array(batch.lengths())
    x = tensor(batch.to_numpy(pad_value=0.0)[:, :, 0, :])                   # [B, T, D]
    return x, lengths, tensor(np.arange(x.shape[1])[None, :] < lengths[:, None])  # [B, T] valid


def transformer_layer(module, args) -> Prepared:
    """`nn.TransformerEncoderLayer` (tanh GELU, dropout 0) on the padded batch with a key-padding mask."""
    batch, p, norm_first = args
    x, lengths, valid = _block_input(batch)
    layer = module.torch_layer(p, x.shape[-1], x.dtype, norm_first)
    padding = ~valid

    def run():
        with torch.no_grad():
            return layer(x, src_key_padding_mask=padding)
    return Prepared(run, lambda y: [y[i, :n].cpu().numpy() for i, n in enumerate(lengths)])


def transformer_eager_sdpa(module, args) -> Prepared:
    """The block written out: fused QKV projection, `scaled_dot_product_attention` with a
    key-padding mask, output projection, layer norms and the tanh-GELU FFN."""
    batch, p, norm_first = args
    x, lengths, valid = _block_input(batch)
    nb, t, d = x.shape
    nh = len(p.wq)
    wq, bq, wk, bk, wv, bv, wo = module._merged(p)
    w_qkv, b_qkv = tensor(np.concatenate([wq, wk, wv], axis=1)), tensor(np.concatenate([bq, bk, bv], axis=1))
    wo, bo, w1, b1, w2, b2 = (tensor(a) for a in (wo, p.bo, p.w1, p.b1, p.w2, p.b2))
    ln1, ln2 = (tensor(p.ln1_w[0]), tensor(p.ln1_b[0])), (tensor(p.ln2_w[0]), tensor(p.ln2_b[0]))
    mask = valid[:, None, None, :]

    def mha(h):
        qkv = (h @ w_qkv + b_qkv).reshape(nb, t, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        return o.transpose(1, 2).reshape(nb * t, d) @ wo + bo

    def ffn(y):
        return F.gelu(y @ w1 + b1, approximate="tanh") @ w2 + b2

    def norm(y, wb):
        return F.layer_norm(y, (d,), *wb, eps=1e-5)

    def run():
        with torch.no_grad():
            h = x.reshape(nb * t, d)
            if norm_first:
                y = h + mha(norm(h, ln1))
                out = y + ffn(norm(y, ln2))
            else:
                y = norm(h + mha(h), ln1)
                out = norm(y + ffn(y), ln2)
            return out.reshape(nb, t, d)
    return Prepared(run, lambda y: [y[i, :n].cpu().numpy() for i, n in enumerate(lengths)])


def sliding_window_sdpa(module, args) -> Prepared:
    """`scaled_dot_product_attention` on the padded batch with the band (+ padding) mask."""
    *qkv, window = args
    (qa, lengths), (ka, _), (va, _) = (module._padded(x) for x in qkv)
    mask = tensor(module.band_mask(lengths, qa.shape[2], window))[:, None]  # [B, 1, T, T]
    q, k, v = tensor(qa), tensor(ka), tensor(va)

    def run():
        with torch.no_grad():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return Prepared(run, crop_heads(lengths))


def retention_parallel(module, args) -> Prepared:
    """The parallel form in eager PyTorch on the padded batch: (Q K^T * decay mask) V, the decay
    mask (causal, per head, zero past each sample's end) built once outside the timing."""
    batch, p = args
    lengths = np.array(batch.lengths())
    x = tensor(batch.to_numpy(pad_value=0.0)[:, :, 0, :])                   # [B, T, D]
    wq, wk, wv, gamma = (a.to_numpy() for a in p)
    t = np.arange(x.shape[1])
    diff = t[:, None] - t[None, :]
    decay = np.where(diff >= 0, gamma[:, None, None] ** np.maximum(diff, 0), 0.0)
    decay = tensor((decay[None] * (t[None, :] < lengths[:, None])[:, None, None, :]).astype(wq.dtype))
    wq, wk, wv = tensor(wq), tensor((wk / np.sqrt(wk.shape[-1])).astype(wk.dtype)), tensor(wv)

    def run():
        with torch.no_grad():
            q, k, v = (torch.einsum("btd,hde->bhte", x, w) for w in (wq, wk, wv))
            return ((q @ k.transpose(-1, -2)) * decay) @ v
    return Prepared(run, crop_heads(lengths))


def conv2d_per_image(module, args) -> Prepared:
    """`F.conv2d` on each image (they have different sizes), then `F.batch_norm(training=True)`
    over every output pixel of the batch."""
    images, weight, bn, conv = args
    w = tensor(weight.transpose(3, 2, 0, 1))                                # OIHW
    xs = [tensor(img.to_numpy()[:, :, 0, :].transpose(2, 0, 1))[None] for img in images]
    gamma, beta = tensor(bn.gamma[0]), tensor(bn.beta[0])

    def run():
        with torch.no_grad():
            ys = [F.conv2d(x, w, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)[0]
                  .permute(1, 2, 0) for x in xs]                            # [Ho, Wo, C_out]
            flat = torch.cat([y.reshape(-1, y.shape[-1]) for y in ys])
            normed = F.batch_norm(flat, None, None, gamma, beta, training=True, eps=module.EPS)
            return normed, [y.shape for y in ys]

    def to_reference(out):
        normed, shapes = out
        sizes = [s[0] * s[1] for s in shapes]
        return [part.reshape(s).cpu().numpy() for part, s in zip(torch.split(normed, sizes), shapes)]
    return Prepared(run, to_reference)


def graphsage_index_add(module, args) -> Prepared:
    """GraphSAGE's mean aggregation as a PyTorch user writes it: the neighbour rows gathered
    through the flattened table and `index_add_`-ed into their nodes (the tables built once)."""
    h, nbrs, layers = args
    flat, (offsets,) = nbrs.compact()
    deg = np.diff(offsets)
    owner = tensor(np.repeat(np.arange(len(deg)), deg))
    index = tensor(np.asarray(flat, np.int64).reshape(-1).copy())
    x0 = tensor(h.to_numpy()[:, 0, :])
    scale = tensor((1.0 / np.maximum(deg, 1))[:, None].astype(x0.cpu().numpy().dtype))
    weights = [(tensor(p.w_self), tensor(p.w_neigh), tensor(p.bias)) for p in layers]

    def run():
        x = x0
        with torch.no_grad():
            for k, (ws, wn, b) in enumerate(weights):
                mean = torch.zeros_like(x).index_add_(0, owner, x[index]) * scale
                y = x @ ws + mean @ wn + b
                x = y if k == len(weights) - 1 else torch.relu(y)
        return x
    return Prepared(run, lambda out: out.cpu().numpy())
