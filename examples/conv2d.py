"""2-D convolution by nested windows, then batch normalisation (training form).

An image is a FractalTensor of rows, a row a list of pixels `[1, C_in]`; a
batch is a list of images, which may have different sizes (ragged: images of
their own height and width).  The convolution (no bias: batch norm removes
it) is written with the access operators that define it:

    rows    = the image's rows with `padding` zero rows joined on either end
    for each window of K rows (ft.window over rows, stride, dilation):
        cols   = map over the K rows zipped: concat of the K pixels -> [1, K*C_in]
        for each window of K such columns (ft.window over columns, stride, dilation,
                                           zero padding):
            out = reduce over zip(window, taps) of  acc + col @ taps[kw]

where `taps[kw]` is `W[:, kw]` reshaped to `[K*C_in, C_out]` (rows in
`(kh, c_in)` order), so `col @ taps[kw] == sum_kh pixel[kh] @ W[kh, kw]` and
the reduce sums the K x K window.  Batch norm uses the statistics of this batch
(training form, as `torch.nn.functional.batch_norm(training=True)`): the mean
and the biased variance per output channel over every output pixel of every
image, reached by `ft.flatten` twice (images x rows x pixels -> pixels) and a
`reduce`; then `gamma * (y - mean) / sqrt(var + eps) + beta` per pixel.

The combinator nest:

    map over images
      map over row windows  (window over the zero-row-padded rows)
        map over columns    (the K rows zipped; concat of K pixels)
        map over column windows (window over the columns, zero padded)
          reduce over zip(column window, taps)   the K x K sum
    reduce over all output pixels (flatten of flatten)   mean, then variance
    map over images x rows x pixels                      normalise

`ft.window`'s own `padding` needs tensor elements, so the rows (lists) are
padded by `ft.join` with `ft.repeat` of a zero row; the columns (tensors) use
`ft.window(..., padding=p)`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft

DESCRIPTION = ("2-D convolution by nested ft.window (rows, then columns) + training-form batch norm, "
               "batch of images of different sizes")

CONFIGS = {
    "small": dict(batch=2, size=8, c_in=2, c_out=3, kernel=3, stride=1, padding=1, dilation=1),
    "small_strided": dict(batch=2, size=8, c_in=2, c_out=3, kernel=3, stride=2, padding=2, dilation=2),
    "cpu": dict(batch=32, size=32, c_in=32, c_out=64, kernel=3, stride=1, padding=1, dilation=1),
    "paper": dict(batch=32, size=56, c_in=64, c_out=64, kernel=3, stride=1, padding=1, dilation=1),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {
    "batch": [1, 2], "size": [3, 5, 8], "c_in": [1, 2], "c_out": [1, 3], "kernel": [3],
    "stride": [1, 2], "padding": [1], "dilation": [1]
}

EPS = 1e-5


class BatchNorm(NamedTuple):
    gamma: np.ndarray  # [1, C_out]
    beta: np.ndarray   # [1, C_out]


class Conv(NamedTuple):
    """Static geometry: Python ints, so each value traces its own program."""
    stride: int
    padding: int
    dilation: int


def pad_rows(rows, padding):
    """`padding` rows of zero pixels joined before and after the image's rows."""
    if padding == 0:
        return rows
    zero_row = ft.map(lambda px: ft.zeros(px.shape, px.dtype), rows[0])
    zeros = ft.repeat(zero_row, padding)
    return ft.join(ft.join(zeros, rows), zeros)


def kernel_taps(weight):
    """`[K, K, C_in, C_out]` (kh, kw, c_in, c_out) -> K taps, one per kw: `[K*C_in, C_out]`."""
    k, _, c_in, c_out = weight.shape
    return ft.slices(ft.reshape(ft.transpose(weight, (1, 0, 2, 3)), (k, k * c_in, c_out)))


def conv2d(rows, taps, conv: Conv):
    """One image (rows of `[1, C_in]` pixels) convolved with the K kernel taps of `kernel_taps`."""
    k = len(taps)
    zero = ft.zeros((1, taps.type.elem.shape[1]), taps.type.elem.dtype)

    def pixel(window):  # K columns [1, K*C_in] -> one output pixel [1, C_out]
        return ft.reduce(lambda acc, ct: acc + ct[0] @ ct[1], ft.zip(window, taps), zero)

    def output_row(row_window):  # K input rows -> one output row
        cols = ft.map(lambda *px: ft.concat(px, axis=1), *(row_window[kh] for kh in range(k)))
        col_windows = ft.window(cols, k, stride=conv.stride, dilation=conv.dilation, padding=conv.padding)
        return ft.map(pixel, col_windows)

    row_windows = ft.window(pad_rows(rows, conv.padding), k, stride=conv.stride, dilation=conv.dilation)
    return ft.map(output_row, row_windows)


def batch_norm(images, bn: BatchNorm):
    """Training-form batch norm: statistics over every pixel of every image in the batch."""
    pixels = ft.flatten(ft.flatten(images))  # images x rows x pixels -> pixels
    dtype = bn.gamma.dtype
    zero = ft.zeros(bn.gamma.shape, dtype)
    count = ft.length(pixels).astype(dtype)
    mean = ft.reduce(lambda acc, y: acc + y, pixels, zero) / count
    var = ft.reduce(lambda acc, y: acc + (y - mean) ** 2, pixels, zero) / count
    scale = bn.gamma / ft.sqrt(var + EPS)
    shift = bn.beta - mean * scale
    return ft.map(lambda rows: ft.map(lambda row: ft.map(lambda y: y * scale + shift, row), rows), images)


@ft.function
def model(images, weight, bn: BatchNorm, conv: Conv):
    taps = kernel_taps(weight)
    return batch_norm(ft.map(lambda rows: conv2d(rows, taps, conv), images), bn)


# -- inputs ---------------------------------------------------------------------------------

def sizes_for(config: dict, ragged: bool, seed: int) -> list[tuple[int, int]]:
    """(height, width) per image: all `size`, or each random in [size/2, size] when ragged."""
    n, batch = config["size"], config["batch"]
    if not ragged:
        return [(n, n)] * batch
    rng = np.random.default_rng(seed + 1)
    hw = rng.integers(max(1, n // 2), n + 1, size=(batch, 2))
    hw[0] = n  # the largest image has the full size
    return [(int(h), int(w)) for h, w in hw]


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    k, c_in, c_out = cfg["kernel"], cfg["c_in"], cfg["c_out"]
    rng = np.random.default_rng(seed)
    images = [list(rng.standard_normal((h, w, 1, c_in)).astype(dtype)) for h, w in sizes_for(cfg, ragged, seed)]
    images = ft.fractal([[list(row) for row in img] for img in images],
                        type=ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, c_in), dtype]]]])
    s = 1.0 / np.sqrt(k * k * c_in)
    weight = rng.uniform(-s, s, (k, k, c_in, c_out)).astype(dtype)
    bn = BatchNorm(gamma=(1 + 0.1 * rng.standard_normal((1, c_out))).astype(dtype),
                   beta=(0.1 * rng.standard_normal((1, c_out))).astype(dtype))
    return images, weight, bn, Conv(cfg["stride"], cfg["padding"], cfg["dilation"])


# -- references -----------------------------------------------------------------------------

def _out_size(n, k, conv: Conv):
    return (n + 2 * conv.padding - conv.dilation * (k - 1) - 1) // conv.stride + 1


def reference(images, weight, bn: BatchNorm, conv: Conv):
    """NumPy, vectorised: images zero-padded to one size, `sliding_window_view` + `einsum`,
    batch statistics over the valid output pixels only (a mask)."""
    k = weight.shape[0]
    x = images.to_numpy(pad_value=0.0)[:, :, :, 0, :]                  # [B, H, W, C_in]
    sizes = [(len(img), len(img[0])) for img in images]
    p, s, d = conv.padding, conv.stride, conv.dilation
    x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    span = d * (k - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span, span), axis=(1, 2))[..., ::d, ::d]
    y = np.einsum("bhwcij,ijco->bhwo", win[:, ::s, ::s], weight, optimize=True)  # [B, Ho, Wo, C_out]
    ho, wo = y.shape[1], y.shape[2]
    out_sizes = [(_out_size(h, k, conv), _out_size(w, k, conv)) for h, w in sizes]
    valid = np.zeros((len(sizes), ho, wo, 1), bool)
    for i, (oh, ow) in enumerate(out_sizes):
        valid[i, :oh, :ow] = True
    count = valid.sum()
    mean = np.where(valid, y, 0).sum(axis=(0, 1, 2)) / count
    var = np.where(valid, (y - mean) ** 2, 0).sum(axis=(0, 1, 2)) / count
    y = (y - mean) / np.sqrt(var + EPS) * bn.gamma[0] + bn.beta[0]
    return [y[i, :oh, :ow] for i, (oh, ow) in enumerate(out_sizes)]


def outputs(result):
    return [img.to_numpy()[:, :, 0, :] for img in result]


def torch_reference(images, weight, bn: BatchNorm, conv: Conv):
    """`torch.nn.functional.conv2d` per image, then `batch_norm(training=True)` over all pixels."""
    import torch
    import torch.nn.functional as F

    w = torch.from_numpy(np.ascontiguousarray(weight.transpose(3, 2, 0, 1)))  # OIHW
    ys = [F.conv2d(torch.from_numpy(img.to_numpy()[:, :, 0, :].transpose(2, 0, 1).copy())[None], w,
                   stride=conv.stride, padding=conv.padding, dilation=conv.dilation)[0].permute(1, 2, 0)
          for img in images]                                               # [Ho, Wo, C_out] each
    flat = torch.cat([y.reshape(-1, y.shape[-1]) for y in ys])
    normed = F.batch_norm(flat, None, None, torch.from_numpy(bn.gamma[0]), torch.from_numpy(bn.beta[0]),
                          training=True, eps=EPS)
    out, k = [], 0
    for y in ys:
        n = y.shape[0] * y.shape[1]
        out.append(normed[k:k + n].reshape(y.shape).numpy())
        k += n
    return out
