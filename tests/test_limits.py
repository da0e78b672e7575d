"""Sizes refused before anything runs (`fractal.lang.limits`, `fractal.lower.memory`): an eager
op whose result the host cannot hold, a compiled program whose buffers the target cannot hold,
a product or a combinator nest of more than 2^30 points.  Each is an `ft.ResourceError` naming
the size and pointing at the user's line (`# <- here`), with no internal exception under it.
The machines are small fakes (`tests/hosts/tiny.json`: 2 GiB; a 1 MiB target), so nothing big
is allocated."""

from pathlib import Path

import numpy as np
import pytest

import fractal as ft

TINY_HOST = str(Path(__file__).parent / "hosts" / "tiny.json")


def marked_line(tag="# <- here") -> int:
    import inspect
    import sys
    lines, first = inspect.getsourcelines(sys._getframe(2).f_code)
    (line,) = [first + i for i, text in enumerate(lines) if text.rstrip().endswith(tag)]
    return line


def assert_refused(info, *words) -> None:
    err = info.value
    assert type(err) is ft.ResourceError and isinstance(err, MemoryError)
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    assert err.loc.file.endswith("test_limits.py") and err.loc.line == marked_line(), err.loc
    for w in words:
        assert w in err.message, err.message


def test_an_eager_op_whose_result_the_host_cannot_hold_is_refused(monkeypatch):
    monkeypatch.setenv("FRACTAL_HOST", TINY_HOST)
    column, row = np.ones((60000, 1), np.float32), np.ones((1, 60000), np.float32)
    with pytest.raises(ft.ResourceError) as info:
        ft.matmul(column, row)  # <- here
    assert_refused(info, "matmul", "14,400,000,000 bytes", "2,147,483,648 bytes (2.0 GiB) of memory")


def test_a_compiled_program_whose_buffers_the_target_cannot_hold_is_refused():
    small = ft.targets.cpu(dram=1 << 20)
    xs = ft.from_numpy(np.ones((300, 1, 600)))  # 1.4 MB of float64 rows, and as much out

    @ft.function
    def doubled(xs):
        return ft.map(lambda x: x * 2.0, xs)  # <- here
    for attempt in (lambda: doubled.compile(xs, target=small), lambda: doubled(xs, target=small)):
        with pytest.raises(ft.ResourceError) as info:
            attempt()
        assert_refused(info, "1,440,008 bytes", "1,048,576 bytes (1.0 MiB) of memory", "'custom-cpu'",
                       "out_0 (float64[300,1,600]")
    assert np.array_equal(doubled(xs).to_numpy(), xs.to_numpy() * 2)  # the host holds it


def test_a_product_of_two_lists_of_100000_is_refused_eagerly():
    xs = ft.from_numpy(np.zeros((100000, 1), np.float32))
    with pytest.raises(ft.ResourceError) as info:
        ft.product(xs, xs)  # <- here
    assert_refused(info, "100,000 and 100,000", "10,000,000,000 points", "2^30")


def test_a_product_of_two_lists_of_100000_is_refused_before_it_lowers_or_is_interpreted():
    xs = ft.from_numpy(np.zeros((100000, 1), np.float32))

    @ft.function
    def pairs(xs, ys):
        return ft.map(lambda p: ft.map(lambda ab: ab[0] + ab[1], p), ft.product(xs, ys))  # <- here
    for attempt in (pairs.compile, pairs, pairs.interpret):  # (a call does not fall back to the interpreter)
        with pytest.raises(ft.ResourceError) as info:
            attempt(xs, xs)
        assert_refused(info, "10,000,000,000 points")


def test_a_nest_of_maps_over_more_than_2_30_points_is_refused_before_it_lowers():
    xs, ys = (ft.from_numpy(np.zeros((n, 1), np.float32)) for n in (40000, 30000))

    @ft.function
    def outer(xs, ys):
        return ft.map(lambda x: ft.map(lambda y: x + y, ys), xs)  # <- here
    with pytest.raises(ft.ResourceError) as info:
        outer.compile(xs, ys)
    assert_refused(info, "40000 x 30000", "1,200,000,000 points")
