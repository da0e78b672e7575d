"""JAX peers: `jax.jit` programs with `lax.scan` over time / diagonals / key blocks.

Ragged batches are padded (XLA needs static shapes) and masked.  The inputs are placed on the
device outside the timing; `run` calls the jitted function and blocks until the result is
ready.  The first (warm-up) call compiles.  Importing this module imports jax; the benchmark
skips the family when that fails (jax is not a dependency of fractal).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.peers import Peer, Prepared


def setup() -> None:
    pass


def version() -> str:
    return jax.__version__


def _prepared(fn, arrays, to_reference) -> Prepared:
    jitted, arrays = jax.jit(fn), [jax.device_put(a) for a in arrays]
    return Prepared(lambda: jax.block_until_ready(jitted(*arrays)), to_reference)


def _crop(lengths):
    return lambda y: [np.asarray(y)[i, :n] for i, n in enumerate(lengths)]


# -- LSTMs ----------------------------------------------------------------------------------

def _lstm_scan(x, mask, w, u, b):
    """One masked LSTM layer: x [T, B, H] time-major, mask [T, B, 1] -> the states [T, B, H]."""
    def step(carry, inp):
        h, c = carry
        x_t, m_t = inp
        i, f, g, o = jnp.split(x_t @ w + h @ u + b, 4, axis=-1)
        c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        h, c = jnp.where(m_t, h_new, h), jnp.where(m_t, c_new, c)
        return (h, c), h
    zero = jnp.zeros_like(x[0])
    return lax.scan(step, (zero, zero), (x, mask))[1]


def _padded_time_major(batch):
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :].transpose(1, 0, 2)       # [T, B, H]
    mask = (np.arange(x.shape[0])[:, None] < lengths[None, :])[..., None]   # [T, B, 1]
    return np.ascontiguousarray(x), mask, lengths


def stacked_lstm(module, args) -> Prepared:
    """`lax.scan` over the layers of a `lax.scan` over time (padded, masked)."""
    batch, params = args
    x, mask, lengths = _padded_time_major(batch)

    def fn(x, mask, w, u, b):
        return lax.scan(lambda seq, wub: (_lstm_scan(seq, mask, *wub), None), x, (w, u, b))[0]
    return _prepared(fn, [x, mask, *(p.to_numpy() for p in params)],
                     lambda y: _crop(lengths)(np.asarray(y).transpose(1, 0, 2)))


def dilated_lstm(module, args) -> Prepared:
    """Per layer, the re-batched sub-sequences (`B*d` of `T/d` steps) in one masked `lax.scan`."""
    batch, params, depth = args
    lengths = np.array(batch.lengths())
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]                           # [B, T, H]
    nb, t, hdim = x.shape
    masks = [module._rebatch(np.zeros((nb, t, 1), x.dtype), lengths, 2 ** l)[1][..., None]
             for l in range(depth)]                                         # [T', B*d, 1] each

    def fn(x, w, u, b, *masks):
        for l, mask in enumerate(masks):
            d = 2 ** l
            steps = mask.shape[0]
            padded = jnp.pad(x, ((0, 0), (0, steps * d - t), (0, 0)))
            sub = padded.reshape(nb, steps, d, hdim).transpose(1, 0, 2, 3).reshape(steps, nb * d, hdim)
            y = _lstm_scan(sub, mask, w[l], u[l], b[l])
            x = y.reshape(steps, nb, d, hdim).transpose(1, 0, 2, 3).reshape(nb, steps * d, hdim)[:, :t]
        return x
    return _prepared(fn, [x, *(p.to_numpy() for p in params), *masks], _crop(lengths))


# -- grid RNN -------------------------------------------------------------------------------

def grid_rnn(module, args) -> Prepared:
    """Skewed wavefront: per layer a `lax.scan` over the anti-diagonals m = i + j, its state the
    previous diagonal's x- and y-states indexed by row i (all S rows; cells off the grid compute
    values no valid cell reads); afterwards cell (i, j) is gathered from diagonal i + j."""
    src, trg, params = args
    xs = src.to_numpy(pad_value=0.0)[:, :, 0, :].transpose(1, 0, 2)       # [S, B, H]
    ys = trg.to_numpy(pad_value=0.0)[:, :, 0, :].transpose(1, 0, 2)       # [T, B, H]
    ns, nt = xs.shape[0], ys.shape[0]
    weights = [p.to_numpy() for cell in params for p in cell]             # wx, ux, bx, wy, uy, by
    rows = np.arange(ns)
    sizes = list(zip(src.lengths(), trg.lengths()))

    def layer(gx, gy, w_cat):                                             # gx, gy: [S, T, B, H]
        hdim = gx.shape[-1]

        def step(state, m):
            hx, hy = state                                                # diagonal m-1, by row
            above = jnp.concatenate([jnp.zeros_like(hx[:1]), hx[:-1]])   # x-state of (i-1, j)
            left = jnp.where((jnp.arange(ns) == m)[:, None, None], 0.0, hy)  # y-state of (i, j-1)
            cols = jnp.clip(m - jnp.arange(ns), 0, nt - 1)
            z = jnp.concatenate([above, left], axis=-1) @ w_cat
            new = jnp.tanh(z[..., :hdim] + gx[rows, cols]), jnp.tanh(z[..., hdim:] + gy[rows, cols])
            return new, new
        zero = jnp.zeros_like(gx[:, 0])
        _, (dx, dy) = lax.scan(step, (zero, zero), jnp.arange(ns + nt - 1))  # [S+T-1, S, B, H]
        diag = rows[:, None] + np.arange(nt)[None, :]
        return dx[diag, rows[:, None]], dy[diag, rows[:, None]]

    def fn(xs, ys, wx, ux, bx, wy, uy, by):
        x, y = xs, ys
        for d in range(wx.shape[0]):
            if d == 0:  # the first layer's input grid is a product: project the S + T inputs, broadcast
                gx = jnp.broadcast_to((xs @ ux[0] + bx[0])[:, None], (ns, nt) + xs.shape[1:])
                gy = jnp.broadcast_to((ys @ uy[0] + by[0])[None, :], (ns, nt) + ys.shape[1:])
            else:
                gx, gy = x @ ux[d] + bx[d], y @ uy[d] + by[d]
            x, y = layer(gx, gy, jnp.concatenate([wx[d], wy[d]], axis=1))
        return x, y

    def to_reference(out):
        hx, hy = (np.asarray(a) for a in out)
        return [(hx[:m, :n, b], hy[:m, :n, b]) for b, (m, n) in enumerate(sizes)]
    return _prepared(fn, [xs, ys, *weights], to_reference)


# -- GEMMs and attention --------------------------------------------------------------------

def b2b_gemm(module, args) -> Prepared:
    return _prepared(lambda a, b, c: (a @ b) @ c, list(module._dense(*args)), np.asarray)


def flash_attention(module, args) -> Prepared:
    """Online softmax as a `lax.scan` over the key blocks of the padded batch (masked keys)."""
    (qa, lengths), (ka, _), (va, _) = (module._padded(x) for x in args)   # [B, H, T, d]
    block = args[0].type.leaf.shape[0]
    nb, heads, t, d = qa.shape
    key_ok = np.arange(t)[None, :] < lengths[:, None]                     # [B, T]
    scale = float(1.0 / np.sqrt(d))

    def fn(q, k, v, key_ok):
        kb = k.reshape(nb, heads, t // block, block, d).transpose(2, 0, 1, 3, 4)
        vb = v.reshape(nb, heads, t // block, block, d).transpose(2, 0, 1, 3, 4)
        ok = key_ok.reshape(nb, t // block, block).transpose(1, 0, 2)[:, :, None, None, :]

        def step(state, kvm):
            m, l, o = state
            kj, vj, okj = kvm
            s = jnp.where(okj, (q @ kj.swapaxes(-1, -2)) * scale, -jnp.inf)
            m_new = jnp.maximum(m, s.max(-1, keepdims=True))
            p, r = jnp.exp(s - m_new), jnp.exp(m - m_new)
            return (m_new, r * l + p.sum(-1, keepdims=True), r * o + p @ vj), None
        init = (jnp.full((nb, heads, t, 1), -jnp.inf, q.dtype), jnp.zeros((nb, heads, t, 1), q.dtype),
                jnp.zeros_like(q))
        (_, l, o), _ = lax.scan(step, init, (kb, vb, ok))
        return o / l
    return _prepared(fn, [qa, ka, va, key_ok],
                     lambda y: [np.asarray(y)[i, :, :n] for i, n in enumerate(lengths)])


def bigbird(module, args) -> Prepared:
    """Gather-based blocked attention (`jnp.take` of the window and global blocks), jitted."""
    qa, ka, va = (x.to_numpy(pad_value=0.0) for x in args)                # [B, N, Bs, H]
    nb, n_max, bs, h = qa.shape
    blocks = [len(s) for s in args[0]]
    idx = np.zeros((nb, n_max, module.WINDOW + 2), np.int32)
    for b, n in enumerate(blocks):
        i = np.where(np.arange(n_max) < n, np.arange(n_max), 0)
        idx[b] = b * n_max + np.stack([(i - 1) % n, i, (i + 1) % n, 0 * i, 0 * i + n - 1], axis=-1)
    scale = float(1.0 / np.sqrt(h))

    def fn(q, k, v, idx):
        keys = jnp.take(k, idx, axis=0).reshape(nb * n_max, -1, h)
        values = jnp.take(v, idx, axis=0).reshape(nb * n_max, -1, h)
        p = jax.nn.softmax(q @ keys.swapaxes(1, 2) * scale, axis=-1)
        return (p @ values).reshape(nb, n_max * bs, h)
    flat = [x.reshape(nb * n_max, bs, h) for x in (qa, ka, va)]
    return _prepared(fn, [*flat, idx.reshape(-1)],
                     lambda y: [np.asarray(y)[b, :n * bs] for b, n in enumerate(blocks)])


def _peer(name: str, prepare) -> Peer:
    return Peer(f"jax {name}", "jax", False, prepare)


PEERS = {
    "stacked_lstm": (_peer("jit lax.scan", stacked_lstm),),
    "dilated_lstm": (_peer("jit lax.scan (re-batched)", dilated_lstm),),
    "grid_rnn": (_peer("jit wavefront scan", grid_rnn),),
    "b2b_gemm": (_peer("jit (A@B)@C", b2b_gemm),),
    "flash_attention": (_peer("jit online softmax scan", flash_attention),),
    "bigbird": (_peer("jit gather blocks", bigbird),),
}
