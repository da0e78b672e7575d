"""GraphSAGE: the fractal model, the NumPy `reduceat` reference, the interpreter and PyTorch agree
on ragged graphs (isolated nodes included), and each layer compiles to one gather of every
neighbour row and one segmented reduction."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from examples import graphsage as m
from examples import zoo


@settings(max_examples=20, deadline=None)
@given(nodes=st.integers(1, 9), degree=st.integers(0, 4), features=st.integers(1, 4), hidden=st.integers(1, 4),
       out=st.integers(1, 3), ragged=st.booleans(), seed=st.integers(0, 1000))
def test_model_matches_reference_and_interpreter_on_random_graphs(nodes, degree, features, hidden, out, ragged, seed):
    cfg = dict(nodes=nodes, degree=degree, features=features, hidden=hidden, out=out)
    args = m.inputs(cfg, dtype=np.float64, ragged=ragged, seed=seed)
    want = m.reference(*args)
    assert zoo.max_abs_error(m.outputs(m.model.compile(*args).run(*args)), want) <= 1e-12
    assert zoo.max_abs_error(m.outputs(m.model.interpret(*args)), want) <= 1e-12


def test_an_isolated_node_takes_only_its_own_features():
    """The mean of no neighbours is 0: the last node (isolated in ragged graphs) gets relu(x W_self + b) W_self + b."""
    h, nbrs, layers = m.inputs("small", dtype=np.float64)
    assert nbrs.lengths()[-1] == 0
    x = h.to_numpy()[-1]
    for k, p in enumerate(layers):
        x = x @ p.w_self + p.bias
        x = x if k == len(layers) - 1 else np.maximum(x, 0)
    np.testing.assert_allclose(m.outputs(m.model.compile(h, nbrs, layers).run(h, nbrs, layers))[-1], x[0], rtol=1e-12)


def test_each_layer_is_one_neighbour_gather_and_one_segment_sum():
    args = m.inputs("small")
    text = str(m.model.compile(*args).tile_ir)
    assert text.count("segment_add(") == 2  # one per layer
    assert "sequential" not in text         # no loop over neighbour positions


@pytest.mark.skipif(not zoo.torch_available(), reason="needs torch")
def test_torch_reference_agrees():
    args = m.inputs(dict(nodes=30, degree=5, features=6, hidden=5, out=4), dtype=np.float64, seed=4)
    assert zoo.max_abs_error(m.torch_reference(*args), m.reference(*args)) <= 1e-12
