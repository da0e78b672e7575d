"""`SegmentReduce` (`dst[r] = reduce(src[segments[r]:segments[r + 1]])`): the cpu backend's one
`reduceat` and the pointwise oracle's run-by-run loop both equal a plain Python reduction, empty
runs (leading, inner, trailing) giving the combiner's identity; the text round-trips; the
verifier rejects malformed ones."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from fractal.backends.cpu import CpuExecutable
from fractal.backends.pointwise import run_pointwise
from fractal.lower import parse_tile_program

PYTHON = {"add": sum, "max": max, "min": min}
IDENTITY = {"add": 0, "max": -np.inf, "min": np.inf}


def program(combiner, rows, offsets, dtype="f64", width=2):
    table = ", ".join(map(str, offsets))
    return parse_tile_program(f"""tile @segments {{
      buffer x: {dtype}[{rows},{width}] global input
      buffer off: i64[{len(offsets)}] global const = [{table}]
      buffer y: {dtype}[{len(offsets) - 1},{width}] global output
      stage s() device {{
        y[0:{len(offsets) - 1}, 0:{width}] = segment_{combiner}(x[0:{rows}, 0:{width}], off[0:{len(offsets)}])
      }}
    }}""")


def expected(combiner, x, offsets):
    out = []
    for a, b in zip(offsets, offsets[1:]):
        run = list(x[a:b])
        if not run:
            ident = IDENTITY[combiner]
            if x.dtype.kind == "i":
                ident = {"add": 0, "max": np.iinfo(x.dtype).min, "min": np.iinfo(x.dtype).max}[combiner]
            out.append(np.full(x.shape[1:], ident, x.dtype))
        else:
            out.append(np.array(run[0]) if len(run) == 1 else
                       np.array([PYTHON[combiner](col) for col in zip(*run)], x.dtype))
    return np.array(out, x.dtype).reshape((len(offsets) - 1,) + x.shape[1:])


@settings(max_examples=40, deadline=None)
@given(combiner=st.sampled_from(sorted(PYTHON)), runs=st.lists(st.integers(0, 3), min_size=1, max_size=6),
       dtype=st.sampled_from(["f64", "i32"]), seed=st.integers(0, 1000))
def test_cpu_and_pointwise_agree_with_a_python_reduction_of_each_run(combiner, runs, dtype, seed):
    offsets = np.concatenate([[0], np.cumsum(runs)]).astype(np.int64)
    rows = max(int(offsets[-1]), 1)
    p = program(combiner, rows, offsets.tolist(), dtype).verify()
    rng = np.random.default_rng(seed)
    x = rng.integers(-9, 9, (rows, 2)).astype(np.float64 if dtype == "f64" else np.int32)
    want = expected(combiner, x, offsets)
    np.testing.assert_array_equal(CpuExecutable(p).run({"x": x})["y"], want)
    np.testing.assert_array_equal(run_pointwise(p, {"x": x})["y"], want)


def test_text_round_trips():
    p = program("max", 5, [0, 2, 2, 5])
    assert "y[0:3, 0:2] = segment_max(x[0:5, 0:2], off[0:4])" in str(p)
    assert parse_tile_program(str(p)) == p


@pytest.mark.parametrize("text, message", [
    ("y[0:3, 0:2] = segment_add(x[0:5, 0:2], off[0:3])", "give the shape"),
    ("y[0:3, 0:2] = segment_add(x[0:5, 0:2], x[0:4, 0])", "must be a 1-d i32 or i64 region"),
])
def test_malformed_segment_reductions_are_verify_errors(text, message):
    good = str(program("add", 5, [0, 2, 2, 5]))
    bad = parse_tile_program(good.replace("y[0:3, 0:2] = segment_add(x[0:5, 0:2], off[0:4])", text))
    with pytest.raises(ft.VerifyError, match=message):
        bad.verify()
