"""Ragged batches: sorted by length, each step computing only the sequences still running.

The lowering sorts a map's points by decreasing length (`length_order`) and marks a loop over
the steps with its live prefix (`active m < n(s)`, `active_prefix` / `step_bound`); the
`bucket` pass shrinks the loop's stages to that prefix.  Results are unchanged (the map's
results are un-permuted): the zoo's cpu == interpreter tests run ragged batches.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fractal as ft
from examples import zoo
from fractal.lower.lower_ragged import MAX_GROUPS, active_prefix, length_order, step_bound
from fractal.lower.lower_values import ROOT
from fractal.lower.tile_ir import Gemm, Loop, Stage


def counts_of(lengths, steps):
    """Live sequences per step: how many are longer than s."""
    lengths = np.asarray(lengths)
    return np.array([(lengths > s).sum() for s in range(steps)])


def evaluate(bound, var, steps):
    return np.array([bound.evaluate({var: s}) for s in range(steps)])


def test_step_bound_is_exact_for_few_distinct_lengths():
    """Lengths [5, 3, 3, 2]: 4, 4, 3, 1, 1 live at steps 0..4, one term per length group."""
    bound = step_bound(counts_of([5, 3, 3, 2], 5), "s")
    assert list(evaluate(bound, "s", 5)) == [4, 4, 3, 1, 1]
    assert str(bound) == "min(1, max(0, -s + 2)) + 2*min(1, max(0, -s + 3)) + 1"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=64))
def test_step_bound_covers_every_live_sequence_with_few_terms(lengths):
    """Any batch: the bound is at least the live count at every step (a sequence is never
    skipped), at most the batch, exact when at most MAX_GROUPS lengths are distinct, and
    has at most MAX_GROUPS terms."""
    steps = max(lengths)
    counts = counts_of(lengths, steps)
    bound = step_bound(counts, "s")
    got = evaluate(bound, "s", steps)
    assert np.all(got >= counts) and np.all(got <= len(lengths))
    if len(set(lengths)) <= MAX_GROUPS:
        assert np.array_equal(got, counts)
    assert len(bound.terms) <= MAX_GROUPS


def test_length_order_sorts_a_ragged_batch_longest_first_and_leaves_a_regular_one():
    row = np.zeros((1, 2), np.float32)
    ragged = ft.fractal([ft.fractal([row] * n) for n in (2, 5, 3, 5)])
    regular = ft.fractal([ft.fractal([row] * 3) for _ in range(4)])

    def as_points(x):  # the list at the one point of the root domain
        points = np.empty((), dtype=object)
        points[()] = x
        return points

    order = length_order([as_points(ragged)], ROOT)
    assert list(order[()]) == [1, 3, 2, 0], "stable: the two of length 5 keep their order"
    assert length_order([as_points(regular)], ROOT) is None


def test_active_prefix_bounds_the_live_points_of_each_step():
    """Sorted lengths [5, 3, 3, 2]: m < 4, 4, 3, 1, 1; the longest sequence last (unsorted)
    leaves no step a shorter prefix, and a regular batch has nothing to skip."""
    from fractal.lower.lower_values import Domain
    lengths = np.array([5, 3, 3, 2])
    valid = np.arange(5)[None, :] < lengths[:, None]  # (m, s)
    hint = active_prefix(Domain(("m", "s"), (4, 5), valid, (True, False)))
    assert str(hint.point) == "m" and list(evaluate(hint.bound, "s", 5)) == [4, 4, 3, 1, 1]
    assert active_prefix(Domain(("m", "s"), (4, 5), valid[::-1], (True, False))) is None
    assert active_prefix(Domain(("m", "s"), (4, 5), np.ones((4, 5), bool), (True, False))) is None


def test_active_prefix_of_two_map_dims_counts_points_in_row_order():
    """A dilated layer: sequences (m) of lengths [6, 5, 2] split into 2 interleaved groups
    (j) of lengths ceil((L - j) / 2).  Points are numbered j + 2*m; at each step the bound is
    one past the last live point (some points below it may be dead: a hint may be loose)."""
    from fractal.lower.lower_values import Domain
    lengths = np.array([[3, 3], [3, 2], [1, 1]])  # (m, j)
    valid = np.arange(3)[None, None, :] < lengths[..., None]  # (m, j, s)
    hint = active_prefix(Domain(("m", "j", "s"), (3, 2, 3), valid, (True, True, False)))
    assert str(hint.point) == "j + 2*m"
    assert list(evaluate(hint.bound, "s", 3)) == [6, 4, 3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.booleans()), min_size=1, max_size=3), st.integers(1, 5),
       st.integers(0, 2**32 - 1))
def test_active_prefix_bounds_every_live_point_of_every_step(dims, steps, seed):
    """Any mix of map and sequential dims around the step dim, any valid points: at every
    step each valid point's position in row order is below the bound, and the bound is one
    past the last one (made non-increasing) when there are few distinct lengths."""
    from fractal.lower.lower_values import Domain
    extents = tuple(n for n, _ in dims) + (steps,)
    kinds = tuple(par for _, par in dims) + (False,)
    valid = np.random.default_rng(seed).random(extents) < 0.6
    domain = Domain(tuple(f"v{k}" for k in range(len(extents))), extents, valid, kinds)
    hint = active_prefix(domain)
    par = [k for k in domain.order if kinds[k] and k < len(dims)]
    weights = {k: int(np.prod([extents[j] for j in par[par.index(k) + 1:]], dtype=np.int64)) for k in par}
    last = np.full(steps, -1)
    for pt in zip(*np.nonzero(valid)):
        last[pt[-1]] = max(last[pt[-1]], sum(weights[k] * int(pt[k]) for k in par))
    ends = np.maximum.accumulate((last + 1)[::-1])[::-1]
    total = int(np.prod([extents[k] for k in par], dtype=np.int64))
    if not par or ends.min() >= total:
        assert hint is None
        return
    bound = evaluate(hint.bound, f"v{len(dims)}", steps)
    assert all(b >= e for b, e in zip(bound, ends))
    if len(set(ends.tolist())) <= MAX_GROUPS:
        assert list(bound) == list(ends)


def _recurrent_stages(program):
    """(loop, stage) for each stage with a GEMM inside a top-level sequential loop."""
    return [(loop, s) for loop in program.body if isinstance(loop, Loop) and loop.kind == "sequential"
            for s in loop.body if isinstance(s, Stage) and any(isinstance(op, Gemm) for op in s.body)]


def test_a_ragged_rnn_runs_each_step_over_its_live_sequences_only():
    """bigru, ragged: each time loop carries the live prefix, and its recurrent stage's batch
    dim runs exactly over the sequences longer than the step."""
    model = zoo.load("bigru")
    args = model.inputs("small", dtype=np.float64, ragged=True)
    compiled = model.model.compile(*args, target="cpu-generic")
    lengths = zoo.lengths_for(model.CONFIGS["small"], True, 0)
    assert len(set(lengths)) > 1, "the test needs a ragged batch"
    stages = _recurrent_stages(compiled.tile_ir)
    assert len(stages) == 2, "one recurrent stage per direction"
    for loop, stage in stages:
        assert loop.active is not None
        (var,) = loop.active.point.vars()
        (dim,) = [d for d in stage.dims if d.var == var]
        steps = loop.stop.const
        assert list(evaluate(dim.stop, loop.var, steps)) == list(counts_of(lengths, steps))
    result = model.outputs(compiled.run(*args))
    assert zoo.max_abs_error(result, model.outputs(model.model(*args, backend="interpreter"))) < 1e-12


@pytest.mark.parametrize("name", ["bigru", "stacked_lstm"])
def test_a_regular_batch_keeps_its_full_box(name):
    model = zoo.load(name)
    compiled = model.model.compile(*model.inputs("small", ragged=False), target="cpu-generic")
    loops = [s for s in compiled.tile_ir.body if isinstance(s, Loop)]
    assert loops and all(loop.active is None for loop in loops)


# --- affine_fit: which list elements are views ----------------------------------------------

def test_affine_fit_finds_the_row_index_of_valid_points_only():
    """Rows `3 + 8*i + j` on the valid points of a ragged (i, j) box are a view; padded
    points hold anything; rows that are not affine, or that leave the buffer, are not."""
    from fractal.lower.affine_fit import affine_fit
    i, j = np.indices((6, 8))
    valid = j < np.array([8, 5, 8, 2, 7, 1])[:, None]
    rows = np.where(valid, 3 + 8 * i + j, 999)
    assert str(affine_fit(rows, valid, ("i", "j"), 64)) == "8*i + j + 3"
    assert affine_fit(rows, valid, ("i", "j"), 50) is None, "the padded box reaches row 50"
    bent = np.where(valid, rows + (i == 5) * (j == 0), 999)
    assert affine_fit(bent, valid, ("i", "j"), 64) is None
    assert str(affine_fit(np.where(valid, 7, 0), valid, ("i", "j"), 64)) == "7"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=3, max_size=3), st.integers(0, 40),
       st.lists(st.integers(0, 5), min_size=4, max_size=4))
def test_affine_fit_recovers_any_affine_row_index(coef, const, lengths):
    """Whatever the coefficients and ragged lengths, an affine index is found exactly."""
    from fractal.lower.affine_fit import affine_fit
    pts = np.indices((4, 5, 3))
    valid = pts[1] < np.array(lengths)[:, None, None]
    rows = const + 40 + sum(c * p for c, p in zip(coef, pts))  # inside 0..119 over the whole box
    got = affine_fit(np.where(valid, rows, -1), valid, ("a", "b", "c"), 120)
    assert got is not None
    for p in np.argwhere(valid):
        assert got.evaluate(dict(zip("abc", map(int, p)))) == rows[tuple(p)]


def test_affine_fit_falls_back_to_every_point_when_its_sample_is_degenerate(monkeypatch):
    """A sample that does not pin the fit down (here one point) cannot reject an index: the
    fit is redone on every valid point, which finds affine rows and still rejects others."""
    import fractal.lower.affine_fit as lv
    monkeypatch.setattr(lv, "_sample_points", lambda valid, present: np.zeros((1, valid.ndim), dtype=np.int64))
    i, j = np.indices((5, 7))
    valid = j < np.array([7, 3, 7, 1, 6])[:, None]
    rows = 2 + 7 * i + j
    assert str(lv.affine_fit(rows, valid, ("i", "j"), 64)) == "7*i + j + 2"
    assert lv.affine_fit(rows + (i * j == 4), valid, ("i", "j"), 64) is None


def test_affine_fit_of_gids_subtracts_the_buffer_offset():
    """Gids of one buffer fit as they are: the offset of the buffer's rows is taken off."""
    from fractal.lower.affine_fit import affine_fit
    i, j = np.indices((3, 4))
    base = 5 << 40
    assert str(affine_fit(base + 4 * i + j, np.ones((3, 4), bool), ("i", "j"), 12, offset=base)) == "4*i + j"
    assert affine_fit(base + 4 * i + j, np.ones((3, 4), bool), ("i", "j"), 11, offset=base) is None


def test_a_gather_is_shared_only_along_axes_every_line_of_which_holds_one_row():
    """A row read at every point of an axis is gathered once and broadcast along it; one line
    with a second row (where the quick check of a few lines does not look) keeps the axis."""
    from fractal.lower.lower_program import _constant_along
    gids = np.broadcast_to(np.arange(6)[:, None, None], (6, 50, 1000)).copy()
    gids[2, 7, 1] = -1  # an invalid point does not count
    assert np.array_equal(_constant_along(gids, 1), np.broadcast_to(np.arange(6)[:, None], (6, 1000)))
    assert _constant_along(gids, 0) is None
    gids[4, 31, 777] = 99  # one line of 6000
    assert _constant_along(gids, 1) is None


def test_stacking_checks_every_chunk_of_lists_for_consecutive_rows():
    from fractal.lower.lower_access import _consecutive
    lists = [np.arange(k, k + 3) for k in range(10)]
    assert _consecutive(lists, 3, chunk=4)
    lists[9] = np.array([9, 10, 12])
    assert not _consecutive(lists, 3, chunk=4)


# --- ragged recurrences end to end ----------------------------------------------------------

@ft.function
def ragged_rnn(batch, w):
    """Per sequence: a tanh recurrence over its steps, its states and its last state."""
    def sequence(xs):
        states = ft.scan(lambda h, x: ft.tanh(h @ w + x), xs, ft.zeros((1, 3), np.float64))
        return states, ft.fold(lambda acc, h: acc + h, states, ft.zeros((1, 3), np.float64))
    return ft.map(sequence, batch)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=7), st.integers(0, 2 ** 16))
def test_ragged_recurrences_compile_to_live_prefixes_and_equal_the_interpreter(lengths, seed):
    """Any batch of lengths, in any order: the compiled program equals the interpreter
    (results in the program's order), and its loops carry a live prefix exactly when the
    lengths differ."""
    rng = np.random.default_rng(seed)
    batch = ft.fractal([ft.fractal([rng.standard_normal((1, 3)) for _ in range(n)]) for n in lengths])
    w = rng.standard_normal((3, 3)) * 0.5
    compiled = ragged_rnn.compile(batch, w, target="cpu-generic")
    got, want = compiled.run(batch, w), ragged_rnn.interpret(batch, w)
    compared = 0
    for (gs, gl), (ws, wl) in zip(zip(*got), zip(*want)):
        np.testing.assert_allclose(np.stack(list(gs)), np.stack(list(ws)), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gl, wl, rtol=1e-12, atol=1e-12)
        compared += 1
    assert compared == len(lengths)
    hinted = [s for s in compiled.tile_ir.body if isinstance(s, Loop) and s.active is not None]
    assert bool(hinted) == (len(set(lengths)) > 1)


def test_a_map_over_lists_of_empty_lists_compiles_to_the_interpreters_result():
    """Found by the random programs: inner lists all empty in one sample made the reduce over
    a map's results read, at its dead points, the rows of another sample (see test_tile_ir's test_a_dead_points_reads_do_not_count_against_a_parallel_loop); the
    contract refused the lowering though every live value was right."""
    T = ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[ft.Tensor[(), ft.float64]]]]
    xs = ft.fractal([[[]], [[], [np.array(5.0)]]], type=T)
    c = np.array([3.0])

    @ft.function
    def f(xs, c):
        return ft.map(lambda a: ft.reduce(lambda acc, e: acc * 2.0 + e,
                                          ft.map(lambda e: ft.reduce(lambda p, q: p + q, e, 0.0) + ft.mean(c), a),
                                          ft.mean(c)), xs)
    want = [float(v) for v in f.interpret(xs, c).to_list()]
    assert [float(v) for v in f(xs, c).to_list()] == want == [9.0, 26.0]
