"""BigBird-style block-sparse attention: sliding window blocks plus global blocks.

Each sample's queries, keys and values are blocked along the sequence into
`[Bs, H]` tiles: `q, k, v: ft<ft<[Bs, H]>>` = batch x blocks.  Samples may
have different numbers of blocks (ragged), without padding.  Query block `i`
of a sample with `n` blocks attends to five key/value blocks:

    window:  i-1, i, i+1   (circular: modulo n)    via ft.shifted_window(ft.zip(ks, vs), size=3)
    global:  0 and n-1     (the first and the last block)

with one softmax over the concatenation of the window and global scores
(`[Bs, 5*Bs]`, scaled by 1/sqrt(H)).  The program is `map` (batch) x `map`
(query blocks, zipped with their windows); the window's key and value blocks
are read through the access operator rather than copied per query block.

**Duplicate blocks are counted with multiplicity.**  The five blocks form a
multiset: when a window block is also a global block — the first query
block's left neighbour is block n-1, and its own block is block 0; the last
query block's right neighbour is block 0 — it appears twice in the
concatenation and its keys take part in the softmax twice.  (Likewise for
samples with fewer than three blocks, whose circular window repeats blocks.)
This is what the fused blocked computation does without special-casing the
boundary blocks; it equals dense attention whose score for a key in block j
is biased by log(multiplicity of j), which is how `reference` computes it.

As in the FractalTensor example, heads, random blocks and global *queries*
(BigBird's first and last query blocks attending to everything) are left out.
"""

from __future__ import annotations

import numpy as np

import fractal as ft
from examples.zoo import ragged_lengths

DESCRIPTION = "BigBird block-sparse attention (batch map x query-block map over circular windows + global blocks)"

CONFIGS = {
    "small": dict(batch=2, length=24, hidden=6, block=4),
    "cpu": dict(batch=4, length=4096, hidden=512, block=64),
    "paper": dict(batch=16, length=4096, hidden=512, block=32),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"batch": [1, 2], "length": [24], "hidden": [1, 6], "block": [4]}

WINDOW = 3  # neighbour blocks per query block: i-1, i, i+1


@ft.function
def model(q, k, v):
    """q, k, v: ft<ft<[Bs, H]>> (batch x blocks) -> ft<ft<[Bs, H]>>."""
    bs, hidden = q.type.elem.elem.shape
    scale = float(1.0 / np.sqrt(hidden))

    def blocks_of(window, j):
        """Component j (0: keys, 1: values) of the window's blocks, stacked into [WINDOW*Bs, H]."""
        return ft.reshape(ft.stack(ft.map(lambda kv: kv[j], window), length=WINDOW), (WINDOW * bs, hidden))

    def sample(qs, ks, vs):
        windows = ft.shifted_window(ft.zip(ks, vs), size=WINDOW)   # windows[i] = blocks i-1, i, i+1
        global_k = ft.concat([ks[0], ks[-1]])                      # [2*Bs, H]
        global_v = ft.concat([vs[0], vs[-1]])

        def query_block(qb, window):
            keys = ft.concat([blocks_of(window, 0), global_k])     # [5*Bs, H]
            values = ft.concat([blocks_of(window, 1), global_v])
            p = ft.softmax((qb @ keys.T) * scale, axis=-1)          # [Bs, 5*Bs]
            return p @ values

        return ft.map(query_block, qs, windows)

    return ft.map(sample, q, k, v)


def blocks_for(config: dict, ragged: bool, seed: int) -> list[int]:
    """Per-sample numbers of blocks: all `length/block`, or random in [n/2, n] when ragged."""
    return ragged_lengths(config["length"] // config["block"], config["batch"], ragged, seed)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    bs, h = cfg["block"], cfg["hidden"]
    blocks = blocks_for(cfg, ragged, seed)
    rng = np.random.default_rng(seed)
    t = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(bs, h), dtype]]]

    def blocked():
        return ft.fractal([ft.from_numpy(rng.standard_normal((n, bs, h)).astype(dtype)) for n in blocks], type=t)

    return blocked(), blocked(), blocked()


def block_multiplicity(blocks: np.ndarray, n_max: int) -> np.ndarray:
    """counts[b, i, j]: how often key block j occurs among query block i's five attended blocks
    (window i-1, i, i+1 modulo n_b, plus blocks 0 and n_b-1) in sample b; 0 for padding."""
    n = blocks[:, None]                                         # [B, 1]
    i = np.arange(n_max)[None, :]                               # [1, N]
    j = np.arange(n_max)[None, None, :]                         # [1, 1, N]
    counts = np.zeros((len(blocks), n_max, n_max), dtype=np.int64)
    for offset in range(-(WINDOW // 2), WINDOW // 2 + 1):
        counts += j == ((i + offset) % n)[:, :, None]
    counts += j == 0                                            # global: the first block
    counts += j == (n - 1)[:, :, None]                          # ... and the last one
    return counts * (i < n)[:, :, None]                         # padded query blocks attend nothing


def _dense(q, k, v):
    """Padded [B, T, H] arrays, the per-sample lengths T_b, and the [B, N, N] block-level
    score bias log(multiplicity) (-inf where a key block is not attended; 0 on the rows of
    padded query blocks, whose outputs are dropped)."""
    qa, ka, va = (x.to_numpy(pad_value=0.0) for x in (q, k, v))  # [B, N, Bs, H]
    b, n_max, bs, h = qa.shape
    blocks = np.array([len(s) for s in q])
    counts = block_multiplicity(blocks, n_max)
    bias = np.where(counts > 0, np.log(np.maximum(counts, 1)), -np.inf)
    bias = np.where(counts.any(axis=-1, keepdims=True), bias, 0.0).astype(qa.dtype)
    return tuple(x.reshape(b, n_max * bs, h) for x in (qa, ka, va)), blocks * bs, bias


def reference(q, k, v):
    """Plain NumPy over the padded batch: dense attention plus the block-sparse pattern as a
    score bias (see `_dense`), broadcast over the tokens of each block pair."""
    (qa, ka, va), lengths, bias = _dense(q, k, v)
    b, t, h = qa.shape
    n = bias.shape[-1]
    s = (qa @ ka.swapaxes(1, 2) / np.sqrt(h)).reshape(b, n, t // n, n, t // n)
    s = (s + bias[:, :, None, :, None]).reshape(b, t, t)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    out = (p / p.sum(axis=-1, keepdims=True)) @ va
    return [out[i, :length] for i, length in enumerate(lengths)]


def outputs(result):
    """Per sample, the query blocks joined into one `[T, H]` array."""
    return [sample.to_numpy().reshape(-1, sample.type.elem.shape[-1]) for sample in result]


def torch_reference(q, k, v):
    """`torch.nn.functional.scaled_dot_product_attention` with the pattern as an additive mask."""
    import torch

    (qa, ka, va), lengths, bias = _dense(q, k, v)
    bs = qa.shape[1] // bias.shape[-1]
    mask = np.repeat(np.repeat(bias, bs, axis=1), bs, axis=2)  # [B, T, T]
    out = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(x) for x in (qa, ka, va)), attn_mask=torch.from_numpy(mask)).numpy()
    return [out[i, :length] for i, length in enumerate(lengths)]
