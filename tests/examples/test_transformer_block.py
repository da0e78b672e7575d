"""transformer_block: the combinator nest, ragged-batch honesty, pre/post-norm against PyTorch."""

import numpy as np
import pytest

import fractal as ft
from examples import transformer_block as m
from examples import zoo


def _combinators(region):
    return [e.op for e in region.eqns if e.regions]


def _only(region, op):
    eqns = [e for e in region.eqns if e.op == op]
    assert len(eqns) == 1, [e.op for e in region.eqns]
    return eqns[0]


def test_nest_is_batch_map_head_map_query_map_key_reduce():
    program = m.model.trace(*m.inputs("small"))
    batch = _only(program.body, "map").regions[0]
    # LN1 per token, heads, residual init, merge of heads, FFN per token
    assert _combinators(batch) == ["map", "map", "map", "reduce", "map"]
    heads = [e for e in batch.eqns if e.op == "map"][1]
    assert len(heads.inputs) == 7                      # zip(Wq, bq, Wk, bk, Wv, bv, Wo)
    head = heads.regions[0]
    assert _combinators(head) == ["map", "map", "map", "map"]  # q, k, v projections, queries
    query = head.eqns[-1].regions[0]
    # scores, max, exp, sum, weighted sum of values: all over the keys of this sequence
    assert _combinators(query) == ["map", "reduce", "map", "reduce", "reduce"]
    merge = _only(batch, "reduce")
    assert isinstance(merge.outputs[0].type, ft.FractalTensorType)  # the state is the token list


def test_no_stack_no_padding_in_the_program():
    program = m.model.trace(*m.inputs("small"))
    ops = {e.op for e in program.eqns()}
    assert "stack" not in ops and "window" not in ops and "where" not in ops


def test_post_norm_traces_a_different_program():
    batch, params, _ = m.inputs("small")
    pre, post = m.model.trace(batch, params, True), m.model.trace(batch, params, False)
    assert pre != post
    body = _only(post.body, "map").regions[0]
    assert _combinators(body) == ["map", "map", "reduce", "map", "map"]  # no LN1 before attention


def test_samples_do_not_see_each_other():
    batch, params, norm_first = m.inputs("small", dtype=np.float64)
    assert batch.lengths()[0] != batch.lengths()[1]
    together = m.outputs(m.model(batch, params, norm_first))
    alone = m.outputs(m.model(batch[1:], params, norm_first))
    np.testing.assert_allclose(alone[0], together[1], rtol=0, atol=1e-12)


def test_attention_is_permutation_equivariant():
    # no positional encoding: reversing each sequence reverses each output
    batch, params, norm_first = m.inputs("small", dtype=np.float64)
    out = m.outputs(m.model(batch, params, norm_first))
    rev = m.outputs(m.model(ft.map(ft.reverse, batch), params, norm_first))
    for a, b in zip(out, rev):
        np.testing.assert_allclose(a[::-1], b, rtol=0, atol=1e-12)


@pytest.mark.skipif(not zoo.torch_available(), reason="PyTorch is not installed")
@pytest.mark.parametrize("config", ["small", "small_post_norm"])
def test_matches_torch_encoder_layer(config):
    args = m.inputs(config, dtype=np.float64)
    err = zoo.max_abs_error(m.outputs(m.model(*args)), m.torch_reference(*args))
    assert err <= 1e-9


def test_post_norm_matches_numpy():
    for dtype in (np.float64, np.float32):
        args = m.inputs("small_post_norm", dtype=dtype)
        assert zoo.max_abs_error(m.outputs(m.model(*args)), m.reference(*args)) <= zoo.tolerance(dtype)
