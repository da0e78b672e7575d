"""rnn_attention: the combinator nest, ragged source/target handling, uniform attention."""

import numpy as np

import fractal as ft
from examples import rnn_attention as m


def _combinators(region):
    return [e.op for e in region.eqns if e.regions]


def test_nest_is_batch_map_encoder_scan_decoder_scan_source_map_reduce():
    program = m.model.trace(*m.inputs("small"))
    (batch,) = [e for e in program.body.eqns if e.regions]
    assert batch.op == "map" and len(batch.inputs) == 2          # zip(sources, targets)
    sample = batch.regions[0]
    assert _combinators(sample) == ["scan", "map", "scan"]       # encoder, keys, decoder
    assert "list_index" in [e.op for e in sample.eqns]           # enc[-1]: the sample's own last state
    decoder = sample.eqns[-1]
    assert decoder.attrs["n_state"] == 2                         # (decoder state, context)
    step = decoder.regions[0]
    # scores, softmax (max, exp, sum, normalise), context
    assert _combinators(step) == ["map", "reduce", "map", "reduce", "map", "reduce"]
    assert "stack" not in {e.op for e in program.eqns()}


def test_samples_do_not_see_each_other():
    sources, targets, params = m.inputs("small", dtype=np.float64)
    states, contexts = m.outputs(m.model(sources, targets, params))
    for i in range(len(sources)):
        s, c = m.outputs(m.model(sources[i:i + 1], targets[i:i + 1], params))
        np.testing.assert_allclose(s[0], states[i], rtol=0, atol=1e-12)
        np.testing.assert_allclose(c[0], contexts[i], rtol=0, atol=1e-12)


def test_zero_score_vector_gives_the_mean_of_the_samples_own_encoder_states():
    sources, targets, params = m.inputs("small", dtype=np.float64)
    assert len(set(sources.lengths())) > 1
    params = params._replace(v=np.zeros_like(params.v))          # every score 0: uniform attention
    _, contexts = m.outputs(m.model(sources, targets, params))
    for src, ctx in zip(sources, contexts):
        h = np.zeros((1, params.encoder.u.shape[0]))
        enc = []
        for x in src.to_numpy():
            h = m._gru(x, h, params.encoder)
            enc.append(h[0])
        np.testing.assert_allclose(ctx, np.broadcast_to(np.mean(enc, axis=0), ctx.shape), rtol=0, atol=1e-12)


def test_decoder_starts_from_the_last_encoder_state():
    # with zero decoder weights the GRU update is h' = (1 - z) n + z h with z = n = sigmoid/tanh(0)
    sources, targets, params = m.inputs("small", dtype=np.float64)
    dec = params.decoder
    zero = m.GRUParams(*(np.zeros_like(a) for a in dec))
    states, _ = m.outputs(m.model(sources, targets, params._replace(decoder=zero)))
    for src, s in zip(sources, states):
        h = np.zeros((1, params.encoder.u.shape[0]))
        for x in src.to_numpy():
            h = m._gru(x, h, params.encoder)
        np.testing.assert_allclose(s[0], 0.5 * h[0], rtol=0, atol=1e-12)   # (1 - 0.5) * 0 + 0.5 * h


def test_ragged_lengths_are_independent_per_side():
    sources, targets, _ = m.inputs("small")
    assert sources.lengths() != targets.lengths()
    regular_s, regular_t, _ = m.inputs("small", ragged=False)
    assert set(regular_s.lengths()) == {m.CONFIGS["small"]["src_length"]}
    assert set(regular_t.lengths()) == {m.CONFIGS["small"]["trg_length"]}
    assert isinstance(sources, ft.FractalTensor) and sources.depth == 2
