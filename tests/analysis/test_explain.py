"""`ft.explain` says true things in the user's terms.

* Reversing a ragged list reads each list from its own end: the position depends on the
  list's length, known before the run, so the access is *per-sample*, not data-dependent
  (only indices computed at run time are);
* a dim over a list derived from a ragged one (its windows, a zip with its positions, the
  rows a map produced from it) is ragged too;
* the lists a dim runs over are named by the user's parameters and the combinators that
  made them (`map(batch)`), never by internal buffer names (`%18`, `%local6`, `const%3`);
* a block whose dependences admit no wavefront but whose inner dims are parallel as written
  is not said to lack a hyperplane: its parallel dims are named instead.
"""

from __future__ import annotations

import re

import numpy as np

import fractal as ft

H = 2
F = ft.Tensor[(1, H), ft.float64]
RNG = np.random.default_rng(0)
W = RNG.standard_normal((H, H))
H0 = np.zeros((1, H))


def batch(lengths, depth=2):
    """Sequences of f64[1, 2] of the given lengths (ragged when they differ)."""
    if depth == 2:
        return ft.fractal([[RNG.standard_normal((1, H)) for _ in range(n)] for n in lengths],
                          type=ft.FractalTensor[ft.FractalTensor[F]])
    return ft.fractal([[[RNG.standard_normal((1, H)) for _ in range(m)] for m in row] for row in lengths],
                      type=ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[F]]])


def rnn(xs, w):
    return ft.scan(lambda h, x: ft.tanh(x @ w + h), xs, ft.zeros((1, H), ft.float64))


@ft.function
def reversed_rnn(batch, w):
    return ft.map(lambda xs: rnn(ft.reverse(xs), w), batch)


@ft.function
def last_steps(batch, w):
    return ft.map(lambda xs: xs[-1] @ w, batch)


@ft.function
def traced_gather(batch, w, idx):
    return ft.map(lambda xs: rnn(ft.gather(xs, idx), w), batch)


def test_reversing_a_ragged_list_is_per_sample_not_data_dependent():
    b = batch([5, 2, 3])
    a = ft.analyze(reversed_rnn, b, W)
    (read,) = [x for x in a.etdg.accesses if x.buffer == "batch"]
    assert read.per_sample and not read.data_dependent
    assert "data-dependent" not in str(ft.explain(reversed_rnn, b, W)).lower()
    assert "(per-sample)" in str(a.etdg)
    assert "data-dependent" not in str(ft.explain(last_steps, b, W)).lower()  # xs[-1] alike
    # indices computed at run time still are data-dependent, named as the user wrote them
    text = str(ft.explain(traced_gather, b, W, np.array([0, 1], np.int64)))
    assert "Data-dependent accesses (indices known only at run time): batch" in text


def test_a_regular_batch_has_no_per_sample_access():
    a = ft.analyze(reversed_rnn, batch([3, 3]), W)
    assert not any(x.per_sample for x in a.etdg.accesses)


@ft.function
def over_windows(batch, w):
    return ft.map(lambda xs: rnn(ft.map(lambda win: win[0] + win[1], ft.window(xs, 2, padding=(1, 0))), w), batch)


@ft.function
def over_positions(batch, w):
    return ft.map(lambda xs: ft.scan(lambda h, p: ft.tanh(p[1] @ w + h) * p[0], ft.enumerate(xs), H0), batch)


@ft.function
def over_map_rows(batch, w):
    ys = ft.map(lambda xs: ft.map(lambda x: x @ w, xs), batch)
    return ft.map(lambda ys: rnn(ys, w), ys)


@ft.function
def over_grid_rows(grid, w):
    rows = ft.map(lambda img: ft.map(lambda row: ft.map(lambda x: ft.tanh(x @ w), row), img), grid)
    return ft.map(lambda img: ft.map(lambda row: rnn(row, w), img), rows)


def scan_dims(f, *args):
    return [d for b in ft.analyze(f, *args).blocks for d in b.dims if d.kind == "scan"]


def test_lists_derived_from_a_ragged_list_are_ragged():
    b = batch([5, 2, 3])
    for f in (over_windows, over_positions, over_map_rows):
        (dim,) = {d.name: d for d in scan_dims(f, b, W)}.values()
        assert dim.ragged, f.name
        assert "ragged" in str(ft.explain(f, b, W))
    grid = batch([[3, 1], [2, 2, 4]], depth=3)  # per image: rows of different lengths
    dims = scan_dims(over_grid_rows, grid, W)
    assert dims and all(d.ragged for d in dims)


def test_lists_derived_from_a_regular_list_are_not_ragged():
    b = batch([4, 4])
    for f in (over_windows, over_positions, over_map_rows):
        assert not any(d.ragged for d in scan_dims(f, b, W)), f.name


INTERNAL = re.compile(r"%|local\d|const%|state%")


def test_explain_names_lists_as_the_user_wrote_them():
    b = batch([5, 2, 3])
    for f, src in ((over_map_rows, "map(batch)"), (over_positions, "zip(enumerate(batch), batch)")):
        text = str(ft.explain(f, b, W))
        assert not INTERNAL.search(text), text
        assert f"scan over {src}" in text, text


@ft.function
def layered(seq, w):
    """Layers over time steps of positions; each step of a layer reads the whole previous layer,
    so the layers carry dependences at every time distance: no small-coefficient hyperplane
    skews layers and time, but the positions are parallel as written."""
    def layer(hss, _):
        def step(h, xs):
            return ft.map(lambda p: ft.tanh(p[0] @ w + p[1] + ft.sum(ft.stack(ft.flatten(hss), length=12), axis=0)),
                          ft.zip(xs, h))
        return ft.scan(step, hss, ft.repeat(ft.zeros((1, H), ft.float64), 3))
    return ft.fold(layer, ft.slices(ft.zeros((3, 1)), 0), seq)


def test_no_hyperplane_is_not_said_of_a_block_whose_inner_dims_are_parallel():
    seq = batch([3, 3, 3, 3])
    (b,) = ft.analyze(layered, seq, W).blocks
    assert len(b.carried) == 2 and b.wavefront is None and b.parallel == (2,)
    text = str(ft.explain(layered, seq, W))
    assert "hyperplane" not in text
    assert f"no wavefront: {b.dims[2].name} already parallel as written" in text


def test_no_hyperplane_is_still_said_when_nothing_is_parallel():
    @ft.function
    def all_to_all(seq, w):
        def layer(hs, _):
            return ft.scan(lambda h, x: ft.tanh(x @ w + h + ft.sum(ft.stack(hs, length=4), axis=0)), hs,
                           ft.zeros((1, H), ft.float64))
        return ft.fold(layer, ft.slices(ft.zeros((3, 1)), 0), seq)

    seq = batch([4])[0]
    (b,) = ft.analyze(all_to_all, seq, W).blocks
    assert len(b.carried) == 2 and b.wavefront is None and b.parallel == ()
    assert "admit no hyperplane with small coefficients" in str(ft.explain(all_to_all, seq, W))
