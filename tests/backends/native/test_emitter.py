"""The native emitter (tile IR -> host C++), compiled and run: every op kind, control flow,
polygons and random parallel-safe programs give the per-point reference executor's outputs
(`fractal.backends.pointwise`); big products go to BLAS (their points folded into one call
where they stack), small ones stay loops; bad indices raise the interpreter's errors; runs
from several threads each get their own answer."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fractal as ft
from fractal.backends.native import blas
from fractal.backends.native.executable import NativeExecutable
from fractal.backends.native.source import emit_program
from fractal.backends.pointwise import run_pointwise
from fractal.lang.errors import LengthError
from tests.backends import emitter_specs as specs
from tests.backends.cpu.programs import parallel_programs, program, program_data, tile
from tests.backends.native.conftest import needs_compiler
from tests.lower.test_tile_ir import docstring_programs

pytestmark = needs_compiler
RNG = np.random.default_rng(0)


def native(p, threads: int = 2) -> NativeExecutable:
    return NativeExecutable(p, threads=threads)


def run_both(p, inputs, rtol=1e-5, atol=1e-5, threads: int = 2):
    """Runs `p` natively and point by point; asserts they agree; returns the native outputs."""
    got, want = native(p, threads).run(inputs), run_pointwise(p, inputs)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=f"{name}\n{p}")
    return got


def data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def source(p) -> str:
    found = blas.find_blas()
    return emit_program(p, blas.gemm_prelude(found) if found else None).text


# --- the source ---------------------------------------------------------------------------------

def test_the_program_is_one_function_with_each_stage_and_op_under_its_tile_ir_line():
    p = program(docstring_programs()[0])
    text = source(p)
    assert 'FT_EXPORT int ft_run(void* const* ft_buffers, double* ft_profile, int ft_threads) {' in text
    for s in p.stages():
        assert f"// stage {s.name}(" in text
        for op in s.body:
            assert f"// {str(op).splitlines()[0]}" in text
    assert text == source(p)   # the same program gives the same source


def test_a_stage_with_enough_work_shares_its_points_among_threads_and_a_box_collapses_its_dims():
    p = program(tile("""  buffer x: f32[64,30,20] global input
  buffer y: f32[64,30,20] global output""", """  stage s(i in 0:64, j in 0:30) device {
    y[i, j, 0:20] = tanh(x[i, j, 0:20])
  }"""))
    text = source(p)
    assert "#pragma omp parallel for schedule(static) num_threads(ft_threads) if(ft_work >= 32768) collapse(2)" in text
    assert "ft_tanhf(" in text   # (the vectorisable float32 tanh of vecmath.h, not libm's)
    x = data((64, 30, 20))
    np.testing.assert_allclose(run_both(p, {"x": x})["y"], np.tanh(x), rtol=1e-6, atol=1e-6)


def test_a_polygon_counts_its_inner_dims_at_their_widest_and_deals_its_outer_points_out_as_they_finish():
    """Two images of 100 and 200 rows of 256 elements: 102400 elements at most, shared among
    threads (counted as one row an image, it seemed 512 and ran on one thread)."""
    p = program(tile("""  buffer x: f32[400,256] global input
  buffer y: f32[400,256] global output""", """  stage s(m in 0:2, j in 0:100*m + 100) device {
    y[j + 200*m, 0:256] = tanh(x[j + 200*m, 0:256])
  }"""))
    text = source(p)
    assert "const long long ft_work = (2 - 0) * 51200LL;" in text
    assert "#pragma omp parallel for schedule(dynamic, ft_chunk) num_threads(ft_threads) if(ft_work >= 32768)" in text
    x = data((400, 256))
    got = run_both(p, {"x": x})["y"]
    np.testing.assert_allclose(got[:100], np.tanh(x[:100]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[200:], np.tanh(x[200:]), rtol=1e-6, atol=1e-6)


def test_points_of_an_element_each_keep_their_innermost_dim_a_loop_of_its_own_to_vectorise():
    """Collapsed, the nest would be one flat loop whose indices are divided out of its counter."""
    p = program(tile("""  buffer x: f32[64,300] global input
  buffer y: f32[64,300] global output""", """  stage s(i in 0:64, j in 0:300) device {
    y[i, j] = exp(x[i, j])
  }"""))
    text = source(p)
    pragma = "#pragma omp parallel for schedule(static) num_threads(ft_threads) if(ft_work >= 32768)\n"
    assert pragma in text and "collapse(" not in text
    assert text.index(pragma) < text.index("for (long long v_i = 0;") < text.index("for (long long v_j = 0;")
    x = data((64, 300))
    np.testing.assert_allclose(run_both(p, {"x": x})["y"], np.exp(x), rtol=1e-6)


# --- products -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["f32", "f64", "i32"])
def test_gemm_transposes_and_accumulation(dtype):
    spec = specs.gemm(dtype)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))
    calls = source(spec.program).split("FT_EXPORT int ft_run")[1].count("ft_gemm_f")
    assert calls == (0 if dtype == "i32" or blas.find_blas() is None else 3 * 2)   # 3 calls, split by rows or columns


@pytest.mark.skipif(blas.find_blas() is None, reason="no BLAS found: every product runs as loops")
def test_points_that_stack_the_rows_of_a_shared_weight_product_fold_into_one_blas_call():
    """`g[l, b] = x[l, b] @ w` over (l, b): both dims stack the rows, so the stage is one
    280 x 24 @ 24 x 40 call; the tanh after it runs as its own loop nest over the points."""
    p = program(tile("""  buffer x: f32[4,70,1,24] global input
  buffer w: f32[24,40] global input
  buffer g: f32[4,70,1,40] global temp
  buffer y: f32[4,70,1,40] global output""", """  stage cell(l in 0:4, b in 0:70) device {
    g[l, b, 0:1, 0:40] = gemm(x[l, b, 0:1, 0:24], w[0:24, 0:40])
    y[l, b, 0:1, 0:40] = tanh(g[l, b, 0:1, 0:40])
  }"""))
    text = source(p)
    assert "const long long ft_m = 280, ft_n = 40;" in text   # (one call, its rows or columns split among threads)
    assert "ft_gemm_f32(false, false, ft_1 - ft_0, ft_n, 24, 1.0f, b_x + (0) + ft_0*24, 24, b_w + (0), 40, 0.0f, " \
           "b_g + (0) + ft_0*40, 40);" in text
    x, w = data((4, 70, 1, 24)), data((24, 40))
    np.testing.assert_allclose(run_both(p, {"x": x, "w": w})["y"], np.tanh(x @ w), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(blas.find_blas() is None, reason="no BLAS found: every product runs as loops")
def test_points_fold_in_the_order_that_stacks_the_most_rows():
    """A dilated RNN's input projection reads its rows as [s][j][i] and writes them as
    [s][i][j]: folding j first (innermost) stacks 2 rows a call, i first 64; 2 x 3 calls of
    64 rows, not 3 x 64 calls of 2."""
    p = program(tile("""  buffer x: f32[384,1,16] global input
  buffer w: f32[16,32] global input
  buffer y: f32[384,1,32] global output""", """  stage proj(s in 0:3, i in 0:64, j in 0:2) device {
    y[2*i + j + 128*s, 0:1, 0:32] = gemm(x[i + 64*j + 128*s, 0:1, 0:16], w[0:16, 0:32])
  }"""))
    assert "const long long ft_m = 64, ft_n = 32;" in source(p)
    x, w = data((384, 1, 16)), data((16, 32))
    want = (x.reshape(3, 2, 64, 16).transpose(0, 2, 1, 3) @ w).reshape(384, 1, 32)
    np.testing.assert_allclose(run_both(p, {"x": x, "w": w})["y"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(blas.find_blas() is None, reason="no BLAS found: every product runs as loops")
def test_a_polygon_folds_the_dims_its_bounds_cut_into_calls_over_the_dims_that_bound_them():
    """A ragged batch's input projection cut to each step's live rows (`i in 0:n(s)`): s bounds
    i, so s stays a loop and i folds, one call of n(s) rows per (s, j); the dead rows are
    never written."""
    live = "2*min(1, max(0, 2 - s)) + 60"
    p = program(tile("""  buffer x: f32[384,1,16] global input
  buffer w: f32[16,32] global input
  buffer y: f32[384,1,32] global output""", f"""  stage proj(s in 0:3, i in 0:{live}, j in 0:2) device {{
    y[2*i + j + 128*s, 0:1, 0:32] = gemm(x[i + 64*j + 128*s, 0:1, 0:16], w[0:16, 0:32])
  }}"""))
    text = source(p)
    assert "for (long long v_s = 0; v_s < 3; ++v_s) {" in text and "for (long long v_i" not in text
    assert "const long long ft_m = 1*(2*fl_min(1, fl_max(0, -v_s + 2)) + 60), ft_n = 32;" in text
    x, w = data((384, 1, 16)), data((16, 32))
    got = run_both(p, {"x": x, "w": w})["y"].reshape(3, 64, 2, 32)
    want = (x.reshape(3, 2, 64, 16).transpose(0, 2, 1, 3) @ w)
    for s, n in enumerate((62, 62, 60)):
        np.testing.assert_allclose(got[s, :n], want[s, :n], rtol=1e-5, atol=1e-5)
        assert not got[s, n:].any()


def test_a_dim_read_inside_a_floor_does_not_fold():
    """B reads d at its columns and inside floor(d / 2): d's points do not stack B's columns."""
    p = program(tile("""  buffer a: f32[2,1,2] global input
  buffer b: f32[2,2,3] global input
  buffer y: f32[3,1,1] global output""", """  stage mm(d in 0:3) device {
    y[d, 0:1, 0:1] = gemm(a[floor(d / 2), 0:1, 0:2], b[floor(d / 2), 0:2, d:d + 1])
  }"""))
    run_both(p, {"a": data((2, 1, 2)), "b": data((2, 2, 3))})


def test_a_small_product_per_point_stays_loops_and_a_point_dependent_weight_is_not_folded():
    p = program(tile("""  buffer x: f64[6,2,8] global input
  buffer w: f64[6,8,4] global input
  buffer y: f64[6,2,4] global output""", """  stage mm(i in 0:6) device {
    y[i, 0:2, 0:4] = gemm(x[i, 0:2, 0:8], w[i, 0:8, 0:4])
  }"""))
    assert "ft_gemm_f64(" not in source(p).split("FT_EXPORT int ft_run")[1]
    x, w = data((6, 2, 8), np.float64), data((6, 8, 4), np.float64)
    np.testing.assert_allclose(run_both(p, {"x": x, "w": w})["y"], x @ w, rtol=1e-12)


def test_a_gemm_overwriting_its_own_operand_reads_it_first():
    p = program(tile("""  buffer y: f64[8,12] global output
  buffer b: f64[5,6] global input""", """  stage mm() device {
    y[0:8, 6:12] = gemm(y[0:8, 1:6], b[0:5, 0:6])
    y[0:8, 0:6] = gemm(y[0:8, 4:9], b[0:5, 0:6])
  }"""))
    run_both(p, {"b": data((5, 6), np.float64)})


# --- the other ops (tests/backends/emitter_specs.py) -------------------------------------------------

@pytest.mark.parametrize("combiner", ["add", "max", "min"])
def test_reductions_keep_or_drop_axes_and_reduce_empty_and_long_rows(combiner):
    spec = specs.reductions(combiner)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_segment_reductions_with_empty_segments():
    spec = specs.segment_max()
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_a_stage_without_dims_shares_each_big_ops_outer_loop_among_threads_but_never_a_scatters():
    """graphsage's neighbour sums: every edge's row gathered, then summed per node, one
    point; a scatter's rows may repeat an index (the last write wins), so it stays serial."""
    edges, nodes, width = 3000, 400, 24
    offsets = np.sort(RNG.integers(0, edges + 1, nodes + 1)).astype(np.int64)
    offsets[0], offsets[-1] = 0, edges
    p = program(tile(f"""  buffer h: f32[{nodes},{width}] global input
  buffer nbr: i64[{edges}] global input
  buffer off: i64[{nodes + 1}] global const
  buffer rows: f32[{edges},{width}] global temp
  buffer s: f32[{nodes},{width}] global output
  buffer back: f32[{nodes},{width}] global output""", f"""  stage sums() device {{
    rows[0:{edges}, 0:{width}] = gather(h[0:{nodes}, 0:{width}], nbr[0:{edges}], axis=0)
    s[0:{nodes}, 0:{width}] = segment_add(rows[0:{edges}, 0:{width}], off[0:{nodes + 1}])
    back[0:{nodes}, 0:{width}] = scatter(rows[0:{edges}, 0:{width}], nbr[0:{edges}], axis=0)
  }}"""), off=offsets)
    text = source(p)
    shared = "#pragma omp parallel for schedule(static) num_threads(ft_threads)\n"
    assert text.count(shared) == 2   # (the gather's rows and the segments; not the scatter's)
    assert text.index("= gather(") < text.index(shared) < text.index("= segment_add(") < \
        text.rindex(shared) < text.index("= scatter(")
    h, nbr = data((nodes, width)), RNG.integers(0, nodes, edges)
    got = run_both(p, {"h": h, "nbr": nbr})
    np.testing.assert_allclose(got["s"], np.add.reduceat(np.vstack([h[nbr], np.zeros((1, width), np.float32)]),
                                                         offsets)[:nodes] * (np.diff(offsets) > 0)[:, None],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_and_scatter_with_negative_indices_and_padding(axis):
    spec = specs.gather_scatter(axis)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_copies_with_perm_and_reshape_converts_and_broadcast_elementwise():
    spec = specs.copies()
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


@pytest.mark.parametrize("n", [5, 5000])
def test_an_op_that_overwrites_what_it_reads_reads_everything_first(n):
    """NumPy semantics: `y[1:n] = y[0:n-1] + 1` reads the old y (a shift): staged on the stack,
    or on the heap when long."""
    spec = specs.shift(n)
    assert ("std::unique_ptr<float[]> ft_stage_owner" in source(spec.program)) == (n > 4096)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


@pytest.mark.parametrize("n", [5, 3000])
def test_a_gather_or_scatter_overlapping_its_source_reads_it_all_first(n):
    """(a hypothesis find: a scatter from y into y read elements it had already written)"""
    spec = specs.overlapping_gather_scatter(n)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_loops_ifs_steps_and_a_polygon_stage():
    spec = specs.loops_ifs_polygons()
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


# --- random programs -----------------------------------------------------------------------------

@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(parallel_programs(nested=True))
def test_random_parallel_programs_match_the_pointwise_executor(case):
    """Random programs (every op kind, quasi-affine indices, polygons, loops, ifs, layouts):
    the generated C++ gives the pointwise executor's outputs, on one thread and on two."""
    p, index_info = case
    p.verify()
    inputs = program_data(p, index_info, 1, "input")
    want = run_pointwise(p, inputs)
    for threads in (1, 2):
        got = native(p, threads).run(inputs)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=f"{name}\n{p}")


# --- errors and threads -----------------------------------------------------------------------------

def test_a_traced_gather_index_out_of_range_is_a_length_error_at_the_users_line():
    def pick(xs, idx):
        return ft.gather(xs, idx)  # the line the error points at

    gather_line = pick.__code__.co_firstlineno + 1
    pick = ft.function(pick)
    xs = ft.fractal([np.zeros(2), np.ones(2)])
    compiled = pick.compile(xs, np.array([0, 1]), backend="native")
    assert compiled.run(xs, np.array([1, -2])).to_list()[0].tolist() == [1.0, 1.0]
    for bad in ([0, 2], [-3, 0]):
        with pytest.raises(LengthError, match="gather: an index is out of range for its list") as err:
            compiled.run(xs, np.array(bad))
        assert f"test_emitter.py:{gather_line}, in pick" in str(err.value)


def test_a_scatter_index_out_of_range_is_an_index_error_naming_its_table():
    p = program(tile("""  buffer x: f32[2,4] global input
  buffer idx: i32[2] global input
  buffer y: f32[3,4] global output""", """  stage s() device {
    y[0:3, 0:4] = scatter(x[0:2, 0:4], idx[0:2], axis=0)
  }"""))
    exe = native(p)
    with pytest.raises(IndexError, match="scatter: an index in idx is out of range"):
        exe.run({"x": data((2, 4)), "idx": np.array([0, 7], np.int32)})


def test_runs_from_several_threads_at_once_give_each_its_own_answer():
    p = program(docstring_programs()[0])
    exe = native(p)
    cases = [{"x": data((6, 4, 8)), "w": data((2, 8, 32)), "u": data((2, 8, 32))} for _ in range(4)]
    want = [run_pointwise(p, c)["h"] for c in cases]
    got = [None] * len(cases)

    def work(k):
        for _ in range(5):
            got[k] = exe.run(cases[k])["h"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_a_reshaping_copy_onto_rows_of_its_own_source_reads_them_all_first():
    """`y[1:3, 0:6] = reshape(y[0:3, 0:4])`: the rows it writes overlap those it reads, so its
    values are staged (NumPy reads the whole source before writing)."""
    p = program(tile("""  buffer x: f32[4,6] global input
  buffer y: f32[4,6] global output""", """  stage s() device {
    y[0:4, 0:6] = copy(x[0:4, 0:6])
    y[1:3, 0:6] = copy(y[0:3, 0:4])
  }"""))
    x = data((4, 6))
    want = x.copy()
    want[1:3] = x[0:3, 0:4].reshape(2, 6)
    np.testing.assert_array_equal(run_both(p, {"x": x})["y"], want)


def test_points_of_one_dot_product_each_fold_into_one_product_over_rows_and_columns():
    """Attention's scores `s[i, j] = q[i] . k[j]` over (i, j): i folds into the rows, j into the
    columns, so the stage is one 48 x 40 @ k^T product (not 1,920 dot products)."""
    p = program(tile("""  buffer q: f32[48,1,16] global input
  buffer k: f32[40,16,1] global input
  buffer s: f32[48,40,1,1] global output""", """  stage scores(i in 0:48, j in 0:40) device {
    s[i, j, 0:1, 0:1] = gemm(q[i, 0:1, 0:16], k[j, 0:16, 0:1])
  }"""))
    text = source(p).split("// stage scores")[1]
    assert "(48, 40, 16," in text and "for (long long v_i" not in text
    q, k = data((48, 1, 16)), data((40, 16, 1))
    np.testing.assert_allclose(run_both(p, {"q": q, "k": k})["s"][:, :, 0, 0], q[:, 0] @ k[:, :, 0].T, rtol=1e-5,
                               atol=1e-5)


def test_a_square_by_pow_is_a_product_and_equals_numpys_bit_for_bit():
    """`pow(x - m, 2)` (a variance's square; the exponent a literal or one element of a const
    buffer) is `x * x`: libm's pow would keep the loop scalar, and the square is pow's
    correctly rounded result.  Other exponents keep pow."""
    p = program(tile("""  buffer x: f32[5,64] global input
  buffer two: f32[1] global const
  buffer y: f32[5,64] global output
  buffer z: f32[5,64] global output
  buffer w: f32[5,64] global output""", """  stage s(i in 0:5) device {
    y[i, 0:64] = pow(sub(x[i, 0:64], 0.5), two[0])
    z[i, 0:64] = pow(x[i, 0:64], 2.0)
    w[i, 0:64] = pow(x[i, 0:64], 3.0)
  }"""), two=np.array([2.0], np.float32))
    body = source(p).split("// stage s(")[1]
    assert body.count("std::pow(") == 1   # (the cube's)
    x = data((5, 64))
    out = run_both(p, {"x": x}, rtol=1e-6, atol=0)   # (the cube: libm's powf, not NumPy's own loop)
    want = run_pointwise(p, {"x": x})
    for name in ("y", "z"):
        np.testing.assert_array_equal(out[name], want[name])
