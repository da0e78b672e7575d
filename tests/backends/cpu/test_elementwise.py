"""Elementwise expressions are computed into dst and into scratch registers kept across runs
(`elementwise`), with the results of plain per-node NumPy evaluation: the in-place forms of
sigmoid/relu/gelu are bit-identical to `tensor_ops`; chains write into dst only when no load
reads dst's buffer; registers follow stage boxes that grow and shrink between steps and runs;
constants-only subexpressions, `where`, f16 and casts into a wider dst behave as before."""

from __future__ import annotations

import numpy as np
import pytest

from fractal.backends.cpu import CpuExecutable
from fractal.backends.cpu.elementwise import INTO
from fractal.lang.tensor_ops import UNARY
from fractal.lower import parse_tile_program

from fractal.backends.pointwise import run_pointwise

RNG = np.random.default_rng(3)


def program(buffers: str, body: str):
    return parse_tile_program("tile @t {\n" + buffers + "\n" + body + "\n}").verify()


def check(p, inputs, runs=2, rtol=1e-6):
    """Batched runs (reusing one executable and its registers) against the pointwise executor."""
    exe, temps = CpuExecutable(p), {}
    for run in range(runs):
        got, want = exe.run(inputs), run_pointwise(p, inputs, temps)
        for name in want:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=0, err_msg=f"{name}, run {run}")
    return got


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(INTO))
def test_in_place_kernels_are_bit_identical_to_tensor_ops(name, dtype):
    """Also when the output is the input itself (a chained child computed in place)."""
    x = (RNG.standard_normal((7, 33)) * 4).astype(dtype)
    x[0, :4] = [0, -0.0, 60, -60]
    out, tmp, inplace = np.empty_like(x), np.empty_like(x), x.copy()
    with np.errstate(all="ignore"):  # f16 overflows in gelu's cube, as in tensor_ops
        want = UNARY[name](x)
        assert INTO[name](x, out, tmp) is out
        INTO[name](inplace, inplace, tmp)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(inplace, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(INTO))
@pytest.mark.parametrize("step", [4, 8])
def test_in_place_kernels_on_strided_operands(name, dtype, step):
    """A strided input into a strided output (a column of dst): NumPy 2.4's AVX-512
    `np.negative` reads an input of element stride 4 (f32) or 8 (f64) wrongly when out is
    not contiguous; `neg` and `sigmoid` (which negates first) must not inherit that."""
    x = (RNG.standard_normal((9, 3 * step)) * 4).astype(dtype)[:, ::step]
    out, tmp = np.zeros((9, 2 * 3 * step), dtype)[:, ::2 * step], np.empty((9, 3), dtype)
    with np.errstate(all="ignore"):
        want = UNARY[name](x.copy())
        INTO[name](x, out, tmp)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("fn", ["neg", "sigmoid"])
def test_negation_into_a_column_of_dst(fn):
    """Found by the random-program property: `neg(where(...))` written into column
    `3 - i` of a [2, 4] buffer gave +2 for -2 on the second row (the NumPy bug above)."""
    p = program("""  buffer c: f32[1] global input
  buffer a: f32[2,1] global input
  buffer b: f32[1,1] global input
  buffer y: f32[2,4] global output""", f"""  for i in 0:4 sequential host {{
    stage k() device {{
      y[0:2, 3 - i] = {fn}(where(eq(c[0:1], 0.0), a[0:2, 0], b[0:1, 0]))
    }}
  }}""")
    inputs = {"c": np.float32([3]), "a": np.float32([[-3], [-2]]), "b": np.float32([[2]])}
    out = check(p, inputs)
    np.testing.assert_array_equal(out["y"], np.full((2, 4), UNARY[fn](np.float32(2)), np.float32))


def test_chains_write_into_dst_only_when_no_load_reads_it():
    """`h` is computed in place (`sub` into h, then `exp`, ...); `y` reads itself at another
    row, so its subexpressions go to registers and only the last op writes y."""
    p = program("""  buffer g: f32[4,3,8] global input
  buffer c: f32[4,3,1] global input
  buffer h: f32[4,3,8] global output
  buffer y: f32[5,3,8] global output""", """  stage k(i in 0:4) device {
    h[i, 0:3, 0:8] = gelu(mul(exp(sub(g[i, 0:3, 0:8], c[i, 0:3, 0:1])), sigmoid(g[i, 0:3, 0:8])))
  }
  for t in 0:4 sequential host {
    stage s() device {
      y[t + 1, 0:3, 0:8] = add(mul(sigmoid(g[t, 0:3, 0:8]), y[t, 0:3, 0:8]), tanh(relu(g[t, 0:3, 0:8])))
    }
  }""")
    g, c = RNG.standard_normal((4, 3, 8)).astype(np.float32), RNG.standard_normal((4, 3, 1)).astype(np.float32)
    out = check(p, {"g": g, "c": c})
    sig = UNARY["sigmoid"]
    np.testing.assert_allclose(out["h"], UNARY["gelu"](np.exp(g - c) * sig(g)), rtol=1e-6)
    y = np.zeros((3, 8), np.float32)
    for t in range(4):
        y = sig(g[t]) * y + np.tanh(np.maximum(g[t], 0))
    np.testing.assert_allclose(out["y"][4], y, rtol=1e-6)


def test_registers_follow_boxes_that_grow_and_shrink():
    """A wavefront box (1, 2, 3, 3, 2, 1 points) over nested expressions; a second and third
    run reuse the registers sized by the first."""
    x = "x[s, l, 0:5]"
    p = program("""  buffer x: f64[6,3,5] global input
  buffer y: f64[6,3,5] global output""", f"""  for s in 0:6 sequential host {{
    stage k(l in max(0, s - 3):min(3, s + 1)) device {{
      y[s, l, 0:5] = where(gt({x}, 0.0), mul(sigmoid({x}), 2.0), sub(neg({x}), abs(x[s, 0, 0:5])))
    }}
  }}""")
    x = RNG.standard_normal((6, 3, 5))
    out = check(p, {"x": x}, runs=3, rtol=1e-12)
    s, l = 4, 1
    v = x[s, l]
    np.testing.assert_allclose(out["y"][s, l], np.where(v > 0, UNARY["sigmoid"](v) * 2, -v - np.abs(x[s, 0])))


def test_constants_only_subexpressions_where_and_f16():
    """`maximum(-1.0, 2.0)` is a scalar broadcast over the box (also as a whole expression);
    `where` picks between a computed value and a load; f16 stays f16."""
    p = program("""  buffer a: f16[3,4] global input
  buffer b: f32[3,4] global input
  buffer y: f16[3,4] global output
  buffer k: f32[3,4] global output""", """  stage k(i in 0:3) device {
    y[i, 0:4] = where(lt(a[i, 0:4], 0.0), mul(a[i, 0:4], maximum(-1.0, 2.0)), a[i, 0:4])
    k[i, 0:4] = add(minimum(maximum(-1.0, 2.0), 3.0), b[i, 0:4])
  }""")
    a, b = RNG.standard_normal((3, 4)).astype(np.float16), RNG.standard_normal((3, 4)).astype(np.float32)
    out = check(p, {"a": a, "b": b}, rtol=1e-3)
    assert out["y"].dtype == np.float16
    np.testing.assert_array_equal(out["y"], np.where(a < 0, a * np.float16(2), a))
    np.testing.assert_array_equal(out["k"], b + np.float32(2))


def test_constants_compared_with_constants_compare_as_numbers():
    """With no typed operand, a comparison's constants are float64 numbers, also where dst
    is bool (found by the random programs: `lt(-0.5, 0.0)` into a bool dst compared
    True < False)."""
    p = program("""  buffer b: bool[2] global output
  buffer y: f32[2] global output""", """  stage k(i in 0:2) device {
    b[i] = lt(-0.5, 0.0)
    y[i] = where(eq(0.5, 1.0), 1.0, 2.0)
  }""")
    out = check(p, {})
    np.testing.assert_array_equal(out["b"], [True, True])
    np.testing.assert_array_equal(out["y"], [2.0, 2.0])
