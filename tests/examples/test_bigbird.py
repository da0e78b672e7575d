"""bigbird: map(batch) > map(query blocks zipped with circular windows) with global blocks 0 and
n-1; blocks that are both window and global blocks count twice (documented convention)."""

import numpy as np
import pytest

import fractal as ft
from examples import bigbird as m


def _only(eqns, op):
    (eqn,) = [e for e in eqns if e.op == op]
    return eqn


def test_nest_is_map_over_map_with_shifted_windows_and_global_blocks():
    p = m.model.trace(*m.inputs("small"))
    sample = _only(p.body.eqns, "map")
    sample_ops = [e for e in sample.regions[0].eqns]
    windows = [e for e in sample_ops if e.op == "shifted_window"]
    assert len(windows) == 2 and all(e.attrs["size"] == 3 for e in windows)   # keys and values
    assert sorted(e.attrs["i"] for e in sample_ops if e.op == "list_index") == [-1, -1, 0, 0]
    query = [e for e in sample_ops if e.op == "map"][-1]
    assert set(windows[0].outputs + windows[1].outputs) <= set(query.inputs)
    body_ops = [e.op for e in query.regions[0].eqns]
    assert body_ops.count("softmax") == 1 and body_ops[-1] == "matmul"
    assert not {"scan", "fold", "reduce"} & {e.op for e in p.eqns()}


def test_scores_span_five_blocks():
    cfg = m.CONFIGS["small"]
    p = m.model.trace(*m.inputs("small"))
    (sm,) = [e for e in p.eqns() if e.op == "softmax"]
    assert sm.outputs[0].type.shape == (cfg["block"], 5 * cfg["block"])


def _attend(q, keys, values):
    s = q @ keys.T / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True) @ values


def test_a_window_block_that_is_also_global_counts_twice():
    q, k, v = m.inputs("small", dtype=np.float64, ragged=False)
    out = m.model(q, k, v)[0]
    qs, ks, vs = (x[0].to_numpy() for x in (q, k, v))             # [n, Bs, H]
    n = len(ks)
    # query block 0: window (n-1, 0, 1) + globals (0, n-1): blocks 0 and n-1 appear twice
    order = [n - 1, 0, 1, 0, n - 1]
    want = _attend(qs[0], np.concatenate(ks[order]), np.concatenate(vs[order]))
    np.testing.assert_allclose(out[0], want, rtol=1e-12, atol=1e-12)
    dedup = [n - 1, 0, 1]
    assert np.abs(out[0] - _attend(qs[0], np.concatenate(ks[dedup]), np.concatenate(vs[dedup]))).max() > 1e-3
    # an interior block has five distinct blocks
    i = 2
    order = [i - 1, i, i + 1, 0, n - 1]
    np.testing.assert_allclose(out[i], _attend(qs[i], np.concatenate(ks[order]), np.concatenate(vs[order])),
                               rtol=1e-12, atol=1e-12)


def test_multiplicities_count_five_blocks_per_valid_query_block():
    counts = m.block_multiplicity(np.array([6, 3, 2, 1]), 6)
    assert counts[0].sum(axis=-1).tolist() == [5] * 6
    assert counts[1].sum(axis=-1).tolist() == [5, 5, 5, 0, 0, 0]
    assert counts[0, 0].tolist() == [2, 1, 0, 0, 0, 2]
    assert counts[3, 0, 0] == 5


@pytest.mark.parametrize("blocks", [[1, 2, 3], [4, 1]])
def test_samples_with_few_blocks_match_the_reference(blocks):
    rng = np.random.default_rng(7)
    bs, h = 2, 3

    def make():
        return ft.fractal([ft.from_numpy(rng.standard_normal((n, bs, h))) for n in blocks])

    args = make(), make(), make()
    got = m.outputs(m.model(*args))
    for g, w in zip(got, m.reference(*args)):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
