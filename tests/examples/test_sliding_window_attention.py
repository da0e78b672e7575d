"""sliding_window_attention: map > map > map over ft.window neighbourhoods of keys, values and a
-inf-padded key mask; edge cases of the window width."""

import numpy as np
import pytest

import fractal as ft
from examples import sliding_window_attention as m


def _only(eqns, op):
    (eqn,) = [e for e in eqns if e.op == op]
    return eqn


def test_nest_is_three_maps_over_padded_windows():
    args = m.inputs("small")
    window = args[-1]
    p = m.model.trace(*args)
    batch = _only(p.body.eqns, "map")
    heads = _only(batch.regions[0].eqns, "map")
    head_eqns = heads.regions[0].eqns
    windows = [e for e in head_eqns if e.op == "window"]
    assert len(windows) == 3
    assert all(e.attrs["size"] == window and e.attrs["padding"] == window // 2 and e.attrs["stride"] == 1
               for e in windows)
    assert sorted(e.attrs["pad_value"] for e in windows) == [float("-inf"), 0, 0]
    query = [e for e in head_eqns if e.op == "map"][-1]
    assert all(w.outputs[0] in query.inputs for w in windows)
    assert [e.op for e in query.regions[0].eqns].count("softmax") == 1
    assert not {"scan", "fold", "reduce"} & {e.op for e in p.eqns()}


def _tokens(lengths, heads=2, d=3, seed=5):
    rng = np.random.default_rng(seed)
    return ft.fractal([ft.from_numpy(rng.standard_normal((heads, n, d)), depth=2) for n in lengths])


@pytest.mark.parametrize("window", [1, 3, 7, 11])
def test_windows_wider_than_short_sequences_match_the_reference(window):
    args = _tokens([5, 1, 2]), _tokens([5, 1, 2], seed=6), _tokens([5, 1, 2], seed=7), window
    for g, w in zip(m.outputs(m.model(*args)), m.reference(*args)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_width_one_attends_to_itself_only():
    q, k, v = _tokens([4, 3]), _tokens([4, 3], seed=8), _tokens([4, 3], seed=9)
    for g, vv in zip(m.outputs(m.model(q, k, v, 1)), v):
        np.testing.assert_allclose(g, vv.to_numpy(), rtol=1e-12, atol=1e-12)


def test_window_covering_the_sequence_is_full_attention():
    q, k, v = _tokens([4]), _tokens([4], seed=8), _tokens([4], seed=9)
    got = m.outputs(m.model(q, k, v, 7))[0]
    qa, ka, va = (x[0].to_numpy() for x in (q, k, v))
    s = qa @ ka.swapaxes(-1, -2) / np.sqrt(3)
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(got, p / p.sum(-1, keepdims=True) @ va, rtol=1e-12, atol=1e-12)


def test_even_window_is_rejected():
    with pytest.raises(ValueError, match="odd"):
        m.model.trace(*m.inputs("small")[:3], 4)
