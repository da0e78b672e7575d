"""One-sided window padding and the stable element-wise ops through every layer.

* `ft.window(xs, k, padding=(before, after))` compiled for the cpu backend and run point by
  point (`pointwise`) gives what the interpreter gives, on ragged and regular lists, of
  tensors (padded with `pad_value`) and of lists (padded with empty lists);
* a causal TCN (dilated causal convolutions, `padding=(d * (k - 1), 0)`, stacked) equals a
  NumPy implementation that left-pads each sequence with zeros;
* `softplus`, `log_sigmoid`, `elu`, `log1p` compiled (cpu, pointwise) equal the interpreter,
  stay finite for large |x|, and their tile IR prints and parses back.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.lower import parse_tile_program

F2 = ft.Tensor[(1, 2), ft.float64]
BACKENDS = ["cpu", "pointwise"]


def seq_list(lengths, seed, depth):
    """A list of `len(lengths)` sequences (depth 2) or of lists of sequences (depth 3, the
    inner lengths drawn from 0..2), elements f64[1, 2]."""
    rng = np.random.default_rng(seed)
    if depth == 2:
        data = [[rng.standard_normal((1, 2)) for _ in range(n)] for n in lengths]
        return ft.fractal(data, type=ft.FractalTensor[ft.FractalTensor[F2]])
    data = [[[rng.standard_normal((1, 2)) for _ in range(int(rng.integers(0, 3)))] for _ in range(n)]
            for n in lengths]
    return ft.fractal(data, type=ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[F2]]])


def assert_lists_equal(got, want):
    assert got.type == want.type
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, ft.FractalTensor):
            assert_lists_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def windows_program(size, stride, dilation, padding, pad_value, depth):
    """Per sequence, its windows, each reduced to one value so that every element is used."""
    def per_window(win):
        if depth == 2:
            return ft.map(lambda x: x * 2.0 + 1.0, win)
        return ft.map(lambda xs: ft.map(lambda x: ft.tanh(x), xs), win)

    def program(batch):
        return ft.map(lambda xs: ft.map(per_window, ft.window(xs, size, stride=stride, dilation=dilation,
                                                              padding=padding, pad_value=pad_value)), batch)
    return ft.function(program, name="windows")


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       size=st.integers(1, 3), stride=st.integers(1, 2), dilation=st.integers(1, 3),
       before=st.integers(0, 4), after=st.integers(0, 2), depth=st.sampled_from([2, 3]),
       backend=st.sampled_from(BACKENDS))
def test_one_sided_windows_compile_to_what_the_interpreter_computes(lengths, seed, size, stride, dilation,
                                                                      before, after, depth, backend):
    """Ragged (lengths differ) and regular (one length) batches, tensor and list elements."""
    batch = seq_list(lengths, seed, depth)
    pad_value = -0.5 if depth == 2 else 0
    f = windows_program(size, stride, dilation, (before, after), pad_value, depth)
    want = f.interpret(batch)
    assert_lists_equal(f(batch, backend=backend), want)
    for xs, ws in zip(batch, want):  # the count: before + n + after padded elements
        assert len(ws) == max(0, (len(xs) + before + after - dilation * (size - 1) - 1) // stride + 1)


def test_list_elements_are_padded_with_empty_lists():
    xss = seq_list([3], seed=1, depth=3)[0]  # 3 lists of lists of f64[1, 2]
    wins = ft.window(xss, 2, padding=(1, 0))
    assert [[len(e) for e in w] for w in wins] == [[0, len(xss[0])], [len(xss[0]), len(xss[1])],
                                                  [len(xss[1]), len(xss[2])]]
    assert wins[0][0].type == xss.type.elem


# -- a causal TCN -------------------------------------------------------------------------------

H, K = 3, 2
DILATIONS = (1, 2, 4)


def tcn_weights(seed=5):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((K, H, H)) * 0.5 for _ in DILATIONS]


@ft.function
def tcn(batch, w0, w1, w2):
    """Three dilated causal convolutions (kernel K, dilations 1, 2, 4) with ELU, residuals."""
    def conv(xs, w, d):
        wins = ft.window(xs, K, dilation=d, padding=(d * (K - 1), 0))  # causal: sees x[t - d*(K-1) .. t]
        return ft.map(lambda p: p[1] + ft.elu(p[0][0] @ w[0] + p[0][1] @ w[1]), ft.zip(wins, xs))

    def net(xs):
        for w, d in zip((w0, w1, w2), DILATIONS):
            xs = conv(xs, w, d)
        return xs
    return ft.map(net, batch)


def numpy_tcn(seq, weights):
    """seq [T, H] -> [T, H]: left-pad with zeros, y[t] = x[t] + elu(sum_k x[t - d*(K-1-k)] @ W_k)."""
    x = seq
    for w, d in zip(weights, DILATIONS):
        padded = np.concatenate([np.zeros((d * (K - 1), H)), x])
        z = sum(padded[k * d:k * d + len(x)] @ w[k] for k in range(K))
        x = x + np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    return x


@pytest.mark.parametrize("lengths", [[7, 1, 0, 12], [5, 5]], ids=["ragged", "regular"])
@pytest.mark.parametrize("backend", BACKENDS + ["interpreter"])
def test_causal_tcn_equals_numpy(lengths, backend):
    rng = np.random.default_rng(9)
    seqs = [rng.standard_normal((n, H)) for n in lengths]
    batch = ft.fractal([[s[t:t + 1] for t in range(len(s))] for s in seqs],
                       type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, H), ft.float64]]])
    ws = tcn_weights()
    out = tcn(batch, *ws, backend=backend)
    for s, o in zip(seqs, out):
        assert len(o) == len(s)  # one output per step: causal padding keeps the length
        got = o.to_numpy()[:, 0] if len(o) else np.zeros((0, H))
        np.testing.assert_allclose(got, numpy_tcn(s, ws), rtol=1e-12, atol=1e-12)


def test_causal_outputs_do_not_see_the_future():
    """Changing x[t] changes no output before t."""
    rng = np.random.default_rng(2)
    seq = [rng.standard_normal((1, H)) for _ in range(9)]
    t = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, H), ft.float64]]]
    ws = tcn_weights()
    before = tcn(ft.fractal([seq], type=t), *ws)[0].to_numpy()
    seq[6] = seq[6] + 1.0
    after = tcn(ft.fractal([seq], type=t), *ws)[0].to_numpy()
    np.testing.assert_array_equal(before[:6], after[:6])
    assert np.abs(before[6:] - after[6:]).max(axis=-1).min() > 0  # ... and every output from t on


# -- stable element-wise ops, compiled ---------------------------------------------------------

OPS = {"softplus": ft.softplus, "log_sigmoid": ft.log_sigmoid, "elu": ft.elu,
       "log1p": lambda x: ft.log1p(ft.abs(x)), "elu_alpha": lambda x: ft.elu(x, alpha=0.3)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_stable_ops_compile_to_the_interpreters_values(name, backend, dtype):
    """Large |x| included (exp overflows float32 past 88): finite, and as interpreted."""
    x = np.array([[-1e4, -100.0, -20.0, -1.0, -1e-7, 0.0, 1e-7, 1.0, 20.0, 100.0, 1e4]], dtype=dtype)
    xs = ft.fractal([x, -x, x * 0.5], type=ft.FractalTensor[ft.Tensor[x.shape, dtype]])
    op = OPS[name]
    f = ft.function(lambda xs: ft.map(lambda v: op(v) * 2.0, xs), name=name)
    want = f.interpret(xs)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        got = f(xs, backend=backend)
    for g, w in zip(got, want):
        assert g.dtype == dtype and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, w, rtol=2 * np.finfo(dtype).eps, atol=0)


def test_stable_ops_in_a_fused_chain_print_and_parse_back():
    """The ops reach the tile IR by name (fused into one expression), which parses back."""
    xs = ft.fractal([np.linspace(-50, 50, 8).reshape(1, 8)] * 3)
    f = ft.function(lambda xs: ft.map(lambda v: ft.softplus(v) + ft.log_sigmoid(v) * ft.elu(v) + ft.log1p(v * v),
                                      xs), name="chain")
    compiled = f.compile(xs, target="cpu-generic")
    text = str(compiled.tile_ir)
    for op in ("softplus(", "log_sigmoid(", "elu(", "log1p("):
        assert op in text
    assert parse_tile_program(text) == compiled.tile_ir
    program = f.trace(xs)
    assert ft.parse_program(str(program)) == program
    np.testing.assert_allclose(compiled.run(xs)[1], f.interpret(xs)[1], rtol=1e-13)
