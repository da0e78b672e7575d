"""b2b_gemm: map(row blocks) > reduce(N blocks) > reduce(K blocks), fused: no M x N intermediate."""

import numpy as np
import pytest

from examples import b2b_gemm as m


def _only(eqns, op):
    (eqn,) = [e for e in eqns if e.op == op]
    return eqn


def test_nest_is_map_over_reduce_over_reduce():
    p = m.model.trace(*m.inputs("small"))
    assert [e.op for e in p.body.eqns] == ["map"]
    outer = _only(p.body.eqns[0].regions[0].eqns, "reduce")       # over N blocks: second GEMM
    inner = _only(outer.regions[0].eqns, "reduce")                # over K blocks: first GEMM
    assert [e.op for e in inner.regions[0].eqns] == ["matmul", "add"]
    assert [e.op for e in outer.regions[0].eqns if e.op != "zip"][-3:] == ["reduce", "matmul", "add"]
    assert {e.op for e in p.eqns()} >= {"zip"} and not {"scan", "fold"} & {e.op for e in p.eqns()}


def test_intermediate_a_times_b_is_only_ever_one_tile():
    cfg = m.CONFIGS["small"]
    p = m.model.trace(*m.inputs("small"))
    shapes = {v.type.shape for e in p.eqns() for v in e.outputs if hasattr(v.type, "shape")}
    assert (cfg["TM"], cfg["TN"]) in shapes                        # the (A @ B) tile
    assert not any(s[-1] == cfg["N"] for s in shapes)              # never a full row of A @ B


def test_blocked_inputs_hold_the_dense_tiles():
    cfg = m.CONFIGS["small"]
    a, b, c = m.dense_operands(cfg, np.float64)
    ab, bb, cb = m.inputs("small", dtype=np.float64)
    tm, tn, tk = cfg["TM"], cfg["TN"], cfg["TK"]
    np.testing.assert_array_equal(ab[1][0], a[tm:2 * tm, :tk])
    np.testing.assert_array_equal(bb[1][0], b[:tk, tn:2 * tn])      # b[n][k] == B[k, n]
    np.testing.assert_array_equal(cb[1], c[tn:2 * tn])


@pytest.mark.parametrize("tiles", [(4, 4, 2), (16, 8, 8), (2, 1, 1)])
def test_result_does_not_depend_on_the_tiling(tiles):
    cfg = dict(m.CONFIGS["small"], TM=tiles[0], TN=tiles[1], TK=tiles[2])
    a, b, c = m.dense_operands(cfg, np.float64)
    d = m.outputs(m.model(*m.inputs(cfg, dtype=np.float64)))
    np.testing.assert_allclose(d, (a @ b) @ c, rtol=1e-12, atol=1e-12)
