"""BiGRU: forward and reverse scans per layer, concatenated; the reverse scan is per sequence."""

import numpy as np

import fractal as ft
from examples import bigru as m
from examples import zoo


def _combinators(region):
    return [e for e in region.eqns if e.op in ("map", "scan", "fold", "reduce")]


def test_nest_is_batch_map_layer_fold_two_scans_and_a_concat_map():
    program = m.model.trace(*m.inputs("small"))
    (batch_map,) = _combinators(program.body)
    (fold,) = _combinators(batch_map.regions[0])
    assert fold.op == "fold"
    fwd, bwd, cat = _combinators(fold.regions[0])
    assert (fwd.op, bwd.op, cat.op) == ("scan", "scan", "map")
    assert fwd.attrs["reverse"] is False and bwd.attrs["reverse"] is True
    assert fwd.inputs[-1] == bwd.inputs[-1]                       # both scan the layer's input
    assert list(cat.inputs) == [fwd.outputs[0], bwd.outputs[0]]
    assert [e.op for e in cat.regions[0].eqns] == ["concat"]
    assert [e.op for e in program.eqns() if e.op in ("reverse", "gather")] == []  # no explicit reversal


def _flip(params):
    return m.BiGRUParams(fwd=params.bwd, bwd=params.fwd)


def test_reversing_the_inputs_and_swapping_directions_reverses_the_outputs():
    batch, params = m.inputs("small", dtype=np.float64)           # one layer
    got = m.outputs(m.model(batch, params))
    rev = ft.fractal([list(s.to_numpy()[::-1]) for s in batch], type=batch.type)
    flipped = m.outputs(m.model(rev, _flip(params)))
    h = got[0].shape[-1] // 2
    for a, b in zip(got, flipped):
        want = np.concatenate([a[::-1, h:], a[::-1, :h]], axis=-1)
        assert np.abs(b - want).max() <= 1e-12


def test_backward_direction_starts_at_each_sequences_own_end():
    """A sequence gives the same result alone as in a ragged batch (its reverse scan starts at its
    own last element, not at the longest one's), and the backward states do see the future:
    appending a step to a sequence changes them."""
    batch, params = m.inputs(dict(depth=2, length=5, batch=3, hidden=3), dtype=np.float64)
    assert len(set(batch.lengths())) > 1
    together = m.outputs(m.model(batch, params))
    alone = [m.outputs(m.model(ft.fractal([list(s.to_numpy())], type=batch.type), params))[0] for s in batch]
    assert zoo.max_abs_error(together, alone) <= 1e-12
    last = batch[0].to_numpy()
    longer = m.outputs(m.model(ft.fractal([list(last) + [last[0]]], type=batch.type), params))[0]
    assert np.abs(longer[:len(last)] - together[0]).max() > 1e-6
