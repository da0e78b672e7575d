"""flash_attention: map > map > map > reduce with the online-softmax state (m, l, o), whose
initial value is in state order and whose combine rule is associative."""

import numpy as np

import fractal as ft
from examples import flash_attention as m


def _only(eqns, op):
    (eqn,) = [e for e in eqns if e.op == op]
    return eqn


def _reduce_eqn(program):
    batch = _only(program.body.eqns, "map")
    heads = _only(batch.regions[0].eqns, "map")
    queries = _only(heads.regions[0].eqns, "map")
    return queries, _only(queries.regions[0].eqns, "reduce")


def test_nest_is_map_map_map_reduce_over_zipped_key_value_blocks():
    p = m.model.trace(*m.inputs("small"))
    queries, red = _reduce_eqn(p)
    assert red.attrs["n_state"] == 3
    z = _only(queries.regions[0].eqns, "zip")
    assert red.inputs[3:] == z.outputs                      # iterates over zip(ks, vs)
    assert [e.op for e in queries.regions[0].eqns][-1] == "div"   # o / l
    assert not {"scan", "fold"} & {e.op for e in p.eqns()}


def test_initial_state_is_minus_inf_zero_zero_in_state_order():
    cfg = m.CONFIGS["small"]
    p = m.model.trace(*m.inputs("small"))
    queries, red = _reduce_eqn(p)
    made = {v: e for e in queries.regions[0].eqns for v in e.outputs}
    inits = [made[v] for v in red.inputs[:3]]
    assert [e.op for e in inits] == ["full"] * 3
    assert [e.attrs["value"] for e in inits] == [float("-inf"), 0, 0]
    assert [v.type.shape for v in red.inputs[:3]] == [(cfg["block"], 1), (cfg["block"], 1),
                                                      (cfg["block"], cfg["head_dim"])]
    # the body yields the new max first: maximum(m_old, block max) of the first state slot
    body = red.regions[0]
    m_new = next(e for e in body.eqns if e.outputs[0] == body.results[0])
    assert m_new.op == "maximum" and body.params[0] in m_new.inputs


def _blocks(seed=4, n=5):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((3, 4))
    ks = ft.from_numpy(rng.standard_normal((n, 3, 4)))
    vs = ft.from_numpy(rng.standard_normal((n, 3, 4)))
    return q, ks, vs


def _fold(q, ks, vs):
    init = m.initial_state(q.shape[0], q.shape[1], q.dtype)
    return ft.reduce(lambda s, kv: m.combine(s, m.block_state(q, *kv)), ft.zip(ks, vs), init)


def _assert_states_close(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_reduce_equals_the_combination_of_its_two_halves():
    q, ks, vs = _blocks()
    whole = _fold(q, ks, vs)
    for cut in range(1, len(ks)):
        split = m.combine(_fold(q, ks[:cut], vs[:cut]), _fold(q, ks[cut:], vs[cut:]))
        _assert_states_close(whole, split)
    # a right-leaning bracketing: b0 . (b1 . (b2 . (b3 . b4)))
    states = [m.block_state(q, k, v) for k, v in zip(ks, vs)]
    right = states[-1]
    for s in reversed(states[:-1]):
        right = m.combine(s, right)
    _assert_states_close(whole, right)
    # and the normalised result is plain softmax attention
    k, v = ks.to_numpy().reshape(-1, 4), vs.to_numpy().reshape(-1, 4)
    s = q @ k.T / 2.0
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(whole.o / whole.l, p / p.sum(-1, keepdims=True) @ v, rtol=1e-12, atol=1e-12)


def test_initial_state_is_the_identity_of_combine():
    q, ks, vs = _blocks()
    s = m.block_state(q, ks[0], vs[0])
    e = m.initial_state(3, 4, np.float64)
    _assert_states_close(m.combine(e, s), s)
    _assert_states_close(m.combine(s, e), s)


def test_traced_program_split_over_key_halves_matches_the_model():
    @ft.function
    def halves(q, k, v):
        def head(qs, ks, vs):
            def block(qb):
                def part(kk, vv):
                    init = m.initial_state(qb.shape[0], qb.shape[1], qb.dtype)
                    return ft.reduce(lambda s, kv: m.combine(s, m.block_state(qb, *kv)), ft.zip(kk, vv), init)
                st = m.combine(part(ks[:2], vs[:2]), part(ks[2:], vs[2:]))
                return st.o / st.l
            return ft.map(block, qs)
        return ft.map(lambda a, b, c: ft.map(head, a, b, c), q, k, v)

    args = m.inputs("small", dtype=np.float64)
    assert min(len(s[0]) for s in args[0]) > 2
    for got, want in zip(m.outputs(halves(*args)), m.outputs(m.model(*args))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_ragged_samples_keep_their_own_lengths():
    args = m.inputs("small", ragged=True)
    blocks = [len(s[0]) for s in args[0]]
    assert len(set(blocks)) > 1
    out = m.outputs(m.model(*args))
    assert [o.shape[1] for o in out] == [n * m.CONFIGS["small"]["block"] for n in blocks]
