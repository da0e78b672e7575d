"""The cpu backend computes what the interpreter computes.

* every zoo model, `small` configuration, ragged and regular, float64: equal to 1e-12;
* random programs (tests/lang/strategies.py): compiled (verified after every pass) and run ==
  interpreted;
* the IR verifies after every pass of the pipeline (`verify=True`), and dumps work.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fractal as ft
from fractal.lower.lower_program import lower_program
from fractal.lower.pipeline import PASSES
from fractal.lower.tile_ir import Loop
from examples import zoo
from fractal.compile import compile_function

TARGET = ft.targets.get("cpu-generic")  # structure below is this target's (the host's may differ)
from fractal.lang.tree import flatten
from tests.lang.strategies import assert_values_close, build, make_args, program_descs


def _close(got, want, atol):
    a, ta = flatten(got)
    b, tb = flatten(want)
    assert ta == tb
    for x, y in zip(a, b):
        if isinstance(y, ft.FractalTensor):
            assert isinstance(x, ft.FractalTensor) and x.type == y.type and x.lengths() == y.lengths()
            x, y = x.compact()[0], y.compact()[0]
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol)


@pytest.mark.parametrize("ragged", [True, False], ids=["ragged", "regular"])
@pytest.mark.parametrize("name", zoo.MODELS)
def test_zoo_model_on_cpu_equals_interpreter(name, ragged):
    model = zoo.load(name)
    args = model.inputs("small", dtype=np.float64, ragged=ragged)
    compiled = compile_function(model.model, args, {}, TARGET, verify=True)
    _close(compiled.run(*args), model.model.interpret(*args), atol=1e-12)


@pytest.mark.parametrize("name", ["stacked_lstm", "flash_attention"])
def test_zoo_model_float32_on_cpu_matches_reference(name):
    model = zoo.load(name)
    args = model.inputs("small", dtype=np.float32)
    assert zoo.max_abs_error(model.outputs(model.model(*args)), model.reference(*args)) <= zoo.tolerance(np.float32)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program_descs())
def test_random_programs_on_cpu_equal_interpreter(desc):
    fn = ft.function(build(desc))
    args = make_args(desc)
    try:
        compiled = compile_function(fn, args, {}, TARGET, verify=True)  # the IR verifies after every pass
    except ft.UnsupportedError:
        return  # said so (a traced gather of lists of lists): the interpreter still runs it
    assert_values_close(compiled.run(*args), fn.interpret(*args))


def test_calling_a_function_uses_the_cpu_backend_and_caches_per_size():
    @ft.function
    def running_sum(xs):
        return ft.scan(lambda s, x: s + x, xs, ft.zeros((2,)))

    short = ft.fractal([np.ones(2, np.float32)] * 3)
    long = ft.fractal([np.ones(2, np.float32)] * 5)
    assert running_sum.compile(short) is running_sum.compile(short)
    assert running_sum.compile(short) is not running_sum.compile(long)
    np.testing.assert_allclose(running_sum(long)[4], [5.0, 5.0])
    np.testing.assert_allclose(running_sum(long, backend="interpreter")[4], [5.0, 5.0])


def test_compiled_program_rejects_other_sizes():
    @ft.function
    def double(xs):
        return ft.map(lambda x: x * 2.0, xs)

    compiled = double.compile(ft.fractal([np.ones(2, np.float32)] * 3))
    with pytest.raises(ft.ArgumentError, match="compiled for other list lengths"):
        compiled.run(ft.fractal([np.ones(2, np.float32)] * 4))


def test_unknown_backend_is_an_argument_error():
    @ft.function
    def f(x):
        return x + 1.0

    with pytest.raises(ft.ArgumentError, match="unknown backend 'gpu'"):
        f.compile(np.ones(2, np.float32), backend="gpu")


def test_dump_writes_the_ir_after_each_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTAL_DUMP_IR", str(tmp_path))
    model = zoo.load("stacked_lstm")
    args = model.inputs("small", dtype=np.float64)
    compile_function(model.model, args, {}, TARGET)
    names = sorted(p.name for p in tmp_path.iterdir())
    (prefix,) = {name.rsplit(".", 2)[0] for name in names}  # model.<signature>.<pid>
    assert prefix.startswith("model.") and prefix.endswith(f".{os.getpid()}")
    assert names == [f"{prefix}.00-lowered.tile"] + [f"{prefix}.{k:02d}-{name}.tile" for k, (name, _) in
                                                     enumerate(PASSES, 1)]
    assert (tmp_path / f"{prefix}.01-contract.tile").read_text().strip() == "// contract: (unchanged)"
    assert (tmp_path / f"{prefix}.05-sink.tile").read_text().strip() == "// sink: (unchanged)"
    assert (tmp_path / f"{prefix}.16-tile.tile").read_text().strip() == "// tile: (unchanged)"
    assert "tile @model" in (tmp_path / f"{prefix}.06-batch.tile").read_text()


def test_a_program_the_backend_cannot_lower_runs_in_the_interpreter_with_a_warning():
    """gather with traced indices of a list of lists is not lowered yet: compile says so,
    calling falls back."""
    @ft.function
    def pick(xss, idx):
        return ft.gather(xss, idx)

    xss = ft.fractal([[np.full(2, float(i), np.float32)] * (i + 1) for i in range(3)])
    idx = np.array([2, 0], dtype=np.int64)
    with pytest.raises(ft.UnsupportedError, match="gather with traced indices of a list of lists"):
        pick.compile(xss, idx)
    with pytest.warns(UserWarning, match="running in the interpreter"):
        out = pick(xss, idx)
    assert out.lengths() == [3, 1]


def test_gather_with_traced_indices_compiles_to_one_gather_per_point():
    """Each sequence picks its own (traced) positions, negative ones from its own end: the
    lists are laid out per point and read through the wrapped indices, as interpreted."""
    @ft.function
    def pick(seqs, idx):
        return ft.map(lambda xs_i: ft.gather(xs_i[0], xs_i[1]), ft.zip(seqs, idx))

    rng = np.random.default_rng(3)
    seqs = ft.fractal([[rng.standard_normal(2) for _ in range(n)] for n in (4, 2, 5)])
    idx = ft.fractal([np.array(i, dtype=np.int64) for i in ([3, -1, 0], [1, -2, 0], [-5, 4, 2])])
    compiled = pick.compile(seqs, idx)
    assert "gather" in str(compiled.tile_ir)
    assert_values_close(compiled.run(seqs, idx), pick.interpret(seqs, idx))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=3), st.integers(0, 4), st.data())
def test_traced_gathers_of_ragged_lists_equal_the_interpreter(lengths, k, data):
    """Random ragged lists, each with its own traced indices (in range, negative ones too, or
    one out of range): compiled == interpreted, or both raise LengthError."""
    rng = np.random.default_rng(len(lengths) * 7 + k)
    seqs = ft.fractal([[rng.standard_normal(3) for _ in range(n)] for n in lengths],
                      type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(3,), np.float64]]])
    bad = data.draw(st.booleans())
    idx = [np.array([data.draw(st.integers(-n, n - 1)) if n and not bad else data.draw(st.integers(-9, 9))
                     for _ in range(k)], dtype=np.int64) for n in lengths]
    fn = ft.function(lambda s, i: ft.map(lambda si: ft.gather(si[0], si[1]), ft.zip(s, i)))
    args = (seqs, ft.fractal(idx, type=ft.FractalTensor[ft.Tensor[(k,), np.int64]]))
    try:
        want = fn.interpret(*args)
    except ft.LengthError:
        with pytest.raises(ft.LengthError, match="gather: an index is out of range"):
            fn.compile(*args).run(*args)
        return
    assert_values_close(fn.compile(*args).run(*args), want)


def test_a_traced_gather_index_out_of_range_is_reported_at_the_gather():
    """Index 2 of a list of 2 (or -3): a LengthError pointing at the user's `ft.gather` line,
    as the interpreter's does."""
    def pick(xs, idx):
        return ft.gather(xs, idx)  # the line the error points at

    gather_line = pick.__code__.co_firstlineno + 1
    pick = ft.function(pick)
    xs = ft.fractal([np.zeros(2), np.ones(2)])
    compiled = pick.compile(xs, np.array([0, 1]))
    for bad in ([0, 2], [-3, 0]):
        with pytest.raises(ft.LengthError, match="gather: an index is out of range for its list") as err:
            compiled.run(xs, np.array(bad))
        assert f"test_lowering.py:{gather_line}, in pick" in str(err.value)


def test_errors_found_while_lowering_point_at_the_users_line():
    """The access operators run their own rules while lowering: a zip of unequal lengths is
    the same LengthError, at the same line, as in the interpreter."""
    @ft.function
    def pairs(xs, ys):
        return ft.map(lambda x, y: x + y, xs, ys)  # zips unequal lists

    xs = ft.fractal([np.ones(2, np.float32)] * 3)
    ys = ft.fractal([np.ones(2, np.float32)] * 4)
    with pytest.raises(ft.LengthError) as e:
        pairs.compile(xs, ys)
    assert "test_lowering.py" in str(e.value)


def test_stacking_a_list_of_the_wrong_length_is_the_languages_error():
    """`stack(xs, length=3)` of a list of 2: the stack rule's LengthError, raised while
    lowering and pointing at the user's line, as the interpreter says it."""
    @ft.function
    def stacked(xss):
        return ft.map(lambda xs: ft.stack(xs, length=3), xss)  # the second list has 2

    xss = ft.fractal([[np.ones(2, np.float32)] * 3, [np.ones(2, np.float32)] * 2])
    with pytest.raises(ft.LengthError, match="stack: the list has 2 elements but the program expects 3") as e:
        stacked.compile(xss)
    assert "test_lowering.py" in str(e.value)
    with pytest.raises(ft.LengthError, match="stack: the list has 2 elements"):
        stacked(xss, backend="interpreter")


def test_a_list_state_that_grows_runs_in_the_interpreter_with_a_warning():
    """A fold's list state must keep its lengths for the cpu backend (its slots are fixed):
    one that grows step by step is said to be unsupported, and calling falls back."""
    @ft.function
    def collect(xs):
        return ft.fold(lambda acc, x: ft.join(acc, ft.repeat(x, 1)), xs, xs[0:1])

    xs = ft.fractal([np.full(2, float(i), np.float32) for i in range(3)])
    with pytest.raises(ft.UnsupportedError, match="keep its lengths from step to step"):
        collect.compile(xs)
    with pytest.warns(UserWarning, match="running in the interpreter"):
        out = collect(xs)
    assert out.lengths() == 4


def test_a_compiled_result_is_freed_as_soon_as_it_is_dropped():
    """No reference cycle (a recursive closure in the tree walks) keeps a result and its
    memory alive until the cyclic GC: dropping it frees its arrays at once, so the next run
    reuses that memory instead of faulting in fresh pages."""
    import gc
    import weakref

    @ft.function
    def double(xs):
        return ft.map(lambda x: x * 2.0, xs), ft.sum(xs[0])

    xs = ft.fractal([np.ones(4, np.float32)] * 3)
    compiled = double.compile(xs)
    gc.disable()
    try:
        result = compiled.run(xs)
        leaves = weakref.ref(result[0]._leaves)
        del result
        assert leaves() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("n", [0, 2])
def test_lists_with_no_element_lower_to_ir_that_verifies(n):
    """An empty list's elements are read by no point: their regions (a row of the element's
    type, not a row of some other buffer) and gathers (none) still verify, and the result is
    the interpreter's.  Found by the random programs once they verified every pass."""
    @ft.function
    def total_of_means(xs, b):
        means = ft.reduce(lambda a, x: a + x, ft.map(ft.mean, xs), ft.zeros((), np.float64))
        windows = ft.fold(lambda s, w: s + ft.stack(w, length=1), ft.shifted_window(ft.repeat(b, n), size=1),
                          b + np.ones((1,)))
        return means, windows

    xs = ft.fractal([np.full((1,), 2.0)] * n, type=ft.FractalTensor[ft.Tensor[(1,), np.float64]])
    b = np.float64(3.0)
    compiled = compile_function(total_of_means, (xs, b), {}, TARGET, verify=True)
    _close(compiled.run(xs, b), total_of_means.interpret(xs, b), atol=1e-12)


def test_a_fold_over_an_outer_list_inside_maps_over_a_ragged_one():
    """The fold's list comes from outside the maps, so it is defined at every point of their
    padded domain, also where the ragged list has no element (an empty inner list): such a
    point is not real and its lengths are not compared.  Found by the random programs
    (it crashed on `len(None)`)."""
    @ft.function
    def folded(xss, ys):
        return ft.map(lambda xs: ft.map(lambda x: ft.fold(lambda s, iy: s + s, ft.enumerate(ys), ft.mean(x)), xs),
                      ft.flatten(xss))

    leaf = ft.Tensor[(1,), np.float64]
    xss = ft.fractal([[], [], [[], [np.full((1,), 2.0)]]], type=ft.FractalTensor[ft.FractalTensor[ft.FractalTensor[leaf]]])
    ys = ft.fractal([[]], type=ft.FractalTensor[ft.FractalTensor[leaf]])
    compiled = compile_function(folded, (xss, ys), {}, TARGET, verify=True)
    _close(compiled.run(xss, ys), folded.interpret(xss, ys), atol=1e-12)


def test_a_comparison_of_two_fulls_keeps_its_answer():
    """`full(-0.5) < full(0.0)` in a fold: coarsening inlines both fulls as constants, which
    must still compare as numbers into the bool temporary (found by the random programs:
    they compared as bools, True < False, and the fold took the other branch)."""
    @ft.function
    def folded(xs, b):
        def step(state, x):
            total, kept = state
            keep = ft.where(ft.full((), -0.5, ft.float64) < ft.full((), 0.0, ft.float64), kept, total)
            return total + kept * 3, keep
        return ft.fold(step, xs, (ft.mean(b), ft.full((), 0.25, ft.float64)))[0]

    xs = ft.fractal([np.zeros((1,))] * 2, type=ft.FractalTensor[ft.Tensor[(1,), np.float64]])
    b = np.full((1, 1), 0.5)
    compiled = compile_function(folded, (xs, b), {}, TARGET, verify=True)
    _close(compiled.run(xs, b), folded.interpret(xs, b), atol=1e-12)
    assert float(compiled.run(xs, b)) == 0.5 + 6 * 0.25


def test_a_reduce_lowers_to_an_associative_loop_and_a_fold_to_a_plain_sequential_one():
    # the flag is what lets a backend re-associate the steps (partial sums, then a tree)
    @ft.function
    def both(xs):
        zero = ft.zeros((4,), np.float64)
        return ft.reduce(lambda a, x: a + x, xs, zero), ft.fold(lambda a, x: a + x, xs, zero)

    xs = ft.fractal([np.full((4,), float(i)) for i in range(6)], type=ft.FractalTensor[ft.Tensor[(4,), np.float64]])
    program, _, leaves, _ = both.traced_call((xs,), {})
    loops = [s for s in lower_program(program, leaves).program.body if isinstance(s, Loop)]
    assert sorted((loop.kind, loop.associative) for loop in loops) == [("sequential", False), ("sequential", True)]
    assert "sequential associative host" in str(lower_program(program, leaves).program)


def test_a_comparison_on_a_mean_takes_the_interpreters_branch():
    # a mean divides its sum by the count, as np.mean does; times 1/3, the mean of three copies
    # of this v came out one ulp lower than the interpreter's, and the `where` took the other
    # branch (a random program found it)
    @ft.function
    def at_most(x, v):
        return ft.where(ft.mean(x) <= v, 1.0, 0.0)
    v = 0.8132702392002724
    x = np.full(3, v)
    assert np.mean(x) > v and (v + v + v) * (1.0 / 3) <= v   # (the case itself)
    compiled = compile_function(at_most, (x, np.float64(v)), {}, TARGET)
    assert float(compiled(x, np.float64(v))) == float(at_most.interpret(x, np.float64(v))) == 0.0
    assert "div(" in str(compiled.tile_ir) and "0.333" not in str(compiled.tile_ir)


def test_a_map_yielding_part_of_a_row_stores_it_whole_before_its_list_is_read_by_rows():
    """Each element's `(w + sum)[0:2]` is a view of two of the three rows of a per-element
    temporary; the reduce reads the map's list row by row (a gather), so the view is copied to
    rows of its own first (kept as a view, the gather read rows of three: a verify error found
    by the native random-program property)."""
    @ft.function
    def f(xs, w):
        parts = ft.map(lambda x: (w + ft.reduce(lambda a, y: a + y, x, ft.zeros((), np.float64)))[0:2], xs)
        return ft.reduce(lambda acc, p: acc + p, parts, ft.zeros((2, 3), np.float64))

    xs = ft.fractal([[np.float64(1.0), np.float64(2.0)], [np.float64(3.0)], [np.float64(4.0), np.float64(5.0), np.float64(6.0)]])
    w = np.arange(9.0).reshape(3, 3)
    got = f(xs, w, backend="cpu")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(f.interpret(xs, w)))
    np.testing.assert_array_equal(np.asarray(got), 3 * w[:2] + 21)
