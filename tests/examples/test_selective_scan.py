"""Mamba S6 selective scan: structure of the traced program, grouping invariance, stable softplus."""

import numpy as np
from hypothesis import given, settings, strategies as st

import fractal as ft
from examples import selective_scan as m
from examples import zoo


def _nest(region):
    return [(e.op, _nest(e.regions[0]) if e.regions else None) for e in region.eqns
            if e.op in ("map", "scan", "fold", "reduce")]


def test_program_is_batch_map_then_group_map_over_time_scan():
    program = m.model.trace(*m.inputs("small"))
    assert _nest(program.body) == [("map", [("map", []), ("map", [("scan", []), ("map", [])]), ("map", [])])]
    (batch_map,) = [e for e in program.body.eqns if e.op == "map"]
    ops = [e.op for e in batch_map.regions[0].eqns]
    # project over time, transpose [time][group] -> [group][time], scan per group, transpose back
    assert ops == ["map", "flatten", "dilate", "flatten", "dilate", "map", "interleave", "window", "map"]
    group_map = batch_map.regions[0].eqns[5]
    assert [v.type.elem for v in group_map.inputs[2:]] == [ft.Tensor[(1, 4), ft.float32], ft.Tensor[(1, 1), ft.float32]]
    (scan,) = [e for e in group_map.regions[0].eqns if e.op == "scan"]
    assert scan.outputs[0].type.elem == ft.Tensor[(1, 4), ft.float32]   # h [1, N]: one channel per group


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), length=st.integers(1, 5), d_model=st.sampled_from([1, 2, 4, 6]),
       d_state=st.integers(1, 4), group_size=st.sampled_from([1, 2]), ragged=st.booleans(),
       seed=st.integers(0, 1000))
def test_matches_reference_on_random_sizes(batch, length, d_model, d_state, group_size, ragged, seed):
    group_size = min(group_size, d_model) if d_model % group_size == 0 else 1
    cfg = dict(batch=batch, length=length, d_model=d_model, d_state=d_state, groups=d_model // group_size)
    args = m.inputs(cfg, dtype=np.float64, ragged=ragged, seed=seed)
    assert zoo.max_abs_error(m.outputs(m.model(*args)), m.reference(*args)) <= 1e-12


def test_channel_grouping_does_not_change_the_result():
    """Groups only vectorise independent channels: 1, 2 or 4 groups of 4 channels agree."""
    outs = []
    for groups in (4, 2, 1):
        cfg = dict(m.CONFIGS["small"], groups=groups)
        outs.append(m.outputs(m.model(*m.inputs(cfg, dtype=np.float64, seed=5))))
    assert zoo.max_abs_error(outs[1], outs[0]) <= 1e-13
    assert zoo.max_abs_error(outs[2], outs[0]) <= 1e-13


def test_softplus_is_stable_for_large_inputs():
    x = np.array([[-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0]])
    got = ft.function(m.softplus)(x)
    assert np.all(np.isfinite(got))
    # absolute accuracy: without a log1p, log(1 + exp(-|x|)) rounds 1 + tiny (error <= 1 ulp of 1)
    np.testing.assert_allclose(got, np.logaddexp(0.0, x), rtol=1e-15, atol=2.3e-16)


def test_steps_depend_on_the_input_through_delta():
    """Selectivity: the same token gives different outputs under different step sizes."""
    batch, p = m.inputs("small", dtype=np.float64, ragged=False)
    base = m.outputs(m.model(batch, p))
    bigger_steps = p._replace(b_delta=p.b_delta + 3.0)
    assert zoo.max_abs_error(m.outputs(m.model(batch, bigger_steps)), base) > 1e-3
