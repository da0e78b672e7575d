"""Dilated LSTM: per-layer dilate / map / scan / interleave, dilations 2^k, ragged corner cases."""

import numpy as np

import fractal as ft
from examples import dilated_lstm as m
from examples import stacked_lstm
from examples import zoo


def _combinators(region):
    return [e for e in region.eqns if e.op in ("map", "scan", "fold", "reduce")]


def test_each_layer_is_dilate_map_scan_interleave_with_dilation_two_to_the_k():
    program = m.model.trace(*m.inputs("small"))
    (batch_map,) = _combinators(program.body)
    assert batch_map.op == "map"
    body = batch_map.regions[0].eqns
    depth = m.CONFIGS["small"]["depth"]
    assert [e.op for e in body] == ["dilate", "map", "interleave"] * depth
    assert [e.attrs["d"] for e in body if e.op == "dilate"] == [2 ** k for k in range(depth)]
    for sub_map in (e for e in body if e.op == "map"):
        (scan,) = _combinators(sub_map.regions[0])
        assert scan.op == "scan" and not scan.attrs["reverse"]
    # the per-layer weights are read by static index once, outside the batch map
    assert [e.attrs["i"] for e in program.body.eqns if e.op == "list_index"] == [k for k in range(depth) for _ in "wub"]


def test_depth_is_static_and_retraces():
    batch, params, _ = m.inputs("small")
    assert sum(e.op == "dilate" for e in m.model.trace(batch, params, 2).eqns()) == 2


def test_sequences_shorter_than_the_dilation_give_empty_sub_sequences():
    cfg = dict(depth=3, length=6, batch=2, hidden=4)
    batch, params, depth = m.inputs(cfg, dtype=np.float64)
    seqs = [list(batch[0].to_numpy()), list(batch[1].to_numpy()[:1])]  # lengths 6 and 1 (< 2 and < 4)
    short = ft.fractal(seqs, type=batch.type)
    err = zoo.max_abs_error(m.outputs(m.model(short, params, depth)), m.reference(short, params, depth))
    assert err <= 1e-12


def test_one_layer_of_dilation_one_is_the_plain_lstm():
    batch, params, _ = m.inputs("small", dtype=np.float64)
    got = m.outputs(m.model(batch, params, 1))
    one = stacked_lstm.LSTMParams(*(ft.from_numpy(p.to_numpy()[:1]) for p in params))
    want = stacked_lstm.outputs(stacked_lstm.model(batch, one))
    assert zoo.max_abs_error(got, want) <= 1e-12


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_matches_the_recurrence_on_t_minus_dilation():
    """The docstring's recurrence, one sequence, one time step at a time: step t of layer k
    reads the state of step t - 2^k (no re-batching, unlike the reference)."""
    batch, params, depth = m.inputs(dict(depth=3, length=7, batch=2, hidden=4), dtype=np.float64)
    w, u, b = (p.to_numpy() for p in params)
    for got, seq in zip(m.outputs(m.model(batch, params, depth)), batch):
        x = seq.to_numpy()[:, 0, :]
        for k in range(depth):
            d, hid = 2 ** k, x.shape[1]
            hs, cs = np.zeros_like(x), np.zeros_like(x)
            for t in range(len(x)):
                h, c = (hs[t - d], cs[t - d]) if t >= d else (np.zeros(hid), np.zeros(hid))
                i, f, g, o = np.split(x[t] @ w[k] + h @ u[k] + b[k][0], 4)
                cs[t] = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                hs[t] = _sigmoid(o) * np.tanh(cs[t])
            x = hs
        assert np.abs(got - x).max() <= 1e-12
