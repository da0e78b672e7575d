"""The CPU backend's tile-IR executor: batched execution (one NumPy call per op and stage)
agrees with the per-point reference executor (`fractal.backends.pointwise`) and with plain NumPy, for every op
kind, strided and broadcast views, quasi-affine (fancy-indexed) regions, control flow and
random parallel-safe programs; GEMMs that share an operand fold into one BLAS call; bad
arguments raise errors naming the buffer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractal.backends.cpu import CpuExecutable
from fractal.lang.errors import ArgumentError, ShapeError
from fractal.backends.cpu.views import Memory, RegionAccess
from fractal.lower import Buffer, TileProgram, parse_region

from tests.lower.test_tile_ir import docstring_programs

from fractal.backends.pointwise import run_pointwise
from .programs import parallel_programs, program, program_data, tile

RNG = np.random.default_rng(0)


def data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run_both(p, inputs, rtol=1e-5, atol=1e-6):
    """Runs `p` batched and point by point; asserts they agree and returns the batched outputs."""
    got = CpuExecutable(p).run(inputs)
    want = run_pointwise(p, inputs)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
    return got


def sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


# --- the docstring's wavefront LSTM -----------------------------------------------------------

def lstm_numpy(x, w, u):
    """The two-layer LSTM of tile_ir's docstring, directly: h[l + 1, t + 1] is layer l at step t."""
    h = np.zeros((3, 7, 4, 8), np.float32)
    h[0, 1:] = x
    for l in range(2):
        c = np.zeros((4, 8), np.float32)
        for t in range(6):
            g = h[l, t + 1] @ w[l] + h[l + 1, t] @ u[l]
            c = sigmoid(g[:, 8:16]) * c + sigmoid(g[:, 0:8]) * np.tanh(g[:, 24:32])
            h[l + 1, t + 1] = sigmoid(g[:, 16:24]) * np.tanh(c)
    return h


def test_docstring_lstm_matches_pointwise_and_numpy():
    """The wavefront LSTM (negative coefficients `s - l`, max/min boxes, accumulating GEMMs,
    fused cell updates) runs vectorised exactly like the pointwise executor and a direct NumPy
    LSTM, on every run, and profiles its stages."""
    p = program(docstring_programs()[0])
    x, w, u = data((6, 4, 8)), data((2, 8, 32)) * 0.5, data((2, 8, 32)) * 0.5
    got = run_both(p, {"x": x, "w": w, "u": u})["h"]
    np.testing.assert_allclose(got, lstm_numpy(x, w, u), rtol=1e-5, atol=1e-6)
    exe, profile = CpuExecutable(p), {}
    for _ in range(2):
        np.testing.assert_allclose(exe.run({"x": x, "w": w, "u": u}, profile=profile)["h"], got, rtol=1e-6, atol=1e-7)
    assert set(profile) == {"init", "load_x", "gates", "cell"} and all(t > 0 for t in profile.values())


def test_docstring_embedding_lookup_reads_its_consts_from_the_program():
    """The embedding lookup gathers rows of a const table stored in a transposed layout
    through const ids, both declared in the program (no argument holds them)."""
    p = program(docstring_programs()[1])
    table = np.array([[0.0, 1.0], [0.5, -0.5], [0.125, np.inf], [-2.0, np.nan]], np.float32)
    exe = CpuExecutable(p)
    assert exe.memory["table"].array.strides == (4, 16)  # column-major, as its layout says
    np.testing.assert_array_equal(exe.run({})["y"], table[[3, 0, 2, 2, 1]])
    np.testing.assert_array_equal(run_both(p, {})["y"], table[[3, 0, 2, 2, 1]])


# --- one op kind at a time ------------------------------------------------------------------------

def test_copy_over_a_wavefront_with_negative_coefficients_and_strides():
    """`y[l, s - l]` steps backwards through one axis as l grows; `3 - l` reads rows in reverse;
    `0:8:2` is strided."""
    p = program(tile("""  buffer x: f32[4,6,8] global input
  buffer y: f32[4,6,4] global output layout(2,0,1)""", """  for s in 0:9 sequential host {
    stage k(l in max(0, s - 5):min(4, s + 1)) device {
      y[l, s - l, 0:4] = copy(x[3 - l, s - l, 0:8:2])
    }
  }"""))
    x = data((4, 6, 8))
    np.testing.assert_array_equal(run_both(p, {"x": x})["y"], x[::-1, :, 0:8:2])


def test_elementwise_broadcast_loads_and_constants():
    """Loads broadcast to the dst shape (a row, a column, a point the stage ignores);
    constants take their sibling's dtype (f16 stays f16); comparisons feed `where`."""
    x, b, col = data((3, 4, 8), np.float16), data(8, np.float16), data((4, 1), np.float16)
    p = program(tile("""  buffer x: f16[3,4,8] global input
  buffer b: f16[8] global const
  buffer col: f16[4,1] global input
  buffer y: f16[3,4,8] global output""", """  stage k(i in 0:3) device {
    y[i, 0:4, 0:8] = where(lt(x[i, 0:4, 0:8], 0.5), add(mul(x[i, 0:4, 0:8], b[0:8]), 1.5), sub(col[0:4, 0:1], 2.0))
  }"""), b=b)
    got = run_both(p, {"x": x, "col": col}, rtol=1e-3)["y"]
    want = np.where(x < np.float16(0.5), x * b + np.float16(1.5), col - np.float16(2.0))
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_elementwise_unary_ops_and_fused_updates():
    """Non-ufunc ops (sigmoid, relu, gelu) and a region read and written by the same op."""
    p = program(tile("""  buffer x: f64[5,6] global input
  buffer y: f64[5,6] global output""", """  stage k(i in 0:5) device {
    y[i, 0:6] = sigmoid(x[i, 0:6])
    y[i, 0:6] = add(y[i, 0:6], gelu(relu(x[i, 0:6])))
    y[i, 0:6] = mul(y[i, 0:6], 2.0)
  }"""))
    x = data((5, 6), np.float64)
    from fractal.lang.tensor_ops import UNARY
    want = 2 * (sigmoid(x) + UNARY["gelu"](np.maximum(x, 0)))
    np.testing.assert_allclose(run_both(p, {"x": x})["y"], want, rtol=1e-12)


@pytest.mark.parametrize("combiner, fn", [("add", np.sum), ("max", np.max), ("min", np.min)])
def test_reduce_keeps_or_drops_axes(combiner, fn):
    p = program(tile("""  buffer x: f32[2,3,4,5] global input
  buffer kept: f32[2,3,1,5] global output
  buffer dropped: f32[2,5] global output""", f"""  stage k(i in 0:2) device {{
    kept[i, 0:3, 0:1, 0:5] = reduce_{combiner}(x[i, 0:3, 0:4, 0:5], axes=[1])
    dropped[i, 0:5] = reduce_{combiner}(x[i, 0:3, 0:4, 0:5], axes=[0, 1])
  }}"""))
    x = data((2, 3, 4, 5))
    out = run_both(p, {"x": x})
    np.testing.assert_allclose(out["kept"], fn(x, axis=2, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(out["dropped"], fn(x, axis=(1, 2)), rtol=1e-5)


def test_float_row_sums_are_one_blas_product_and_others_reduce(monkeypatch):
    """A float sum over the trailing axes of the box's rows (a softmax's row sums) is one
    matrix-vector product with ones; a sum over a middle axis, an int sum and a max reduce
    with NumPy.  All equal the plain reduction (the BLAS one to rounding)."""
    from fractal.backends.cpu import ops
    calls = []
    real = ops.row_sums
    monkeypatch.setattr(ops, "row_sums", lambda x, axes: calls.append((x.shape, axes)) or real(x, axes))
    p = program(tile("""  buffer x: f64[8,16,64] global input
  buffer n: i64[8,16,64] global input
  buffer rows: f64[8,16,1] global output
  buffer mid: f64[8,64] global output
  buffer ints: i64[8,16,1] global output
  buffer top: f64[8,16,1] global output""", """  stage k(i in 0:8) device {
    rows[i, 0:16, 0:1] = reduce_add(x[i, 0:16, 0:64], axes=[1])
    mid[i, 0:64] = reduce_add(x[i, 0:16, 0:64], axes=[0])
    ints[i, 0:16, 0:1] = reduce_add(n[i, 0:16, 0:64], axes=[1])
    top[i, 0:16, 0:1] = reduce_max(x[i, 0:16, 0:64], axes=[1])
  }"""))
    x, n = data((8, 16, 64), np.float64), np.arange(8 * 16 * 64).reshape(8, 16, 64)
    out = CpuExecutable(p).run({"x": x, "n": n})
    np.testing.assert_allclose(out["rows"], x.sum(axis=2, keepdims=True), rtol=0, atol=1e-12)  # (to rounding)
    np.testing.assert_array_equal(out["mid"], np.add.reduce(x, axis=1))
    np.testing.assert_array_equal(out["ints"], n.sum(axis=2, keepdims=True))
    np.testing.assert_array_equal(out["top"], x.max(axis=2, keepdims=True))
    assert calls == [((8, 16, 64), (2,)), ((8, 16, 64), (1,))]  # the middle-axis sum found no view


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.data())
def test_row_sums_equal_add_reduce_or_decline(shape, draw):
    """Over any axes of any (transposed, sliced) view: the plain sums to rounding, or None."""
    from fractal.backends.cpu.gemm import row_sums
    axes = tuple(sorted(draw.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    order = draw.draw(st.permutations(range(len(shape))))
    step = draw.draw(st.sampled_from([1, 2]))
    base = np.random.default_rng(len(shape)).standard_normal([n * (step if k == 0 else 1)
                                                               for k, n in enumerate(shape)])
    x = base[::step].transpose(order)
    got = row_sums(x, axes)
    if got is not None:
        want = np.add.reduce(x, axis=axes)
        np.testing.assert_allclose(got, want.reshape(-1), rtol=1e-12, atol=1e-12)


def test_gemm_transposes_accumulation_and_wider_result():
    """`c = a.T @ b.T` per point, then `c += a2 @ b2` with b2 shared by all points; f32
    operands into an f64 c (the product is cast)."""
    a, b, a2, b2 = data((3, 4, 5)), data((6, 4)), data((3, 5, 2)), data((2, 6))
    p = program(tile("""  buffer a: f32[3,4,5] global input
  buffer b: f32[6,4] global const
  buffer a2: f32[3,5,2] global input
  buffer b2: f32[2,6] global input
  buffer c: f64[3,5,6] global output""", """  stage k(i in 0:3) device {
    c[i, 0:5, 0:6] = gemm(a[i, 0:4, 0:5].T, b[0:6, 0:4].T)
    c[i, 0:5, 0:6] += gemm(a2[i, 0:5, 0:2], b2[0:2, 0:6])
  }"""), b=b)
    got = run_both(p, {"a": a, "a2": a2, "b2": b2})["c"]
    assert got.dtype == np.float64
    want = (a.transpose(0, 2, 1) @ b.T).astype(np.float64) + (a2 @ b2).astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_gemm_with_strided_operands_and_integers():
    """Operands whose inner stride is not 1 (not BLAS-friendly) and int GEMMs (no BLAS)."""
    p = program(tile("""  buffer a: f32[2,4,10] global input
  buffer b: f32[5,3] global input
  buffer c: f32[2,4,6] global output
  buffer ia: i64[2,3] global input
  buffer ib: i64[3,2] global input
  buffer ic: i64[2,2] global output""", """  stage k(i in 0:2) device {
    c[i, 0:4, 0:6:2] = gemm(a[i, 0:4, 0:10:2], b[0:5, 0:3])
  }
  stage m() device {
    ic[0:2, 0:2] = gemm(ia[0:2, 0:3], ib[0:3, 0:2])
  }"""))
    a, b = data((2, 4, 10)), data((5, 3))
    ia, ib = RNG.integers(-5, 5, (2, 3)), RNG.integers(-5, 5, (3, 2))
    out = run_both(p, {"a": a, "b": b, "ia": ia, "ib": ib})
    np.testing.assert_allclose(out["c"][:, :, 0:6:2], a[:, :, 0:10:2] @ b, rtol=1e-5)
    assert not out["c"][:, :, 1::2].any()
    np.testing.assert_array_equal(out["ic"], ia @ ib)


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_and_scatter_along_an_axis(axis):
    """Per-point index vectors (batched fancy indexing) and one shared vector (np.take);
    indices count from the region's start."""
    table = "x[i, 1:4, 0:5]" if axis == 0 else "x[i, 0:3, 1:6]"
    rows_shape = "0:2, 0:5" if axis == 0 else "0:3, 0:2"
    table_dst = "t[i, 1:4, 0:5]" if axis == 0 else "t[i, 0:3, 1:6]"
    p = program(tile("""  buffer x: f32[3,4,6] global input
  buffer idx: i32[3,2] global input
  buffer shared: i64[2] global const = [2, 0]
  buffer g: f32[3,3,5] global output
  buffer h: f32[3,3,5] global output
  buffer t: f32[3,4,6] global output""", f"""  stage k(i in 0:3) device {{
    g[i, {rows_shape}] = gather({table}, idx[i, 0:2], axis={axis})
    h[i, {rows_shape}] = gather({table}, shared[0:2], axis={axis})
    {table_dst} = scatter(g[i, {rows_shape}], idx[i, 0:2], axis={axis})
  }}"""))
    x = data((3, 4, 6))
    idx = np.array([[0, 2], [1, 0], [2, 1]], np.int32)
    shared = p.buffer("shared").data.value
    out = run_both(p, {"x": x, "idx": idx})
    for i in range(3):
        src = x[i, 1:4, 0:5] if axis == 0 else x[i, 0:3, 1:6]
        want = np.take(src, idx[i], axis=axis)
        got = out["g"][i, 0:2, 0:5] if axis == 0 else out["g"][i, 0:3, 0:2]
        np.testing.assert_array_equal(got, want)
        got_shared = out["h"][i, 0:2, 0:5] if axis == 0 else out["h"][i, 0:3, 0:2]
        np.testing.assert_array_equal(got_shared, np.take(src, shared, axis=axis))
        scattered = np.zeros_like(src)
        scattered[(slice(None),) * axis + (idx[i],)] = want
        np.testing.assert_array_equal(out["t"][i, 1:4, 0:5] if axis == 0 else out["t"][i, 0:3, 1:6], scattered)


def test_copy_with_perm_and_reshape_and_convert():
    """`copy(src, perm=[1, 0])` transposes per point, a copy between shapes of equal size
    reshapes in row-major order, convert casts (f32 -> i32 truncates)."""
    p = program(tile("""  buffer x: f32[2,3,4] global input
  buffer t: f32[2,4,3] global output
  buffer flat: f32[2,12] global output
  buffer both: f32[2,2,6] global output
  buffer n: i32[2,3,4] global output""", """  stage k(i in 0:2) device {
    t[i, 0:4, 0:3] = copy(x[i, 0:3, 0:4], perm=[1, 0])
    flat[i, 0:12] = copy(x[i, 0:3, 0:4])
    both[i, 0:2, 0:6] = copy(x[i, 0:3, 0:4], perm=[1, 0])
    n[i, 0:3, 0:4] = convert(x[i, 0:3, 0:4])
  }"""))
    x = data((2, 3, 4)) * 10
    out = run_both(p, {"x": x})
    np.testing.assert_array_equal(out["t"], x.transpose(0, 2, 1))
    np.testing.assert_array_equal(out["flat"], x.reshape(2, 12))
    np.testing.assert_array_equal(out["both"], x.transpose(0, 2, 1).reshape(2, 2, 6))
    np.testing.assert_array_equal(out["n"], x.astype(np.int32))


def test_quasi_affine_stage_indices_use_fancy_indexing():
    """floor/mod/max over stage variables: reads gather, writes assign through index arrays,
    for elementwise, reduce, gemm and scatter destinations alike."""
    w = data((3, 2))
    p = program(tile("""  buffer x: f32[4,3] global input
  buffer w: f32[3,2] global const
  buffer idx: i32[2] global const = [1, 0]
  buffer y: f32[6,3] global output
  buffer r: f32[6] global output
  buffer c: f32[6,1,2] global output
  buffer s: f32[6,3] global output""", """  stage k(i in 0:6, j in 0:1) device {
    y[(i + 3) mod 6, 0:3] = add(x[floor(i / 2), 0:3], x[max(i - 2, 0), 0:3])
    r[5 - i + j] = reduce_max(x[i mod 4, 0:3], axes=[0])
    c[(i + 1) mod 6, 0:1, 0:2] = gemm(x[floor(i / 2):floor(i / 2) + 1, 0:3], w[0:3, 0:2])
    s[(i + 5) mod 6, 0:3:2] = scatter(x[i mod 4, 0:2], idx[0:2], axis=0)
  }"""), w=w)
    x = data((4, 3))
    out = run_both(p, {"x": x})
    i = np.arange(6)
    np.testing.assert_allclose(out["y"][(i + 3) % 6], x[i // 2] + x[np.maximum(i - 2, 0)], rtol=1e-6)
    np.testing.assert_array_equal(out["r"][5 - i], x[i % 4].max(axis=1))
    np.testing.assert_allclose(out["c"][(i + 1) % 6, 0], x[i // 2] @ w, rtol=1e-5)
    np.testing.assert_array_equal(out["s"][(i + 5) % 6][:, [2, 0]], x[i % 4, 0:2])


def test_regions_affine_in_stage_variables_are_views():
    """Quasi-affine terms over loop variables only still give a strided view; floor/mod/max
    over a stage variable needs fancy indexing."""
    memory = Memory(Buffer("h", (8, 8, 4), np.float32))
    view = RegionAccess(parse_region("h[max(0, s - 5) + l, floor(s / 2) - 2*l, 0:4]"), memory, ("l",))
    fancy = RegionAccess(parse_region("h[floor(l / 2), 0, 0:4]"), memory, ("l",))
    assert view.is_view and not fancy.is_view


def test_loops_with_steps_ifs_and_parallel_loops():
    """Negative and non-unit steps, `if`/`else`, a parallel loop run in order; a stage
    without dims runs once."""
    p = program(tile("""  buffer y: f32[8] global output
  buffer z: f32[3] global output""", """  for i in 7:-1 step -2 sequential host {
    if i >= 4 {
      stage hi() device {
        y[i:i + 1] = 1.0
      }
    } else {
      stage lo() device {
        y[i:i + 1] = 2.0
      }
    }
  }
  for j in 0:3 parallel device {
    stage count() device {
      z[j:j + 1] = add(z[j:j + 1], 1.0)
    }
  }"""))
    out = run_both(p, {})
    np.testing.assert_array_equal(out["y"], [0, 2, 0, 2, 0, 1, 0, 1])
    np.testing.assert_array_equal(out["z"], [1, 1, 1])


# --- GEMM folding ----------------------------------------------------------------------------------

@pytest.fixture
def matmul_calls(monkeypatch):
    """The (a, b) shapes of every np.matmul call."""
    calls, real = [], np.matmul

    def spy(a, b, *args, **kwargs):
        calls.append((np.shape(a), np.shape(b)))
        return real(a, b, *args, **kwargs)
    monkeypatch.setattr(np, "matmul", spy)
    return calls


def test_gemm_sharing_b_folds_box_points_into_rows(matmul_calls):
    """64 points of `[1,256] @ [256,128]` with one shared weight matrix run as a single
    `[64,256] @ [256,128]` BLAS call."""
    x, w = data((64, 1, 256)), data((256, 128))
    p = program(tile("""  buffer x: f32[64,1,256] global input
  buffer w: f32[256,128] global const
  buffer y: f32[64,1,128] global output""", """  stage rows(b in 0:64) device {
    y[b, 0:1, 0:128] = gemm(x[b, 0:1, 0:256], w[0:256, 0:128])
  }"""), w=w)
    got = run_both(p, {"x": x}, atol=1e-4)["y"]  # BLAS sums 256 terms in its own order
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-4)
    assert ((64, 256), (256, 128)) in matmul_calls  # the batched run (the pointwise one calls per point)
    assert not any(len(a) == 3 for a, _ in matmul_calls)


def test_gemm_sharing_a_folds_box_points_into_columns(matmul_calls):
    """Symmetrically, a shared a folds the box into N: `[4,32] @ [32, 16 points]`."""
    x, w = data((16, 32, 1)), data((4, 32))
    p = program(tile("""  buffer w: f32[4,32] global const
  buffer x: f32[16,32,1] global input
  buffer y: f32[16,4,1] global output""", """  stage cols(b in 0:16) device {
    y[b, 0:4, 0:1] = gemm(w[0:4, 0:32], x[b, 0:32, 0:1])
  }"""), w=w)
    np.testing.assert_allclose(run_both(p, {"x": x}, atol=1e-5)["y"], w @ x, rtol=1e-4, atol=1e-5)
    assert ((4, 32), (32, 16)) in matmul_calls


def test_gemm_folds_two_box_dims_and_keeps_accumulation(matmul_calls):
    """Two box dims fold when a and c step through them like rows; `+=` adds the product."""
    x, w = data((3, 4, 2, 8), np.float64), data((8, 5), np.float64)
    p = program(tile("""  buffer x: f64[3,4,2,8] global input
  buffer w: f64[8,5] global const
  buffer y: f64[3,4,2,5] global output""", """  stage k(i in 0:3, j in 0:4) device {
    y[i, j, 0:2, 0:5] = gemm(x[i, j, 0:2, 0:8], w[0:8, 0:5])
    y[i, j, 0:2, 0:5] += gemm(x[i, j, 0:2, 0:8], w[0:8, 0:5])
  }"""), w=w)
    np.testing.assert_allclose(run_both(p, {"x": x})["y"], 2 * (x @ w), rtol=1e-12)
    assert matmul_calls.count(((24, 8), (8, 5))) == 2


def test_gemm_prepared_views_follow_changing_boxes_and_input_strides(matmul_calls):
    """A GEMM keeps its prepared (folded) views per box and buffer strides: a box that shrinks
    step by step (a bucketed ragged batch) and an input bound with other strides on the
    next run still compute the right rows, folded into one call per step every time."""
    w = data((16, 8))
    p = program(tile("""  buffer x: f32[4,1,16] global input
  buffer w: f32[16,8] global const
  buffer y: f32[4,4,1,8] global output""", """  for s in 0:4 sequential host {
    stage rows(b in 0:4 - s) device {
      y[s, b, 0:1, 0:8] = gemm(x[b, 0:1, 0:16], w[0:16, 0:8])
    }
  }"""), w=w)
    exe = CpuExecutable(p)
    for x in (data((4, 1, 16)), data((4, 1, 32))[::-1, :, ::2], data((4, 1, 16))):
        matmul_calls.clear()
        got = exe.run({"x": x})["y"]
        for s in range(4):
            np.testing.assert_allclose(got[s, :4 - s], x[:4 - s] @ w, rtol=1e-5, atol=1e-5)
            assert not got[s, 4 - s:].any(), "rows past the box stay untouched"
        if x.flags.c_contiguous:  # reversed rows cannot fold: a batched call, still right
            assert [a for a, _ in matmul_calls][:3] == [(4, 16), (3, 16), (2, 16)]  # (a box of 1: as it is)


# --- storage, arguments and profiles --------------------------------------------------------------

def test_inputs_with_any_strides_fresh_outputs_and_persistent_temps():
    """Inputs may be reversed or transposed views; outputs are fresh zeroed arrays each run;
    temps keep their values across runs and are stored in their layout."""
    p = program(tile("""  buffer x: f32[3,4] global input
  buffer acc: f32[3,4] global temp layout(1,0)
  buffer y: f32[3,4] global output
  buffer unused: f32[2] global output""", """  stage k(i in 0:3) device {
    acc[i, 0:4] = add(acc[i, 0:4], x[i, 0:4])
    y[i, 0:4] = copy(acc[i, 0:4])
  }"""))
    base = data((4, 3))
    views = [base.T, np.ascontiguousarray(data((3, 4))[::-1, ::-1])[::-1, ::-1], data((6, 8))[::2, 1::2]]
    assert views[1].strides == (-16, -4)
    exe = CpuExecutable(p)
    total = np.zeros((3, 4), np.float32)
    previous = None
    for x in views:
        out = exe.run({"x": x})
        total += x
        np.testing.assert_allclose(out["y"], total, rtol=1e-6)
        assert not out["unused"].any() and out["y"] is not previous
        previous = out["y"]
    assert exe.memory["acc"].array.strides == (4, 12)  # column-major, as its layout says


@pytest.mark.parametrize("inputs, error, message", [
    ({}, ArgumentError, "missing input 'x': the program's inputs are x, n"),
    ({"x": np.zeros((2, 3), np.float32), "n": np.zeros(2, np.int32), "q": 1}, ArgumentError,
     "unknown input 'q': the program's inputs are x, n"),
    ({"x": np.zeros((3, 2), np.float32), "n": np.zeros(2, np.int32)}, ShapeError,
     "input 'x' has shape (3, 2), expected (2, 3)"),
    ({"x": np.zeros((2, 3), np.float64), "n": np.zeros(2, np.int32)}, ArgumentError,
     "input 'x' has dtype float64, expected float32"),
    ([np.zeros((2, 3), np.float32)], ArgumentError, "inputs must be a mapping from buffer name to array, got list"),
])
def test_bad_inputs_name_the_buffer(inputs, error, message):
    p = program(tile("""  buffer x: f32[2,3] global input
  buffer n: i32[2] global input
  buffer w: f32[3] global const = [1.0, 1.0, 1.0]
  buffer y: f32[2,3] global output""", """  stage k(i in 0:2) device {
    y[i, 0:3] = mul(x[i, 0:3], w[0:3])
  }"""))
    exe = CpuExecutable(p)
    with pytest.raises(error) as e:
        exe.run(inputs)
    assert message in str(e.value) and isinstance(e.value, ValueError)


def test_unverified_programs_with_foreign_statements_are_rejected():
    with pytest.raises(TypeError, match="not a tile statement: str"):
        CpuExecutable(TileProgram("p", [], ["for"]))


# --- random parallel-safe programs ------------------------------------------------------------------

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parallel_programs())
def test_random_parallel_programs_match_the_pointwise_executor(case):
    """Random programs (every op kind, views with zero/negative strides, quasi-affine
    stage indices, loops, ifs, layouts) give the pointwise executor's outputs, on two runs
    (temps carry over), for inputs given in a different memory order."""
    p, index_info = case
    p.verify()
    inputs = program_data(p, index_info, 1, "input")
    exe, temps = CpuExecutable(p), {}
    for run in range(2):
        strided = {k: np.asfortranarray(a) if run else a for k, a in inputs.items()}
        got, want = exe.run(strided), run_pointwise(p, inputs, temps)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=f"{name}, run {run}\n{p}")


@pytest.mark.parametrize("accumulate, out_dtype", [(False, "f32"), (True, "f32"), (False, "f64")])
def test_gemm_over_a_contraction_of_one_is_a_broadcast_multiply(matmul_calls, accumulate, out_dtype):
    """`k^T v` per point (retention's state update): an outer product is one broadcast
    multiply for the whole box, not a BLAS call per point; `+=` and a wider c still hold."""
    op = "+=" if accumulate else "="
    p = program(tile(f"""  buffer k: f32[32,1,8] global input
  buffer v: f32[32,1,8] global input
  buffer s: {out_dtype}[32,8,8] global output""", f"""  stage outer(b in 0:32) device {{
    s[b, 0:8, 0:8] {op} gemm(k[b, 0:1, 0:8].T, v[b, 0:1, 0:8])
  }}"""))
    k, v = data((32, 1, 8)), data((32, 1, 8))
    got = run_both(p, {"k": k, "v": v}, atol=1e-6)["s"]
    np.testing.assert_allclose(got, k.transpose(0, 2, 1) @ v, rtol=1e-6, atol=1e-6)
    assert matmul_calls == []  # (the pointwise run multiplies with `@`, not np.matmul)
