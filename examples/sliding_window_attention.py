"""Sliding-window (local) multi-head attention, Longformer / Mistral style.

Every query token `i` attends to the keys at positions `i - w//2 .. i + w//2`
that exist (a window of odd width `w` centred on it), with one softmax over
those keys, scaled by 1/sqrt(d):

    out[i] = softmax_j(q[i] . k[j] / sqrt(d) for |i - j| <= w//2, 0 <= j < n) @ v[j]

Tokens are `[d]` vectors: `q, k, v: ft<ft<ft<[d]>>>` = batch x heads x
tokens.  Sequences may have different lengths (ragged), without padding of
the batch.  The program is `map` (batch) x `map` (heads) x `map` (query
tokens), and the neighbourhoods are access operators, not copies:

    ft.window(ks, w, padding=w//2)            k_win[i] = keys i-w//2 .. i+w//2 (zero pad elements)
    ft.window(vs, w, padding=w//2)            likewise for the values
    ft.window(key_bias, w, padding=w//2, pad_value=-inf)

`key_bias` is a 0 for every real key, so the window over it is the additive
score mask: 0 for real keys, -inf for the positions that fall off either end
of the sequence (their zero key/value pad elements then get weight 0).  With
`w` odd there is exactly one window per query token.  `w` is a static
(Python int) argument of the program.
"""

from __future__ import annotations

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = "sliding-window local attention (batch map x head map x query map over ft.window neighbourhoods)"

CONFIGS = {
    "small": dict(batch=2, heads=2, length=8, head_dim=4, window=5),
    "cpu": dict(batch=2, heads=4, length=1024, head_dim=64, window=129),
    # Longformer-base: 12 heads of 64, sequence 4096, attention window 512 (256 each side)
    "paper": dict(batch=4, heads=12, length=4096, head_dim=64, window=513),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"batch": [1, 2], "heads": [1, 2], "length": [1, 2, 8], "head_dim": [1, 4], "window": [1, 3, 5]}


@ft.function
def model(q, k, v, window: int):
    """q, k, v: ft<ft<ft<[d]>>> (batch x heads x tokens); window: odd width -> ft<ft<ft<[d]>>>."""
    if window % 2 == 0:
        raise ValueError(f"the window width must be odd (centred on each query), got {window}")
    half = window // 2
    d = q.type.elem.elem.elem.shape[0]
    dtype = q.type.elem.elem.elem.dtype
    scale = float(1.0 / np.sqrt(d))

    def head(qs, ks, vs):
        key_bias = ft.map(lambda key: ft.zeros((), dtype), ks)          # 0 for every real key
        k_win = ft.window(ks, window, padding=half)                     # k_win[i]: keys i-half .. i+half
        v_win = ft.window(vs, window, padding=half)
        mask_win = ft.window(key_bias, window, padding=half, pad_value=float("-inf"))

        def query(qi, keys, values, mask):
            scores = (ft.stack(keys, length=window) @ qi) * scale + ft.stack(mask, length=window)  # [w]
            return ft.softmax(scores, axis=-1) @ ft.stack(values, length=window)                 # [d]

        return ft.map(query, qs, k_win, v_win, mask_win)

    return ft.map(lambda qh, kh, vh: ft.map(head, qh, kh, vh), q, k, v)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    heads, d = cfg["heads"], cfg["head_dim"]
    lengths = lengths_for(cfg, ragged, seed)
    rng = np.random.default_rng(seed)
    t = ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[ft.Tensor[(d,), dtype]]]]

    def tokens():  # per sample [heads, n, d] -> heads x tokens lists
        return ft.fractal([ft.from_numpy(rng.standard_normal((heads, n, d)).astype(dtype), depth=2)
                           for n in lengths], type=t)

    return tokens(), tokens(), tokens(), int(cfg["window"])


def _padded(x):
    """[B, H, T, d] zero-padded to the longest sequence, and the per-sample lengths."""
    return x.to_numpy(pad_value=0.0), np.array([len(s[0]) for s in x])


def band_mask(lengths: np.ndarray, t: int, window: int) -> np.ndarray:
    """[B, T, T]: key j is visible to query i when |i - j| <= window//2 and j < length.
    Padded query rows (i >= length) see every key, to keep their (dropped) softmax finite."""
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    band = np.abs(i - j) <= window // 2
    key_ok = j[None] < lengths[:, None, None]
    query_pad = i[None] >= lengths[:, None, None]
    return (band[None] & key_ok) | query_pad


def reference(q, k, v, window):
    """Plain NumPy over the padded batch: dense attention with a band mask."""
    (qa, lengths), (ka, _), (va, _) = _padded(q), _padded(k), _padded(v)
    mask = band_mask(lengths, qa.shape[2], window)[:, None]    # [B, 1, T, T]
    s = np.where(mask, qa @ ka.swapaxes(-1, -2) / np.sqrt(qa.shape[-1]), -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    out = (p / p.sum(axis=-1, keepdims=True)) @ va
    return [out[i, :, :n] for i, n in enumerate(lengths)]


def outputs(result):
    """Per sample, a `[heads, T, d]` array."""
    return [sample.to_numpy() for sample in result]


def torch_reference(q, k, v, window):
    """`torch.nn.functional.scaled_dot_product_attention` with the band mask."""
    import torch

    (qa, lengths), (ka, _), (va, _) = _padded(q), _padded(k), _padded(v)
    mask = torch.from_numpy(band_mask(lengths, qa.shape[2], window))[:, None]
    out = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(qa), torch.from_numpy(ka), torch.from_numpy(va), attn_mask=mask).numpy()
    return [out[i, :, :n] for i, n in enumerate(lengths)]
