"""A stacked RNN over a ragged batch: map (batch) x fold (layers) x scan (time).

    h[l][t] = tanh(h[l-1][t] @ W[l] + h[l][t-1] @ U[l] + b[l])

Run it (`make run` or `python examples/stacked_rnn.py`): it traces the model,
prints the program IR, runs it with the reference interpreter and checks the
result against an independent NumPy implementation (padded and masked, the
way a NumPy user writes it).
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np

import fractal as ft


class Layer(NamedTuple):
    w: np.ndarray  # [hidden, hidden] input projection
    u: np.ndarray  # [hidden, hidden] recurrent projection
    b: np.ndarray  # [1, hidden]


def stacked_rnn(batch, layers: ft.FractalTensor, h0):
    """batch: ft<ft<f[1,H]>> (ragged sequences); layers: stacked weights as lists."""

    def one_sequence(xs):
        def layer(seq, params):
            w, u, b = params
            return ft.scan(lambda h, x: ft.tanh(x @ w + h @ u + b), seq, h0)
        return ft.fold(layer, ft.zip(layers.w, layers.u, layers.b), xs)

    return ft.map(one_sequence, batch)


model = ft.function(stacked_rnn)


def make_inputs(batch=3, hidden=8, depth=2, lengths=(5, 2, 7), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(hidden)
    seqs = ft.fractal([[rng.standard_normal((1, hidden)).astype(dtype) for _ in range(n)]
                       for n in lengths[:batch]])
    layers = Layer(*(ft.from_numpy((rng.standard_normal((depth,) + s) * scale).astype(dtype))
                     for s in ((hidden, hidden), (hidden, hidden), (1, hidden))))
    return seqs, layers, np.zeros((1, hidden), dtype)


def reference(seqs, layers, h0):
    """Plain NumPy: pad the batch to the longest sequence, mask finished steps."""
    x = seqs.to_numpy(pad_value=0.0)[:, :, 0, :]            # [B, T, H]
    lengths = np.array(seqs.lengths())
    mask = np.arange(x.shape[1])[None, :] < lengths[:, None]  # [B, T]
    w, u, b = (p.to_numpy() for p in layers)
    for l in range(w.shape[0]):
        h = np.repeat(h0, x.shape[0], axis=0)                 # [B, H]
        out = np.zeros_like(x)
        for t in range(x.shape[1]):
            h_new = np.tanh(x[:, t] @ w[l] + h @ u[l] + b[l])
            h = np.where(mask[:, t, None], h_new, h)
            out[:, t] = h
        x = out
    return [x[i, :n] for i, n in enumerate(lengths)]


def main() -> int:
    args = make_inputs()
    print("== program IR ==")
    print(model.trace(*args))
    result = model(*args)
    expected = reference(*args)
    err = max(float(np.abs(r.to_numpy()[:, 0] - e).max()) for r, e in zip(result, expected))
    print("== result ==")
    print(result)
    print(f"sequence lengths {result.lengths()}; max |fractal - numpy| = {err:.2e}")
    ok = err < 1e-5
    print("OK: matches the NumPy reference" if ok else "MISMATCH against the NumPy reference")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
