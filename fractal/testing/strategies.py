"""Hypothesis strategies for FractalTensors, in the style of `hypothesis.extra.numpy`.

    import fractal as ft
    from hypothesis import given, strategies as st
    from fractal.testing import fractal_tensors, tensors, arguments_for

    SEQS = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 4), ft.float64]]]

    @given(fractal_tensors(SEQS, max_len=5, min_value=-1, max_value=1))
    def test_lengths_survive(xs):             # xs: a ragged batch of sequences of f64[1,4]
        assert xs.type == SEQS

    fractal_tensors((1, 4), depth=2)          # a leaf shape and a depth: ft<ft<f32[1,4]>>
    fractal_tensors(SEQS, lengths=3)          # every list of length 3 (a regular tensor)
    fractal_tensors(SEQS, lengths=[2, 0, 1])  # exactly this structure (as `xs.lengths()` prints it)

    @given(arguments_for(model, max_len=4))   # one argument tuple from model's annotations
    def test_model(args): ...

    arguments_for(model, min_value=-1, max_value=1,      # leaf options go to every leaf
                  sizes={"xs": {"max_len": 10},           # options for one list,
                         "p.w": ft.FractalTensor[ft.Tensor[(4, 4), ft.float32]],  # a type for a bare annotation,
                         "h0": np.zeros((1, 4))},          # a fixed value (or any strategy)
                  same_lengths=[("xs", "ys")])            # lists the model zips: equal lengths

    list_lengths(2, max_len=4).flatmap(       # or share one drawn structure by hand
        lambda n: st.tuples(fractal_tensors(SEQS, lengths=n), fractal_tensors(SEQS, lengths=n)))

Lengths are drawn per list, between `min_len` and `max_len` at every level, with the edge
cases that break models favoured: empty lists at each level, lists of length 1, lists at
`max_len`, and lists whose lengths are all equal.  `max_leaves` bounds the number of leaf
tensors of one FractalTensor, so that deep types stay small.  A failing example shrinks
towards fewer and shorter lists, then towards simpler leaf values (0).  Leaves are drawn by
`tensors` (see `fractal.testing.leaves`): finite by default, the special floats on request.
"""

from .arguments import arguments_for
from .leaves import tensors
from .lists import fractal_tensors, list_lengths

__all__ = ["fractal_tensors", "tensors", "arguments_for", "list_lengths"]
