"""RetNet retention: the recurrent `model` and the `parallel_model` are the same operator."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from examples import retention as m
from examples import zoo


def _per_sample(result):
    return m.outputs(result)


@pytest.mark.parametrize("ragged", [True, False], ids=["ragged", "regular"])
def test_recurrent_and_parallel_forms_agree_in_float64(ragged):
    cfg = dict(batch=3, length=7, heads=3, d_model=5, head_dim=4)
    args = m.inputs(cfg, dtype=np.float64, ragged=ragged, seed=2)
    if ragged:
        assert len(set(args[0].lengths())) > 1
    rec, par = _per_sample(m.model(*args)), _per_sample(m.parallel_model(*args))
    assert zoo.max_abs_error(rec, par) <= 1e-12
    assert zoo.max_abs_error(par, m.reference(*args)) <= 1e-12


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 6), heads=st.integers(1, 3),
       d_model=st.integers(1, 4), head_dim=st.integers(1, 4),
       gammas=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
       ragged=st.booleans(), seed=st.integers(0, 1000))
def test_forms_agree_on_random_sizes_decays_and_lengths(batch, length, heads, d_model, head_dim,
                                                        gammas, ragged, seed):
    cfg = dict(batch=batch, length=length, heads=heads, d_model=d_model, head_dim=head_dim,
               gamma=gammas[:heads])
    args = m.inputs(cfg, dtype=np.float64, ragged=ragged, seed=seed)
    rec, par = _per_sample(m.model(*args)), _per_sample(m.parallel_model(*args))
    assert zoo.max_abs_error(rec, par) <= 1e-10
    assert zoo.max_abs_error(rec, m.reference(*args)) <= 1e-10


def test_decay_matters():
    """gamma is really applied: with gamma = 0 only the diagonal term (q_t . k_t) v_t is left."""
    cfg = dict(batch=2, length=4, heads=1, d_model=3, head_dim=2, gamma=[0.0])
    batch, p = m.inputs(cfg, dtype=np.float64)
    out = _per_sample(m.model(batch, p))
    x = batch.to_numpy(pad_value=0.0)[:, :, 0, :]
    q, k, v = (x @ w.to_numpy()[0] for w in (p.wq, p.wk, p.wv))
    diag = np.sum(q * k, -1, keepdims=True) / np.sqrt(2) * v
    for i, n in enumerate(batch.lengths()):
        np.testing.assert_allclose(out[i][0], diag[i, :n], rtol=1e-12, atol=1e-12)
    cfg["gamma"] = [0.9]
    assert zoo.max_abs_error(_per_sample(m.model(*m.inputs(cfg, dtype=np.float64))), out) > 1e-3


def _nest(region):
    return [(e.op, _nest(e.regions[0]) if e.regions else None) for e in region.eqns
            if e.op in ("map", "scan", "fold", "reduce")]


def test_recurrent_form_is_batch_map_head_map_time_scan():
    program = m.model.trace(*m.inputs("small"))
    (batch_map,) = [e for e in program.body.eqns if e.op == "map"]
    (head_map,) = [e for e in batch_map.regions[0].eqns if e.op == "map"]
    assert head_map.inputs[-1].type.elem.shape == ()       # mapped over the per-head decays
    assert _nest(head_map.regions[0]) == [("map", []), ("scan", []), ("map", [])]
    (scan,) = [e for e in head_map.regions[0].eqns if e.op == "scan"]
    assert scan.outputs[0].type.elem.shape == (3, 3)        # the state S [d_k, d_v]


def test_parallel_form_is_query_map_over_key_reduce():
    program = m.parallel_model.trace(*m.inputs("small"))
    assert _nest(program.body) == [("map", [("map", [("map", []), ("map", [("map", []), ("reduce", [])])])])]
    ops = [e.op for e in program.eqns()]
    assert ops.count("enumerate") == 2 and "scan" not in ops
    assert ft.parse_program(str(program)) == program
    program.verify()
