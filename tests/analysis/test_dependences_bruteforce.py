"""The dependence analysis against a brute force that runs the program (tests/analysis/bruteforce.py).

`brute_force(f, *args)` executes the program on element IDs and records, for every read,
which iteration wrote the element: the dependences that really occur.  Per block we check:

* the analysis finds the same blocks, with the same dim kinds;
* NO MISSED DEPENDENCE: every vector the program exhibits is in `b.dependences`;
* NO SPURIOUS ONE when the analysis' extents are exact (regular inputs, every loop of the
  block's subtree ran exactly `extent` times): `b.dependences` (and `b.external`) equal the
  brute force's;
* on ragged lists the analysis reasons on the box of maximum extents, a short scan/fold
  padded with steps on phantom elements; the brute force pads the same way, so where
  every loop's longest run is its extent, every observed vector is listed (brute <= analysis).
  Where an access operator over-approximates an extent (`interleave`/`flatten` of the ragged
  sub-lists `dilate`/`split` make), an observed vector may be listed only as a sum of
  listed ones, which is all a schedule needs;
* the wavefront, if any, is a unimodular integer matrix under which every observed vector
  maps to a lexicographically positive one whose first component (the hyperplane) is >= 1;
* no observed vector is carried by a dim the analysis calls parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.analysis.dependences import carrying_dim
from fractal.analysis.wavefront import MAX_COEFFICIENT
from tests.analysis.bruteforce import brute_force
from tests.lang.strategies import GenConfig, build, flat_args, make_args, program_descs

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
F = ft.float64


def vec(*rows):
    return frozenset(tuple(r) for r in rows)


# -- the checks -----------------------------------------------------------------------------


def implied(d, vectors, extents) -> bool:
    """`d` is a sum of one or more of `vectors` (searched with partial sums in a box)."""
    vectors = [v for v in vectors if any(v)]
    seen, todo = set(), list(vectors)
    while todo:
        v = todo.pop()
        if v == d:
            return True
        if v in seen or any(abs(x) > 2 * max(e, 1) for x, e in zip(v, extents)):
            continue
        seen.add(v)
        todo += [tuple(a + b for a, b in zip(v, w)) for w in vectors]
    return False


def extents_exact(analysis, brute, i) -> bool:
    """Every loop of block i's subtree ran exactly as many times as its dim's extent says."""
    return all(trips <= {dim.extent} for j in brute[i].subtree
               for trips, dim in zip(brute[j].trips, analysis.blocks[j].dims))


def extents_are_longest_runs(analysis, brute, i) -> bool:
    """Every dim's extent is the longest run of its loop (ragged lists: the padded box)."""
    return all(max(trips, default=dim.extent) == dim.extent for j in brute[i].subtree
               for trips, dim in zip(brute[j].trips, analysis.blocks[j].dims))


def check_wavefront(b, observed) -> None:
    w = b.wavefront
    if w is None:
        return
    m = np.array(w.matrix, dtype=np.int64)
    assert m.shape == (len(b.dims), len(b.dims))
    assert round(abs(np.linalg.det(m))) == 1, f"wavefront matrix {w.matrix} is not unimodular"
    for d in observed:
        new = m @ np.array(d)
        assert new[0] >= 1, f"hyperplane {w.hyperplane} . {d} = {new[0]} < 1"
        k = carrying_dim(new)
        assert k is not None and new[k] > 0, f"{d} maps to {tuple(new)}: not lexicographically positive"


def check_against_brute_force(f, *args) -> None:
    a, bf = ft.analyze(f, *args), brute_force(f, *args)
    assert [tuple(d.kind for d in b.dims) for b in a.blocks] == [x.kinds for x in bf]
    regular = all(v.is_regular() for v in flat_args(args) if isinstance(v, ft.FractalTensor))
    for i, (b, x) in enumerate(zip(a.blocks, bf)):
        where = f"block {i} {[str(d) for d in b.dims]}"
        if regular and extents_exact(a, bf, i):
            assert b.dependences == x.dependences, f"{where}: analysis {sorted(b.dependences)}, " \
                                                   f"observed {sorted(x.dependences)}"
            assert b.external == x.external, f"{where}: external {sorted(b.external)} vs {sorted(x.external)}"
        elif extents_are_longest_runs(a, bf, i):
            assert x.dependences <= b.dependences, f"{where}: observed {sorted(x.dependences - b.dependences)} " \
                                                   f"missed by {sorted(b.dependences)}"
        else:
            extents = [d.extent for d in b.dims]
            for d in x.dependences - b.dependences:
                assert implied(d, b.dependences, extents), \
                    f"{where}: observed {d} is missed by {sorted(b.dependences)}"
        check_wavefront(b, x.dependences)
        for d in x.dependences:
            assert carrying_dim(d) not in b.parallel, f"{where}: {d} is carried by parallel dim {carrying_dim(d)}"


# -- random programs ------------------------------------------------------------------------

CONFIG = GenConfig(max_len=3, max_nest=3, max_depth=3)


@settings(max_examples=60, **SETTINGS)
@given(program_descs(CONFIG))
def test_random_programs_agree_with_the_brute_force(desc):
    """Random nests of map/scan/fold/reduce over (ragged) lists with random access operators."""
    check_against_brute_force(ft.function(build(desc)), *make_args(desc))


# -- grids: a state that is the previous row, read through an access operator ---------------

WINDOWED = {"shifted_window", "window", "dilated_window"}
ACCESS = {
    "none": lambda prev, p: prev,
    "reverse": lambda prev, p: ft.reverse(prev),
    "rotate": lambda prev, p: ft.join(prev[1:], prev[:1]),
    "gather": lambda prev, p: ft.gather(prev, list(p.perm)),
    "interleave_dilate": lambda prev, p: ft.interleave(ft.dilate(prev, 2)),
    "shifted_window": lambda prev, p: ft.shifted_window(prev, 3),
    "window": lambda prev, p: ft.window(prev, 3, padding=1),
    "dilated_window": lambda prev, p: ft.window(prev, 3, dilation=2, padding=2),
}


@dataclass(frozen=True)
class Grid:
    rows: int
    cols: int
    batch: int | None       # wrap the grid in a map over a batch of grids
    outer: str              # "scan" or "fold" over the rows; the state is the previous row
    outer_reverse: bool
    inner: str              # "scan" or "map" along the row, zipped with the access of the previous row
    inner_reverse: bool
    access: str
    perm: tuple = ()


def grid_function(p: Grid):
    def combine(x, a):
        return x + (ft.sum(ft.stack(a, length=3), axis=0) if p.access in WINDOWED else a)

    def grid(rows, first, h0):
        def row_step(prev, row):
            above = ACCESS[p.access](prev, p)
            if p.inner == "scan":
                return ft.scan(lambda h, xa: ft.tanh(h + combine(*xa)), ft.zip(row, above), h0,
                               reverse=p.inner_reverse)
            return ft.map(lambda x, a: ft.tanh(combine(x, a)), row, above)
        return (ft.scan if p.outer == "scan" else ft.fold)(row_step, rows, first, reverse=p.outer_reverse)

    if p.batch is None:
        return ft.function(grid, name="grid")
    return ft.function(lambda batch, first, h0: ft.map(lambda rows: grid(rows, first, h0), batch), name="grids")


def grid_args(p: Grid):
    rng = np.random.default_rng(0)

    def rows():
        return [[rng.uniform(-1, 1, 2) for _ in range(p.cols)] for _ in range(p.rows)]
    data = rows() if p.batch is None else [rows() for _ in range(p.batch)]
    return ft.fractal(data), ft.fractal([rng.uniform(-1, 1, 2) for _ in range(p.cols)]), np.zeros(2)


@st.composite
def grids(draw):
    cols = draw(st.integers(1, 4))
    return Grid(draw(st.integers(1, 4)), cols, draw(st.sampled_from([None, 1, 2])),
                draw(st.sampled_from(["scan", "fold"])), draw(st.booleans()),
                draw(st.sampled_from(["scan", "map"])), draw(st.booleans()),
                draw(st.sampled_from(sorted(ACCESS))), tuple(draw(st.permutations(range(cols)))))


@settings(max_examples=50, **SETTINGS)
@given(grids())
def test_grid_nests_agree_with_the_brute_force(p):
    """Row-by-row nests whose inner loop reads the previous row through an access operator:
    multi-dim dependences, one block, and wavefronts to check."""
    check_against_brute_force(grid_function(p), *grid_args(p))


# -- hand-written programs: the vectors, both ways ------------------------------------------


def both_ways(f, *args):
    """(analysis, brute force) of every block, checked against each other."""
    check_against_brute_force(f, *args)
    return ft.analyze(f, *args).blocks, brute_force(f, *args)


@ft.function
def stacked_rnn(batch, ws):
    zero = ft.zeros((1, 2), F)

    def layer(seqs, w):
        return ft.map(lambda seq: ft.scan(lambda h, x: ft.tanh(x @ w + h), seq, zero), seqs)
    return ft.fold(layer, ws, batch)


@pytest.mark.parametrize("lengths", [(3, 3), (2, 4, 1)], ids=["regular", "ragged"])
def test_stacked_rnn_depends_on_the_layer_below_and_the_previous_step(lengths):
    """fold(layers){ map(batch){ scan(time) } }: one block; layer l step t reads layer l-1 step t
    (the fold's state is the batch list, resolved element by element) and step t-1 of its layer."""
    rng = np.random.default_rng(1)
    batch = ft.fractal([[rng.normal(size=(1, 2)) for _ in range(n)] for n in lengths])
    ws = ft.fractal([rng.normal(size=(2, 2)) for _ in range(3)])
    (b,), (x,) = both_ways(stacked_rnn, batch, ws)
    assert x.kinds == ("fold", "map", "scan")
    assert b.dependences == x.dependences == vec((1, 0, 0), (0, 0, 1))
    assert b.parallel == (1,)
    assert b.wavefront.hyperplane == (1, 0, 1)


GRID_CASES = {  # access of the previous row -> vectors of (rows, cols), 4 columns
    "none": vec((0, 1), (1, 0)),
    "shifted_window": vec((0, 1), (1, -1), (1, 0), (1, 1), (1, -3), (1, 3)),  # circular: wraps around
    "window": vec((0, 1), (1, -1), (1, 0), (1, 1)),  # padding reads nothing
    "dilated_window": vec((0, 1), (1, -2), (1, 0), (1, 2)),
    "interleave_dilate": vec((0, 1), (1, 0)),  # the identity permutation
    "reverse": vec((0, 1), (1, -3), (1, -1), (1, 1), (1, 3)),  # column j reads column 3 - j
}


@pytest.mark.parametrize("access", sorted(GRID_CASES))
def test_grid_reads_the_previous_row_through_an_access_operator(access):
    """scan over rows (state: the previous row) { scan along the row over zip(row, access(prev)) }."""
    p = Grid(3, 4, None, "scan", False, "scan", False, access)
    (b,), (x,) = both_ways(grid_function(p), *grid_args(p))
    assert x.kinds == ("scan", "scan")
    assert b.dependences == x.dependences == GRID_CASES[access]
    assert b.parallel == ()
    # a skew h = (k, 1) needs k >= 1 + the largest backward reach; the search stops at MAX_COEFFICIENT
    reach = max(-v[1] for v in GRID_CASES[access])
    assert (b.wavefront is not None) == (1 + reach <= MAX_COEFFICIENT)
    if b.wavefront is not None:
        assert b.wavefront.hyperplane == (1 + reach, 1)


def test_reverse_scans_count_steps_in_execution_order():
    """A reverse inner scan reading the previous row reversed: element e = 3 - t is processed
    at step t and reads prev[t], written at step 3 - t, so the vectors are (1, 2t - 3)."""
    p = Grid(3, 4, None, "scan", False, "scan", True, "reverse")
    (b,), (x,) = both_ways(grid_function(p), *grid_args(p))
    assert b.dims[1].reverse
    assert b.dependences == x.dependences == vec((0, 1), (1, -3), (1, -1), (1, 1), (1, 3))
    q = Grid(3, 4, None, "fold", True, "scan", True, "none")  # both reversed: still forward vectors
    (b,), (x,) = both_ways(grid_function(q), *grid_args(q))
    assert b.dependences == x.dependences == vec((0, 1), (1, 0))


def test_map_along_the_row_is_parallel():
    """With a map along the row only the rows carry dependences."""
    p = Grid(3, 4, 2, "fold", False, "map", False, "shifted_window")
    (b,), (x,) = both_ways(grid_function(p), *grid_args(p))
    assert x.kinds == ("map", "fold", "map")
    assert b.dependences == x.dependences == vec((0, 1, -1), (0, 1, 0), (0, 1, 1), (0, 1, -3), (0, 1, 3))
    assert b.parallel == (0, 2) and b.wavefront is None


def test_windows_of_a_sibling_output_inside_a_scan():
    """scan(rows){ ys = map(row); fold over window(ys, 2) }: two child blocks.  The fold reads the
    windows of ys in the same row (a zero external vector), its own previous step (0, 1), and
    starts from the previous row's final state, written at its last step 2: (1, -2).  The map
    reads that state too, written by the sibling fold: external (1, 0), over the shared row dim."""
    @ft.function
    def f(rows, h0):
        def step(h, row):
            ys = ft.map(lambda x: ft.tanh(x + h), row)
            return ft.fold(lambda g, w: g + ft.sum(ft.stack(w, length=2), axis=0), ft.window(ys, 2), h)
        return ft.scan(step, rows, h0)
    rows = ft.fractal([[np.ones(2)] * 4] * 3)
    blocks, brute = both_ways(f, rows, np.zeros(2))
    assert [x.kinds for x in brute] == [("scan",), ("scan", "map"), ("scan", "fold")]
    assert [x.dependences for x in brute] == [vec((1,)), vec((1, 0)), vec((0, 1), (1, -2))]
    assert [b.dependences for b in blocks] == [x.dependences for x in brute]
    assert blocks[1].external == brute[1].external == vec((1, 0))
    assert blocks[2].external == brute[2].external == frozenset()


def test_reduce_dims_are_reassociable():
    """map(batch){ reduce(xs) }: the reduce carries (0, 1) and may be re-associated."""
    @ft.function
    def f(batch):
        return ft.map(lambda xs: ft.reduce(lambda a, x: a + x, xs, ft.zeros((2,), F)), batch)
    (b,), (x,) = both_ways(f, ft.fractal([[np.ones(2)] * 3] * 2))
    assert x.kinds == ("map", "reduce")
    assert b.dependences == x.dependences == vec((0, 1))
    assert b.parallel == (0,) and b.reassociable == (1,)


def test_a_short_fold_is_padded_to_the_longest():
    """scan(rows){ fold(row) } with rows of lengths 2, 3, 1 (forward and reverse folds): the
    analysis takes a fold's final state at the longest run's last step (the padded box), so
    row r step 0 depends on (row r-1, step 2): (1, -2), besides the fold's own (0, 1)."""
    for reverse in (False, True):
        @ft.function
        def f(rows, h0):
            return ft.scan(lambda h, xs: ft.fold(lambda g, x: ft.tanh(g + x), xs, h, reverse=reverse), rows, h0)
        rows = ft.fractal([[np.ones(2)] * n for n in (2, 3, 1)])
        (b,), (x,) = both_ways(f, rows, np.zeros(2))
        assert b.dims[1].ragged
        assert b.dependences == x.dependences == vec((0, 1), (1, -2))


def test_an_over_approximated_extent_still_implies_every_dependence():
    """interleave(dilate(e, 2)) of a 1-element list has 1 element, but the analysis' extent is
    2 (the width of the ragged sub-lists times 2): a scan's state, the final state of a fold over
    that list, is read at (1, -1) in the analysis' box, at (1, 0) really: (1, -1) + (0, 1)."""
    @ft.function
    def f(xss, h0):
        return ft.scan(lambda h, xs: ft.fold(lambda g, x: g + g, ft.interleave(ft.dilate(xs, 2)), h), xss, h0)
    xss = ft.fractal([[np.ones(1)]] * 2)
    (b,), (x,) = both_ways(f, xss, np.zeros(1))
    assert [d.extent for d in b.dims] == [2, 2] and x.trips == (frozenset({2}), frozenset({1}))
    assert b.dependences == vec((0, 1), (1, -1))
    assert x.dependences == vec((1, 0))


# -- regressions: programs the brute force found the analysis wrong on ----------------------


def test_empty_input_lists_keep_all_their_levels():
    """A depth-2 input with no elements: iterating an element's slice used to crash (the empty
    list's inner level had no extent)."""
    @ft.function
    def f(xss, h0):
        return ft.fold(lambda h, xs: ft.reduce(lambda a, x: ft.maximum(a, x), ft.map(ft.tanh, xs[:-1]), h),
                       xss, h0)
    xss = ft.fractal([], type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(2,), F]]])
    blocks, brute = both_ways(f, xss, np.zeros(2))
    assert [tuple(d.extent for d in b.dims) for b in blocks] == [(0,), (0, 0), (0, 0)]
    assert all(not b.dependences for b in blocks)


def test_a_state_passed_on_at_a_glue_level_is_a_dependence():
    """fold(xs){ map(state) } whose body passes its own state on (copied at the fold's level,
    above the map's loop), once as a whole and once beside a second state read by the map:
    the copy is compared on the fold dim (used to crash, and to drop the vector)."""
    @ft.function
    def passthrough(xs, batch):
        return ft.fold(lambda st, x: ft.map(lambda y: y, st), xs, batch)

    @ft.function
    def mixed(xs, batch):
        return ft.fold(lambda s, x: (s[0], ft.map(ft.tanh, s[0])), xs, (batch, batch))[1]
    xs = ft.fractal([np.ones(2)] * 3)
    for f in (passthrough, mixed):
        (b,), (x,) = both_ways(f, xs, xs)
        assert x.kinds == ("fold", "map")
        assert b.dependences == x.dependences == vec((1, 0))


def test_a_ragged_constant_list_captured_inside_a_loop():
    """A captured ragged FractalTensor iterated inside a map (its buffer is indexed by the map's
    dim first): only the inner level is ragged (used to crash)."""
    c = ft.fractal([[np.ones(3)], [np.ones(3), np.ones(3)]])

    @ft.function
    def f(xs):
        return ft.map(lambda x: ft.map(lambda row: ft.reduce(lambda a, y: a + y * x, row, x), c), xs)
    (b,), (x,) = both_ways(f, ft.fractal([np.ones(3)] * 2))
    assert [d.ragged for d in b.dims] == [False, False, True]
    assert b.dependences == x.dependences == vec((0, 0, 1))


def test_yielding_a_captured_constant_is_not_a_write():
    """A scan whose first state becomes a captured constant: step t reads that constant, not
    anything step t-1 computed, so nothing is carried (the analysis used to write the state
    buffer at every step and report (1,))."""
    c = np.full(2, 0.5)

    @ft.function
    def f(xs, h0):
        return ft.scan(lambda s, x: (c, ft.tanh(s[0] * x)), xs, (h0, h0))[1]
    (b,), (x,) = both_ways(f, ft.fractal([np.ones(2)] * 3), np.zeros(2))
    assert b.dependences == x.dependences == frozenset()
    assert b.parallel == (0,)
