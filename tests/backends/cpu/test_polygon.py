"""Stages over polygons on the CPU backend (`polygon`, `polygon_ops`): dims bounded by
earlier dims (triangles, bands, wavefront steps, rows left empty) run every op kind like
the pointwise executor; GEMMs group the points by the weight block they share
instead of copying it per point; the points and fancy indices are planned once per step
and kept (boundedly); points outside the polygon are never computed or written; inputs
of any strides work; scans and threads leave polygons alone, boxes keep their path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from fractal.backends.cpu import CpuExecutable, executor, polygon, polygon_ops, threads
from fractal.backends.cpu.scan import match_scan
from fractal.lang.errors import LengthError

from fractal.backends.pointwise import run_pointwise
from .programs import parallel_programs, program, program_data, tile

RNG = np.random.default_rng(0)


def data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def run_both(p, inputs, rtol=1e-5, atol=1e-6):
    """Runs `p` batched and point by point; asserts they agree and returns the batched outputs."""
    got, want = CpuExecutable(p).run(inputs), run_pointwise(p, inputs)
    for name in want:
        assert got[name].dtype == want[name].dtype
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
    return got


def triangle(n: int) -> np.ndarray:
    """The mask of points `(i, j)` with `j < n - i`."""
    i, j = np.indices((n, n))
    return j < n - i


# --- one op kind at a time --------------------------------------------------------------------

def test_copy_with_perm_and_reshape_and_convert_over_a_triangle():
    p = program(tile("""  buffer x: f32[4,4,2,3] global input
  buffer t: f32[4,4,3,2] global output
  buffer flat: f32[4,4,6] global output
  buffer n: i32[4,4,2,3] global output""", """  stage tri(i in 0:4, j in 0:4 - i) device {
    t[i, j, 0:3, 0:2] = copy(x[i, j, 0:2, 0:3], perm=[1, 0])
    flat[i, j, 0:6] = copy(x[i, j, 0:2, 0:3])
    n[i, j, 0:2, 0:3] = convert(x[i, j, 0:2, 0:3])
  }"""))
    x = data((4, 4, 2, 3)) * 10
    out, inside = run_both(p, {"x": x}), triangle(4)
    np.testing.assert_array_equal(out["t"][inside], x.transpose(0, 1, 3, 2)[inside])
    np.testing.assert_array_equal(out["flat"][inside], x.reshape(4, 4, 6)[inside])
    np.testing.assert_array_equal(out["n"][inside], x.astype(np.int32)[inside])
    assert not out["t"][~inside].any() and not out["n"][~inside].any()


def test_elementwise_with_moving_outer_and_shared_loads_over_a_band():
    """Loads that move with every point (gathered), with the outer dim only, or with no
    dim (a stride-0 view); broadcasting, constants, `where`, a dst the expression reads;
    tiles of 32 elements (window views) and of 4 (element indices); an int dst."""
    b = data(8, np.float64)
    p = program(tile("""  buffer x: f64[4,5,4,8] global input
  buffer r: f64[4,8] global input
  buffer b: f64[8] global const
  buffer y: f64[4,5,4,8] global output
  buffer s: i32[4,5,4] global output""", """  stage band(i in 0:4, j in max(0, i - 1):min(5, i + 2)) device {
    y[i, j, 0:4, 0:8] = where(lt(x[i, j, 0:4, 0:8], 0.0), mul(x[i, j, 0:4, 0:8], r[i, 0:8]), add(b[0:8], 1.5))
    y[i, j, 0:4, 0:8] = add(y[i, j, 0:4, 0:8], sigmoid(x[i, j, 0:4, 0:8]))
    s[i, j, 0:4] = add(s[i, j, 0:4], 3.0)
  }"""), b=b)
    x, r = data((4, 5, 4, 8), np.float64), data((4, 8), np.float64)
    out = run_both(p, {"x": x, "r": r}, rtol=1e-12)
    i, j = np.indices((4, 5))
    inside = (j >= i - 1) & (j < i + 2)
    want = np.where(x < 0, x * r[:, None, None, :], b + 1.5) + 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(out["y"][inside], want[inside], rtol=1e-12)
    np.testing.assert_array_equal(out["s"], np.where(inside[..., None], 3, 0).repeat(4, axis=2))


@pytest.mark.parametrize("combiner, fn", [("add", np.sum), ("max", np.max), ("min", np.min)])
def test_reduce_keeps_or_drops_axes_over_a_triangle(combiner, fn):
    p = program(tile("""  buffer x: f32[4,4,3,5] global input
  buffer kept: f32[4,4,3,1] global output
  buffer dropped: f32[4,4] global output""", f"""  stage tri(i in 0:4, j in i:4) device {{
    kept[i, j, 0:3, 0:1] = reduce_{combiner}(x[i, j, 0:3, 0:5], axes=[1])
    dropped[i, j] = reduce_{combiner}(x[i, j, 0:3, 0:5], axes=[0, 1])
  }}"""))
    x = data((4, 4, 3, 5))
    out = run_both(p, {"x": x})
    inside = np.triu(np.ones((4, 4), bool))
    np.testing.assert_allclose(out["kept"][inside], fn(x, axis=3, keepdims=True)[inside], rtol=1e-5)
    np.testing.assert_allclose(out["dropped"], np.where(inside, fn(x, axis=(2, 3)), 0), rtol=1e-5)


def test_gather_and_scatter_over_a_triangle():
    """Per-point index vectors (negative ones count from the region's end), a vector every
    point shares, a table every point shares (an embedding), a strided scatter target."""
    p = program(tile("""  buffer x: f32[4,4,6,5] global input
  buffer emb: f32[7,5] global const
  buffer idx: i64[4,4,2] global input
  buffer shared: i32[2] global const
  buffer g: f32[4,4,2,5] global output
  buffer h: f32[4,4,3,2] global output
  buffer e: f32[4,4,2,5] global output
  buffer t: f32[4,4,8,5] global output""", """  stage tri(i in 0:4, j in 0:4 - i) device {
    g[i, j, 0:2, 0:5] = gather(x[i, j, 1:4, 0:5], idx[i, j, 0:2], axis=0)
    h[i, j, 0:3, 0:2] = gather(x[i, j, 1:4, 0:5], shared[0:2], axis=1)
    e[i, j, 0:2, 0:5] = gather(emb[1:7, 0:5], idx[i, j, 0:2], axis=0)
    t[i, j, 1:7:2, 0:5] = scatter(g[i, j, 0:2, 0:5], idx[i, j, 0:2], axis=0)
  }"""), emb=(emb := data((7, 5))), shared=(shared := np.array([4, -5], np.int32)))
    x = data((4, 4, 6, 5))
    idx = np.stack([RNG.permutation([0, 1, -1])[:2] for _ in range(16)]).reshape(4, 4, 2)
    out, inside = run_both(p, {"x": x, "idx": idx}), triangle(4)
    for i, j in zip(*np.nonzero(inside)):
        table = x[i, j, 1:4]
        np.testing.assert_array_equal(out["g"][i, j], table[idx[i, j]])
        np.testing.assert_array_equal(out["h"][i, j], table[:, shared])
        np.testing.assert_array_equal(out["e"][i, j], emb[1:7][idx[i, j]])
        scattered = np.zeros((3, 5), np.float32)
        scattered[idx[i, j]] = table[idx[i, j]]
        np.testing.assert_array_equal(out["t"][i, j, 1:7:2], scattered)
    assert not out["t"][..., 0::2, :].any()


def test_padding_one_past_the_end_gathers_zeros_and_scatters_nothing_at_a_point():
    """As in a box: a gather's padding index reads a zero row, a scatter's writes no row."""
    p = program(tile("""  buffer x: f32[3,3,4,2] global input
  buffer idx: i32[3,3,2] global input
  buffer y: f32[3,3,2,2] global output
  buffer t: f32[3,3,4,2] global output""", """  stage tri(i in 0:3, j in 0:3 - i) device {
    y[i, j, 0:2, 0:2] = gather(x[i, j, 0:4, 0:2], idx[i, j, 0:2], axis=0)
    t[i, j, 0:4, 0:2] = scatter(x[i, j, 0:2, 0:2], idx[i, j, 0:2], axis=0)
  }"""))
    x = data((3, 3, 4, 2))
    idx = np.stack([RNG.permutation([0, 1, 3, 4])[:2] for _ in range(9)]).reshape(3, 3, 2).astype(np.int32)
    out = run_both(p, {"x": x, "idx": idx})
    for i, j in zip(*np.nonzero(triangle(3))):
        padded = np.concatenate([x[i, j], np.zeros((1, 2), np.float32)])
        np.testing.assert_array_equal(out["y"][i, j], padded[idx[i, j]])
        scattered = np.zeros((5, 2), np.float32)
        scattered[idx[i, j]] = x[i, j, 0:2]
        np.testing.assert_array_equal(out["t"][i, j], scattered[:4])


@pytest.mark.parametrize("op, error, message", [
    ("y[i, j, 0:1] = gather(x[i, j, 0:4], idx[i, j, 0:1], axis=0)", LengthError,
     "gather: an index is out of range for its list"),
    ("x2[i, j, 0:4] = scatter(y[i, j, 0:1], idx[i, j, 0:1], axis=0)", IndexError,
     "scatter: an index is out of range for axis 0 of size 4")])
def test_an_index_out_of_range_at_a_point_raises(op, error, message):
    """As in a box: a gather's names its index buffer (the user's line), a scatter's is NumPy's kind."""
    p = program(tile("""  buffer x: f32[3,3,4] global input
  buffer idx: i32[3,3,1] global input
  buffer y: f32[3,3,1] global output
  buffer x2: f32[3,3,4] global output""", f"""  stage tri(i in 0:3, j in 0:3 - i) device {{
    {op}
  }}"""))
    idx = np.zeros((3, 3, 1), np.int32)
    idx[1, 1] = 5  # (4: one past the end, is padding)
    with pytest.raises(error, match=message) as e:
        CpuExecutable(p).run({"x": data((3, 3, 4)), "idx": idx})
    assert getattr(e.value, "index_buffer", "idx") == "idx"


# --- GEMM: points grouped by the block they share --------------------------------------------------

class MatmulCalls(list):
    """Per np.matmul call: the operand shapes, and whether b is a view of `weights`."""

    weights: np.ndarray | None = None


@pytest.fixture
def matmul_calls(monkeypatch):
    calls, real = MatmulCalls(), np.matmul

    def spy(a, b, *args, **kwargs):
        calls.append((np.shape(a), np.shape(b), calls.weights is not None and np.shares_memory(b, calls.weights)))
        return real(a, b, *args, **kwargs)
    monkeypatch.setattr(np, "matmul", spy)
    return calls


def gemm_case(dims: str, a: str, b: str, shapes: dict, c="c[i, j, 0:2, 0:16]", op="=", dtype="f32"):
    buffers = "\n".join(f"  buffer {name}: {dtype if name != 'c' else 'f32'}[{','.join(map(str, shape))}] global "
                        f"{'output' if name == 'c' else 'const' if name == 'w' else 'input'}"
                        for name, shape in shapes.items())
    return program(tile(buffers, f"""  stage k({dims}) device {{
    {c} {op} gemm({a}, {b})
  }}"""), w=data(shapes["w"]))


def run_gemm(p, matmul_calls):
    inputs = {b.name: data(b.shape) for b in p.buffers if b.role == "input"}
    exe = CpuExecutable(p)
    matmul_calls.weights = exe.memory["w"].array
    got = exe.run(inputs)
    want = run_pointwise(p, inputs)
    np.testing.assert_allclose(got["c"], want["c"], rtol=1e-4, atol=1e-4)
    return got


def test_gemm_with_weights_every_point_shares_is_one_blas_call(matmul_calls):
    """10 points of `[2,32] @ [32,16]` with one weight matrix: one `[20,32] @ [32,16]`
    call on the weights in place."""
    p = gemm_case("i in 0:4, j in 0:4 - i", "x[i, j, 0:2, 0:32]", "w[0:32, 0:16]",
                  {"x": (4, 4, 2, 32), "w": (32, 16), "c": (4, 4, 2, 16)})
    run_gemm(p, matmul_calls)
    assert matmul_calls == [((20, 32), (32, 16), True)]


def test_gemm_with_big_weights_per_outer_dim_is_one_call_per_block(matmul_calls):
    """A triangle's rows (4, 3, 2 and 1 points) each share the weights `w[i]` (read by the
    outer dim only): one BLAS call per block, on the weights in place, never a copy per
    point (padding the rows to one size would waste more than three calls cost)."""
    p = gemm_case("i in 0:4, j in 0:4 - i", "x[i, j, 0:8, 0:256]", "w[i, 0:256, 0:256]",
                  {"x": (4, 4, 8, 256), "w": (4, 256, 256), "c": (4, 4, 8, 256)}, c="c[i, j, 0:8, 0:256]")
    run_gemm(p, matmul_calls)
    assert matmul_calls == [((8 * n, 256), (256, 256), True) for n in (4, 3, 2, 1)]


def test_gemm_with_small_weights_per_outer_dim_pads_the_rows_into_one_stacked_call(matmul_calls):
    """The same triangle with 64x64 weights: the rows padded to 4 points each, one
    `np.matmul` of `[4, 8, 64]` with a strided view of the four blocks; the pad rows'
    products are dropped."""
    p = gemm_case("i in 0:4, j in 0:4 - i", "x[i, j, 0:2, 0:64]", "w[i, 0:64, 0:64]",
                  {"x": (4, 4, 2, 64), "w": (4, 64, 64), "c": (4, 4, 2, 64)}, c="c[i, j, 0:2, 0:64]")
    got = run_gemm(p, matmul_calls)
    assert matmul_calls == [((4, 8, 64), (4, 64, 64), True)]
    assert not got["c"][~triangle(4)].any()


def test_gemm_with_equal_groups_of_evenly_spaced_blocks_is_one_stacked_call(matmul_calls):
    """A parallelogram (3 points per row) over `w[i]`: one `np.matmul` of the stacked rows
    `[4, 6, 64]` with a strided view of the four blocks `[4, 64, 64]`."""
    p = gemm_case("i in 0:4, j in i:i + 3", "x[i, j, 0:2, 0:64]", "w[i, 0:64, 0:64]",
                  {"x": (4, 6, 2, 64), "w": (4, 64, 64), "c": (4, 6, 2, 64)}, c="c[i, j, 0:2, 0:64]")
    run_gemm(p, matmul_calls)
    assert matmul_calls == [((4, 6, 64), (4, 64, 64), True)]


def test_gemm_with_tiny_weights_gathers_both_operands_per_point(matmul_calls):
    """Weights of 4x8 per point: gathered with the rows, one batched call over the points."""
    p = gemm_case("i in 0:4, j in 0:4 - i", "x[i, j, 0:2, 0:4]", "w[i, j, 0:4, 0:8]",
                  {"x": (4, 4, 2, 4), "w": (4, 4, 4, 8), "c": (4, 4, 2, 8)}, c="c[i, j, 0:2, 0:8]")
    run_gemm(p, matmul_calls)
    assert matmul_calls == [((10, 2, 4), (10, 4, 8), False)]


def test_gemm_with_a_shared_a_folds_the_points_into_columns(matmul_calls):
    """`w[0:16, 0:32] @ x[i, j]` per point: `c^T = x^T w^T`, one call whose rows are the
    points' columns."""
    p = gemm_case("i in 0:4, j in 0:4 - i", "w[0:16, 0:32]", "x[i, j, 0:32, 0:2]",
                  {"x": (4, 4, 32, 2), "w": (16, 32), "c": (4, 4, 16, 2)}, c="c[i, j, 0:16, 0:2]")
    run_gemm(p, matmul_calls)
    assert matmul_calls == [((20, 32), (32, 16), True)]


@pytest.mark.parametrize("limit", [polygon_ops.GATHER_LIMIT, 0], ids=["gathered", "grouped"])
@pytest.mark.parametrize("trans_a, trans_b, op, c_dtype", [
    (True, False, "=", "f32"), (False, True, "+=", "f32"), (True, True, "+=", "f64"), (False, False, "+=", "f64")])
def test_gemm_transposes_accumulation_and_a_wider_c(monkeypatch, limit, trans_a, trans_b, op, c_dtype):
    """Every combination of transposed operands, `+=` and an f64 c of f32 operands, over
    a polygon with shared-by-row weights, as gathered per point and as grouped by block;
    the shared operand taken from a or from b."""
    monkeypatch.setattr(polygon_ops, "GATHER_LIMIT", limit)
    a = "x[i, j, 0:5, 0:3].T" if trans_a else "x[i, j, 0:3, 0:5]"
    b = "w[i, 0:4, 0:5].T" if trans_b else "w[i, 0:5, 0:4]"
    a_t = a.replace(".T", "") if trans_a else a + ".T"  # op(a)^T
    b_t = b.replace(".T", "") if trans_b else b + ".T"
    w = data((3,) + ((4, 5) if trans_b else (5, 4)))
    p = program(tile(f"""  buffer x: f32[3,4,{'5,3' if trans_a else '3,5'}] global input
  buffer w: f32[3,{'4,5' if trans_b else '5,4'}] global const
  buffer c: {c_dtype}[3,4,3,4] global output
  buffer d: {c_dtype}[3,4,4,3] global output""", f"""  stage k(i in 0:3, j in max(0, i - 1):4 - i) device {{
    c[i, j, 0:3, 0:4] {op} gemm({a}, {b})
    d[i, j, 0:4, 0:3] {op} gemm({b_t}, {a_t})
  }}"""), w=w)
    x = data(p.buffer("x").shape)
    out = run_both(p, {"x": x}, rtol=1e-5, atol=1e-5)
    assert out["c"].dtype == np.dtype(c_dtype.replace("f", "float"))
    np.testing.assert_allclose(out["d"], out["c"].swapaxes(2, 3), rtol=1e-5, atol=1e-5)  # (a b)^T = b^T a^T


# --- the grid RNN's wavefront step ---------------------------------------------------------------

def grid_text(D, S, T, B, H) -> str:
    """A stacked 2-d grid RNN's cells (f, i, j) on wavefront steps `w = f + i + j`: a polygon
    over (f, i) times the batch m, per-layer weights read by f only, `j = w - f - i`."""
    j, cell, H2 = "w - f - i", f"f, i, m, 0:{H}", 2 * H
    polygon = f"f in max(0, w - {S + T - 2}):min({D}, w + 1), i in max(0, w - f - {T - 1}):min({S}, w - f + 1)"
    return tile(f"""  buffer x: f32[{S},{T},{B},{H}] global input
  buffer u: f32[{D},{H},{H2}] global const
  buffer v: f32[{D},{H},{H2}] global const
  buffer q: f32[{D},{H},{H2}] global const
  buffer b: f32[{D},{H2}] global const
  buffer h: f32[{D + 1},{S + 1},{T + 1},{B},{H}] global output
  buffer g: f32[{D},{S},{B},1,{H2}] global temp
  buffer z: f32[{D},{S},{B},{H}] global temp
  buffer c: f32[{D},{S},{B},{H}] global temp""", f"""  stage load(i in 0:{S}, j in 0:{T}, m in 0:{B}) device {{
    h[0, i + 1, j + 1, m, 0:{H}] = copy(x[i, j, m, 0:{H}])
  }}
  for w in 0:{D + S + T - 2} sequential host {{
    stage cell({polygon}, m in 0:{B}) device {{
      g[f, i, m, 0:1, 0:{H2}] = gemm(h[f + 1, i, {j} + 1, m:m + 1, 0:{H}], u[f, 0:{H}, 0:{H2}])
      g[f, i, m, 0:1, 0:{H2}] += gemm(h[f + 1, i + 1, {j}, m:m + 1, 0:{H}], v[f, 0:{H}, 0:{H2}])
      g[f, i, m, 0:1, 0:{H2}] += gemm(h[f, i + 1, {j} + 1, m:m + 1, 0:{H}], q[f, 0:{H}, 0:{H2}])
      z[{cell}] = sigmoid(add(g[f, i, m, 0, 0:{H}], b[f, 0:{H}]))
      c[{cell}] = tanh(add(g[f, i, m, 0, {H}:{H2}], b[f, {H}:{H2}]))
      h[f + 1, i + 1, {j} + 1, m, 0:{H}] = add(mul(z[{cell}], c[{cell}]),
                                              mul(sub(1.0, z[{cell}]), h[f, i + 1, {j} + 1, m, 0:{H}]))
    }}
  }}""")


def grid_consts(D, H) -> dict:
    return {**{k: data((D, H, 2 * H)) for k in "uvq"}, "b": data((D, 2 * H))}


def grid_numpy(x, u, v, q, b):
    """The same grid RNN cell by cell, layer by layer, row by row."""
    S, T, _, H = x.shape
    h = np.zeros((u.shape[0] + 1, S + 1, T + 1) + x.shape[2:], np.float32)
    h[0, 1:, 1:] = x
    for f in range(u.shape[0]):
        for i in range(S):
            for j in range(T):
                g = h[f + 1, i, j + 1] @ u[f] + h[f + 1, i + 1, j] @ v[f] + h[f, i + 1, j + 1] @ q[f]
                z, c = 1 / (1 + np.exp(-(g[:, :H] + b[f, :H]))), np.tanh(g[:, H:] + b[f, H:])
                h[f + 1, i + 1, j + 1] = z * c + (1 - z) * h[f, i + 1, j + 1]
    return h


@pytest.mark.parametrize("sizes", [(3, 4, 5, 3, 4), (3, 5, 6, 4, 32)], ids=["hidden4", "hidden32"])
def test_grid_rnn_wavefront_matches_a_numpy_loop(sizes):
    """Every wavefront step's polygon of cells (triangles at the ends, full rows in the
    middle) computes the grid RNN as a plain loop does, on two runs of one executable, and
    is profiled under its name."""
    D, S, T, B, H = sizes
    consts = {k: data((D, H, 2 * H)) / np.float32(np.sqrt(H)) for k in "uvq"}
    consts["b"] = data((D, 2 * H))
    p = program(grid_text(*sizes), **consts)
    x = data((S, T, B, H))
    exe, want, profile = CpuExecutable(p), grid_numpy(x, *(consts[k] for k in "uvqb")), {}
    for _ in range(2):
        np.testing.assert_allclose(exe.run({"x": x}, profile=profile)["h"], want, rtol=1e-4, atol=1e-5)
    assert set(profile) == {"load", "cell"} and profile["cell"] > 0


# --- what runs, what is kept -----------------------------------------------------------------------

def test_points_outside_the_polygon_are_never_computed_or_written():
    """Rows left empty (in the middle and at the end, by mod bounds) and points past each
    row's end: nothing written there, and an index that would be out of range there (a
    gather raises for it inside) is never looked at."""
    p = program(tile("""  buffer x: f32[5,4,3] global input
  buffer idx: i32[5,4,1] global input
  buffer y: f32[5,4] global output
  buffer g: f32[5,4,1] global output""", """  stage rows(i in 0:5, j in 3*(i mod 2):4 - i) device {
    y[i, j] = add(x[i, j, 0], 1.0)
    g[i, j, 0:1] = gather(x[i, j, 0:3], idx[i, j, 0:1], axis=0)
  }"""))
    i, j = np.indices((5, 4))
    inside = (j >= 3 * (i % 2)) & (j < 4 - i)
    assert inside.sum() == 6 and not inside[1].any() and not inside[3:].any()
    x, idx = data((5, 4, 3)), np.where(inside[..., None], 2, 99).astype(np.int32)
    out = run_both(p, {"x": x, "idx": idx})
    np.testing.assert_array_equal(out["y"], np.where(inside, x[..., 0] + 1, 0))
    np.testing.assert_array_equal(out["g"][..., 0], np.where(inside, x[..., 2], 0))


def test_point_plans_are_made_once_per_step_and_bounded(monkeypatch):
    """The points of a step are enumerated on the step's first run only; a stage keeps at
    most MAX_PLANS steps' plans, dropping the oldest; an empty step plans to None."""
    p = program(grid_text(2, 3, 3, 2, 4), **grid_consts(2, 4))
    cell = next(s for s in p.stages() if s.name == "cell")
    plans = polygon.PointPlans(cell)
    enumerated = []
    points = plans.points
    plans.points = lambda env: enumerated.append(env["w"]) or points(env)
    first = plans({"w": 1})
    assert plans({"w": 1}) is first and enumerated == [1]
    assert {k: x.tolist() for k, x in first.points.items()} == {  # (f, i) in (0, 0), (0, 1), (1, 0); m in 0:2
        "f": [0, 0, 0, 0, 1, 1], "i": [0, 0, 1, 1, 0, 0], "m": [0, 1, 0, 1, 0, 1]}
    monkeypatch.setattr(polygon, "MAX_PLANS", 3)
    for w in range(6):
        plans({"w": w})
    assert list(plans.cache) == [(3,), (4,), (5,)] and enumerated == [1, 0, 2, 3, 4, 5]
    assert polygon.PointPlans(cell)({"w": 99}) is None


def test_inputs_with_any_strides_even_not_whole_elements():
    """Inputs reversed, column-major, or with byte strides that are not whole elements (a
    field of a packed record array: viewed by bytes) give the same results, run after run."""
    p = program(tile("""  buffer x: f32[4,4,6] global input
  buffer y: f32[4,4,6] global output
  buffer s: f32[4,4,2] global output""", """  stage tri(i in 0:4, j in 0:4 - i) device {
    y[i, j, 0:6] = mul(x[i, j, 0:6], 2.0)
    s[i, j, 0:2] = copy(x[i, j, 2:6:2])
  }"""))
    base = data((4, 4, 6))
    packed = np.zeros((4, 4, 6), dtype=[("tag", "u1"), ("x", "<f4")])
    packed["x"] = base
    assert packed["x"].strides[-1] % 4
    exe, inside = CpuExecutable(p), triangle(4)
    reversed_ = np.ascontiguousarray(base[::-1, ::-1])[::-1, ::-1]
    for x in (base, np.asfortranarray(base), reversed_, packed["x"], base):
        out = exe.run({"x": x})
        np.testing.assert_array_equal(out["y"], np.where(inside[..., None], 2 * base, 0))
        np.testing.assert_array_equal(out["s"], np.where(inside[..., None], base[..., 2:6:2], 0))


def test_scans_and_threads_leave_polygons_alone(monkeypatch):
    """A loop of polygon stages that would otherwise be a scan runs step by step; the thread
    plan never splits a polygon (a box beside it still qualifies); both give the pointwise
    executor's results on two threads."""
    p = program(tile("""  buffer x: f32[6,4,4,8] global input
  buffer acc: f32[7,4,4,8] global output
  buffer y: f32[4,4,8] global output""", """  for r in 0:6 sequential host {
    stage tri(i in 0:4, j in 0:4 - i) device {
      acc[r + 1, i, j, 0:8] = add(acc[r, i, j, 0:8], x[r, i, j, 0:8])
    }
  }
  stage box(i in 0:4, j in 0:4) device {
    y[i, j, 0:8] = mul(x[0, i, j, 0:8], 2.0)
  }"""))
    assert match_scan(p.body[0]) is None
    assert set(threads.qualifying(p, 1)) == {"box"}
    monkeypatch.setattr(executor, "plan", lambda prog, n, least: threads.qualifying(prog, least))
    x = data((6, 4, 4, 8))
    got, want = CpuExecutable(p, threads=2, split_elements=1).run({"x": x}), run_pointwise(p, {"x": x})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
    np.testing.assert_allclose(got["acc"][6], np.where(triangle(4)[..., None], x.sum(axis=0), 0), rtol=1e-5)


def test_boxes_keep_the_box_path(monkeypatch):
    """Only a stage whose dims' bounds read its dims takes the polygon path."""
    def refuse(*args):
        raise AssertionError("a box compiled as a polygon")
    monkeypatch.setattr(executor, "compile_polygon", refuse)
    box = program(tile("""  buffer y: f32[4,4] global output""", """  for s in 0:4 sequential host {
    stage k(i in 0:4 - s, j in max(0, s - 1):4) device {
      y[i, j] = 1.0
    }
  }"""))
    assert next(box.stages()).rectangular
    assert CpuExecutable(box).run({})["y"].all()


# --- random polygons ---------------------------------------------------------------------------------

@pytest.mark.parametrize("flat_tile, gather_limit, call_macs", [
    (polygon.FLAT_TILE, polygon_ops.GATHER_LIMIT, polygon_ops.CALL_MACS), (0, 0, 1 << 40), (0, 0, 0)],
    ids=["as-planned", "windows-and-padded-blocks", "windows-and-grouped-blocks"])
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=parallel_programs(nested=True))
def test_random_polygon_programs_match_the_pointwise_executor(monkeypatch, flat_tile, gather_limit, call_macs, case):
    """Random parallel-safe programs whose stages' second dims are mostly bounded by their
    first (rows possibly empty), every op kind, loops and ifs around them: the pointwise
    executor's outputs on two runs (temps carry over), inputs in another memory order the
    second time; also with every tile windowed and every GEMM by blocks of W, padded to
    one size or one product per block."""
    monkeypatch.setattr(polygon, "FLAT_TILE", flat_tile)
    monkeypatch.setattr(polygon_ops, "GATHER_LIMIT", gather_limit)
    monkeypatch.setattr(polygon_ops, "CALL_MACS", call_macs)
    p, index_info = case
    p.verify()
    inputs = program_data(p, index_info, 1, "input")
    exe, temps = CpuExecutable(p), {}
    for run in range(2):
        strided = {k: np.asfortranarray(a) if run else a for k, a in inputs.items()}
        got, want = exe.run(strided), run_pointwise(p, inputs, temps)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=f"{name}, run {run}\n{p}")
