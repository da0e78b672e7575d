"""Mamba's selective state-space scan (S6): map over the batch x map over channel groups x scan over time.

The S6 layer of Mamba (Gu & Dao, 2023) runs, for every channel d of the
model, an independent linear recurrence whose discretisation depends on the
input.  With x_t [1, D] the input of step t (D = d_model, N = d_state):

    delta_t = softplus(x_t @ W_delta + b_delta)          [1, D]   step size, per channel
    B_t     = x_t @ W_B                                  [1, N]   input matrix, shared by channels
    C_t     = x_t @ W_C                                  [1, N]   output matrix, shared by channels
    A       = -exp(A_log)                                [D, N]   continuous-time diagonal A (< 0)

and, for each channel d (state h[d] in R^N, zero at t = 0):

    A_bar[d] = exp(delta_t[d] * A[d])                    [N]      zero-order hold
    h_t[d]   = A_bar[d] * h_{t-1}[d] + delta_t[d] * B_t * x_t[d]     [N]   (Mamba's B_bar x = delta B x)
    y_t[d]   = C_t . h_t[d] + D_skip[d] * x_t[d]         scalar

softplus is computed stably as max(x, 0) + log(1 + exp(-|x|)).  W_delta is a
full-rank [D, D] projection (Mamba factors it through a rank-D/16 bottleneck;
the recurrence is the same).

How it maps onto fractal.  The channels are split into G groups of P = D / G
channels (`groups` in the config; G = D gives one channel per group, the state
h [1, N] of the equations above; G < D vectorises P channels into h [P, N]):

* `ft.map` over the ragged batch: each sample is its own list of steps, no padding;
* `ft.map` over time: the input-dependent parameters delta_t, B_t, C_t
  (they read all channels of x_t), with x_t and delta_t cut into the G
  group slices [P, 1] by `ft.slices`;
* access operators transpose [time][group] into [group][time]:
  `ft.dilate(ft.flatten(xs), G)` (element g of step t sits at t*G + g);
* `ft.map` over channel groups x `ft.scan` over time: the recurrence on h,
  then `ft.map` over time for the read-out y_t = C_t . h_t + D x_t;
* `ft.interleave` + `ft.window(stride=G)` transpose the outputs back to
  [time][group], and each step's groups are stacked into y_t [1, D].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft
from examples.zoo import lengths_for

DESCRIPTION = "Mamba S6 selective scan (batch map x channel-group map x time scan), input-dependent discretisation"

CONFIGS = {
    "small": dict(batch=2, length=6, d_model=4, d_state=4, groups=4),
    "cpu": dict(batch=8, length=256, d_model=64, d_state=16, groups=64),
    "cpu_grouped": dict(batch=8, length=256, d_model=64, d_state=16, groups=8),
    "paper": dict(batch=16, length=2048, d_model=768, d_state=16, groups=768),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"batch": [1, 2], "length": [1, 2, 6], "d_model": [4], "d_state": [1, 4], "groups": [1, 2, 4]}


class S6Params(NamedTuple):
    w_delta: np.ndarray    # [D, D]  step-size projection
    b_delta: np.ndarray    # [1, D]  step-size bias (softplus(b) in [1e-3, 1e-1] at init)
    w_b: np.ndarray        # [D, N]  input-dependent B
    w_c: np.ndarray        # [D, N]  input-dependent C
    a_log: ft.FractalTensor  # ft<[P, N]>, one per channel group: A = -exp(a_log)
    d_skip: ft.FractalTensor  # ft<[P, 1]>, one per channel group: skip connection D


def softplus(x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log(1 + exp(-|x|))."""
    return ft.maximum(x, 0.0) + ft.log(1.0 + ft.exp(-ft.abs(x)))


@ft.function
def model(batch, p: S6Params):
    d_model, d_state = p.w_b.shape
    per_group, _ = p.a_log.type.elem.shape            # P channels in each group
    groups = d_model // per_group                     # G
    h0 = ft.zeros((per_group, d_state), p.w_b.dtype)

    def by_group(t):                                  # [1, D] -> G slices [P, 1]
        return ft.slices(ft.reshape(t, (groups, per_group, 1)))

    def one_sequence(xs):
        # input-dependent discretisation parameters of every step (map over time)
        def project(x):
            delta = softplus(x @ p.w_delta + p.b_delta)
            return by_group(x), by_group(delta), x @ p.w_b, x @ p.w_c

        x_tg, delta_tg, bs, cs = ft.map(project, xs)  # [time][group] x2, [time] x2

        # [time][group] -> [group][time]
        x_gt = ft.dilate(ft.flatten(x_tg), groups)
        delta_gt = ft.dilate(ft.flatten(delta_tg), groups)

        def channel_group(x_series, delta_series, a_log, d_skip):
            a = -ft.exp(a_log)                        # [P, N]

            def step(h, inp):
                x, delta, b = inp                     # [P, 1], [P, 1], [1, N]
                return ft.exp(delta * a) * h + (delta * x) * b

            hs = ft.scan(step, ft.zip(x_series, delta_series, bs), h0)
            return ft.map(lambda h, c, x: ft.sum(h * c, axis=1, keepdims=True) + d_skip * x,
                          hs, cs, x_series)           # y_t [P, 1] for every step

        y_gt = ft.map(channel_group, x_gt, delta_gt, p.a_log, p.d_skip)

        # [group][time] -> [time][group] -> y_t [1, D]
        y_tg = ft.window(ft.interleave(y_gt), groups, stride=groups)
        return ft.map(lambda ys: ft.reshape(ft.stack(ys, length=groups), (1, d_model)), y_tg)

    return ft.map(one_sequence, batch)


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    d, n, g = cfg["d_model"], cfg["d_state"], cfg["groups"]
    if d % g:
        raise ValueError(f"d_model {d} is not a multiple of groups {g}")
    rng = np.random.default_rng(seed)
    lengths = lengths_for(cfg, ragged, seed)
    x = rng.standard_normal((sum(lengths), 1, d)).astype(dtype)
    seqs, k = [], 0
    for length in lengths:
        seqs.append(list(x[k:k + length]))
        k += length
    scale = 1.0 / np.sqrt(d)
    # Mamba's initialisation: dt log-uniform in [1e-3, 1e-1], bias = softplus^-1(dt); S4D-real A = -(1..N)
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (1, d)))
    a_log = np.log(np.broadcast_to(np.arange(1, n + 1, dtype=np.float64), (d, n)))
    params = S6Params(
        w_delta=rng.uniform(-scale, scale, (d, d)).astype(dtype),
        b_delta=(dt + np.log(-np.expm1(-dt))).astype(dtype),
        w_b=rng.uniform(-scale, scale, (d, n)).astype(dtype),
        w_c=rng.uniform(-scale, scale, (d, n)).astype(dtype),
        a_log=ft.from_numpy(a_log.reshape(g, d // g, n).astype(dtype)),
        d_skip=ft.from_numpy(rng.uniform(0.5, 1.5, (g, d // g, 1)).astype(dtype)))
    batch = ft.fractal(seqs, type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, d), dtype]]])
    return batch, params


def reference(batch, p):
    """NumPy, vectorised over batch and channels: pad to the longest sequence, mask finished steps."""
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                   # [B, T, D]
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]         # [B, T]
    d_model = x.shape[-1]
    a = -np.exp(p.a_log.to_numpy().reshape(d_model, -1))             # [D, N]
    d_skip = p.d_skip.to_numpy().reshape(d_model)                    # [D]
    delta = np.logaddexp(0.0, x @ p.w_delta + p.b_delta)             # [B, T, D]
    b, c = x @ p.w_b, x @ p.w_c                                      # [B, T, N]
    h = np.zeros((x.shape[0], d_model, a.shape[1]), x.dtype)        # [B, D, N]
    y = np.zeros_like(x)
    for t in range(x.shape[1]):
        a_bar = np.exp(delta[:, t, :, None] * a)                     # [B, D, N]
        h_new = a_bar * h + (delta[:, t] * x[:, t])[:, :, None] * b[:, t, None, :]
        h = np.where(mask[:, t, None, None], h_new, h)
        y[:, t] = np.einsum("bdn,bn->bd", h, c[:, t]) + d_skip * x[:, t]
    return [y[i, :n] for i, n in enumerate(lengths)]


def outputs(result):
    return [seq.to_numpy()[:, 0, :] for seq in result]
