"""The CUDA emitter (tile IR -> CUDA C++), run in the emulation: every op kind, control flow,
polygons and random parallel-safe programs give the per-point reference executor's
outputs (`fractal.backends.pointwise`); the source has one kernel per stage, named after it,
each op under its tile-IR line; the emulation catches a barrier taken out of generated code;
bad indices raise the interpreter's errors."""

from __future__ import annotations

import os
import re
import shutil
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fractal as ft
from fractal.backends.cuda.emulated import EmulatedDevice
from fractal.backends.cuda.emulation import EmulationError
from fractal.backends.cuda.module import emit_module
from fractal.backends.cuda.policy import CudaPolicy, DeviceLoopFacts
from fractal.backends.cuda.runtime import CudaExecutable
from fractal.backends.pointwise import run_pointwise
from fractal.lang.errors import LengthError
from tests.backends import emitter_specs as specs
from tests.backends.cpu.programs import parallel_programs, program, program_data, tile
from tests.lower.test_tile_ir import docstring_programs

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulation needs a host C++ compiler (g++)")

GPU = ft.targets.cuda("sm_90", emulate=True).hardware
RNG = np.random.default_rng(0)


def emulated(p) -> CudaExecutable:
    return CudaExecutable(emit_module(p, GPU), EmulatedDevice())


def run_both(p, inputs, rtol=1e-5, atol=1e-5):
    """Runs `p` emulated and point by point; asserts they agree; returns the emulated outputs."""
    got, want = emulated(p).run(inputs), run_pointwise(p, inputs)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=f"{name}\n{p}")
    return got


def data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# --- the source ---------------------------------------------------------------------------------

class HostLoops(CudaPolicy):
    """The GPU policy, every loop left on the host."""

    def loop_on_device(self, facts, hw) -> bool:
        return False


def test_the_source_has_a_kernel_per_stage_named_after_it_with_each_op_under_its_tile_ir_line():
    p = program(docstring_programs()[0])
    source = emit_module(p, GPU, HostLoops()).source
    kernels = re.findall(r'extern "C" __global__ void __launch_bounds__\((\d+)\) (\w+)\(', source)
    assert [name for _, name in kernels] == [s.name for s in p.stages()] == ["init", "load_x", "gates", "cell"]
    assert all(int(threads) % 32 == 0 for threads, _ in kernels)
    assert "// stage gates(l in max(0, s - 5):min(2, s + 1)) device" in source
    assert "  // g[l, 0:4, 0:32] += gemm(h[l + 1, s - l, 0:4, 0:8], u[l, 0:8, 0:32])" in source
    # the loop variable `s` is a parameter of the kernels inside the loop, the stage dim decoded from the block
    assert re.search(r"void __launch_bounds__\(\d+\) cell\([^)]*long long v_s,", source)
    assert "const long long v_l = ft_lo0 + ft_p;" in source
    # gemm tiles staged in shared memory, padded by a column
    assert re.search(r"__shared__ float ft_as_float32\[\d+\]\[\d+\];", source)


def test_a_wavefront_loop_runs_on_the_device_as_one_persistent_kernel_with_grid_barriers():
    """The policy's default: the loop's stages (boxes over the loop variable) in one
    cooperative kernel, `s` a device loop, a grid-wide barrier after each stage."""
    p = program(docstring_programs()[0])
    module = emit_module(p, GPU)
    kernels = re.findall(r'extern "C" __global__ void __launch_bounds__\(\d+\) (\w+)\(', module.source)
    assert kernels == ["init", "load_x", "loop_s"]
    loop = module.source[module.source.index("// for s in 0:7 sequential host: on the device"):]
    assert "for (long long v_s = 0; v_s < 7; v_s += 1) {" in loop
    assert loop.count("ft_grid.sync();") == 2 and "#include <cooperative_groups.h>" in module.source
    assert module.launched()["loop_s"] == 2  # the most points a step has: both layers
    inputs = {"x": data((6, 4, 8)), "w": data((2, 8, 32)), "u": data((2, 8, 32))}
    np.testing.assert_allclose(emulated(p).run(inputs)["h"], run_pointwise(p, inputs)["h"], rtol=1e-5, atol=1e-5)


def test_a_device_loop_counting_down_runs_every_step():
    """A reverse scan (`step -1`) as a persistent kernel: `y[s] = x[s] + y[s + 1]`."""
    p = program(tile("""  buffer x: f32[4,3] global input
  buffer y: f32[5,3] global output""", """  for s in 3:-1 step -1 sequential host {
    stage add(i in 0:3) device {
      y[s, i] = add(x[s, i], y[s + 1, i])
    }
  }"""))
    assert "for (long long v_s = 3; v_s > -1; v_s += -1) {" in emit_module(p, GPU).source
    x = data((4, 3))
    np.testing.assert_allclose(run_both(p, {"x": x})["y"][:4], np.cumsum(x[::-1], axis=0)[::-1], rtol=1e-5)


def test_the_policy_keeps_a_loop_on_the_host_when_a_step_has_more_points_than_the_gpu_holds():
    few_sms = ft.targets.cuda("sm_90", sms=1, emulate=True).hardware
    facts = DeviceLoopFacts(steps=10, max_points=10_000, threads=128)
    assert not CudaPolicy().loop_on_device(facts, few_sms)
    assert CudaPolicy().loop_on_device(DeviceLoopFacts(10, 16, 128), few_sms)
    assert not CudaPolicy().loop_on_device(DeviceLoopFacts(1, 4, 128), few_sms)  # one step: nothing to save


def test_the_same_program_and_target_give_the_same_source():
    p = program(docstring_programs()[0])
    assert emit_module(p, GPU).source == emit_module(program(docstring_programs()[0]), GPU).source


def test_a_stage_name_that_is_not_a_free_cpp_identifier_gets_a_prefix():
    p = program(tile("  buffer x: f32[4] global input\n  buffer y: f32[4] global output",
                     "  stage double() device {\n    y[0:4] = neg(x[0:4])\n  }"))
    assert "__launch_bounds__(32) k_double(" in emit_module(p, GPU).source
    x = data(4)
    np.testing.assert_array_equal(run_both(p, {"x": x})["y"], -x)


# --- every op kind ------------------------------------------------------------------------------

def test_the_docstring_lstm_wavefront_and_embedding_lookup():
    lstm, embed = (program(t) for t in docstring_programs()[:2])
    run_both(lstm, {"x": data((6, 4, 8)), "w": data((2, 8, 32)), "u": data((2, 8, 32))})
    run_both(embed, {})


@pytest.mark.parametrize("dtype", ["f32", "f64", "i32"])
def test_gemm_transposes_accumulation_and_a_tile_larger_than_one_step(dtype):
    spec = specs.gemm(dtype)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


@pytest.mark.parametrize("m, k, n, trans", [(40, 37, 70, False), (16, 16, 8, True), (1, 8, 32, False),
                                           (100, 64, 130, False)])
def test_half_precision_gemms_run_on_tensor_cores_with_fp32_accumulation(m, k, n, trans):
    """`mma.sync` m16n8k16 fragments (tiles padded to whole fragments, several tiles per
    GEMM, transposed A, `+=`): the emulation runs the PTX lane layout, exactly as the
    pointwise executor computes (fp32 products and sums, rounded to half once)."""
    a_decl, a_use = (f"{k},{m}", f"a[0:{k}, 0:{m}].T") if trans else (f"{m},{k}", f"a[0:{m}, 0:{k}]")
    p = program(tile(f"""  buffer a: f16[{a_decl}] global input
  buffer b: f16[{k},{n}] global input
  buffer c: f16[{m},{n}] global output""", f"""  stage mm() device {{
    c[0:{m}, 0:{n}] = gemm({a_use}, b[0:{k}, 0:{n}])
    c[0:{m}, 0:{n}] += gemm({a_use}, b[0:{k}, 0:{n}])
  }}"""))
    source = emit_module(p, GPU).source
    assert "ft_mma_m16n8k16_f16_f32(ft_acc[ft_f], ft_a, ft_b, ft_acc[ft_f]);" in source
    a = data(tuple(int(x) for x in a_decl.split(",")), np.float16)
    run_both(p, {"a": a, "b": data((k, n), np.float16)}, rtol=0, atol=0)


def test_a_gemm_of_several_reduction_steps_streams_its_tiles_by_cp_async_double_buffered():
    """The copy of step k + 1 is issued before the products of step k (`__pipeline_*`, two
    shared buffers); without its wait the emulation, which lands a copy only at the wait, reads
    stale tiles and the answer is wrong."""
    p = program(tile("""  buffer a: f32[40,37] global input
  buffer b: f32[37,70] global input
  buffer c: f32[40,70] global output""", """  stage mm() device {
    c[0:40, 0:70] = gemm(a[0:40, 0:37], b[0:37, 0:70])
  }"""))
    module = emit_module(p, GPU)
    assert module.source.count("__pipeline_memcpy_async(") == 8 and "__pipeline_wait_prior(1);" in module.source
    a, b = data((40, 37)), data((37, 70))
    np.testing.assert_allclose(run_both(p, {"a": a, "b": b})["c"], a @ b, rtol=1e-4, atol=1e-4)
    from dataclasses import replace
    broken = replace(module, source=module.source.replace("__pipeline_wait_prior(1);", ""))
    with pytest.raises((EmulationError, AssertionError)):
        got = CudaExecutable(broken, EmulatedDevice()).run({"a": a, "b": b})["c"]
        np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_float32_gemms_run_on_tensor_cores_in_tf32_only_where_the_target_allows_it():
    p = program(tile("""  buffer a: f32[40,37] global input
  buffer b: f32[37,70] global input
  buffer c: f32[40,70] global output""", """  stage mm() device {
    c[0:40, 0:70] = gemm(a[0:40, 0:37], b[0:37, 0:70])
  }"""))
    assert "mma.sync" not in emit_module(p, GPU).source.split("// stage")[1]  # (the default: exact fp32)
    target = ft.targets.cuda("sm_80", emulate=True, tf32=True)
    assert target.name == "a100-emulated-tf32" and target != ft.targets.cuda("sm_80", emulate=True)
    module = emit_module(p, target.hardware, target.policy)
    assert "ft_mma_m16n8k8_tf32_f32(ft_acc[ft_f], ft_a, ft_b, ft_acc[ft_f]);" in module.source
    a, b = data((40, 37)), data((37, 70))
    got = CudaExecutable(module, EmulatedDevice()).run({"a": a, "b": b})["c"]
    from fractal.backends.cuda.mma import tf32_round
    want = tf32_round(a).astype(np.float64) @ tf32_round(b).astype(np.float64)  # operands rounded, sums in fp32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(got - a.astype(np.float64) @ b).max() > 1e-5  # (TF32 is visibly not fp32)


def test_a_single_big_gemm_is_cut_over_blocks():
    p = program(tile("""  buffer a: f32[100,16] global input
  buffer b: f32[16,300] global input
  buffer c: f32[100,300] global output""", """  stage mm() device {
    c[0:100, 0:300] = gemm(a[0:100, 0:16], b[0:16, 0:300])
  }"""))
    (kernel,) = emit_module(p, GPU).kernels["mm"]
    assert kernel.chunks > 1
    a, b = data((100, 16)), data((16, 300))
    np.testing.assert_allclose(run_both(p, {"a": a, "b": b})["c"], a @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_a_batch_of_gemms_sharing_a_weight_is_one_gemm_over_the_batch_rows_and_the_stage_splits(dtype):
    """Points `b` that share the weight `w` fold into the rows of one GEMM (tiles over batch rows
    x columns, the weight read once per row tile); the stage runs as one kernel per op."""
    np_dtype = {"f32": np.float32, "f16": np.float16}[dtype]
    p = program(tile(f"""  buffer x: {dtype}[4,70,2,24] global input
  buffer w: {dtype}[24,40] global input
  buffer g: {dtype}[4,70,2,40] global temp
  buffer y: {dtype}[4,70,2,40] global output""", """  stage cell(l in 0:4, b in 0:70) device {
    g[l, b, 0:2, 0:40] = gemm(x[l, b, 0:2, 0:24], w[0:24, 0:40])
    y[l, b, 0:2, 0:40] = tanh(g[l, b, 0:2, 0:40])
  }"""))
    module = emit_module(p, GPU)
    gemm, cell = module.kernels["cell"]
    assert (gemm.name, cell.name) == ("cell_0", "cell_1") and gemm.fold is not None and cell.fold is None
    assert "const long long v_b = ft_lo1 + ft_gr / 2, ft_gm = ft_gr % 2;" in gemm.source
    rows, tile_rows = gemm.fold[1], gemm.fold[2]
    assert gemm.blocks([(0, 4), (0, 70)]) == 4 * -(-rows * 70 // tile_rows) * gemm.fold[3]
    x, w = data((4, 70, 2, 24), np_dtype), data((24, 40), np_dtype)
    out = run_both(p, {"x": x, "w": w}, rtol=2e-3 if dtype == "f16" else 1e-5, atol=2e-3 if dtype == "f16" else 1e-5)
    np.testing.assert_allclose(out["y"].astype(np.float32), np.tanh((x.astype(np.float32) @ w.astype(np.float32))),
                               rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("combiner", ["add", "max", "min"])
def test_reductions_keep_or_drop_axes_and_reduce_empty_and_long_rows(combiner):
    spec = specs.reductions(combiner)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_segment_reductions_with_empty_segments():
    spec = specs.segment_max()
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_and_scatter_with_negative_indices_and_padding(axis):
    spec = specs.gather_scatter(axis)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_copies_with_perm_and_reshape_converts_and_broadcast_elementwise():
    spec = specs.copies()
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_an_op_that_overwrites_what_it_reads_reads_everything_first():
    """NumPy semantics: `y[1:5] = y[0:4] + 1` reads the old y[0:4] (a shift), in any thread order."""
    spec = specs.shift(5)
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))


def test_an_op_that_overwrites_more_than_its_registers_hold_stages_through_global_scratch():
    """A shift of 2999 elements (more than 8 a thread in a block of 256) reads them all into the
    block's scratch before writing one; NumPy's answer, in any thread order."""
    p = program(tile("""  buffer x: f32[3000] global input
  buffer y: f32[3000] global output""", """  stage s() device {
    y[0:3000] = copy(x[0:3000])
    y[1:3000] = add(y[0:2999], 1.0)
  }"""))
    (kernel,) = emit_module(p, GPU).kernels["s"]
    assert kernel.scratch == 2999 * 4 + 4 and "unsigned char* ft_scratch" in kernel.source
    x = data(3000)
    np.testing.assert_array_equal(run_both(p, {"x": x})["y"], np.concatenate([x[:1], x[:2999] + 1]))


def test_an_op_writing_the_next_row_of_the_state_it_reads_needs_no_staging():
    """`s[t + 1] = 0.5 * s[t] + x[t]` over 300 elements a row: the rows are a constant apart, so
    no element is both read and written (retention's decayed state), whatever the row's size."""
    p = program(tile("""  buffer x: f32[3,300] global input
  buffer s: f32[4,300] global output""", """  for t in 0:3 sequential host {
    stage decay() device {
      s[t + 1, 0:300] = add(mul(s[t, 0:300], 0.5), x[t, 0:300])
    }
  }"""))
    assert "ft_v[" not in emit_module(p, GPU).source
    x = data((3, 300))
    want = np.zeros((4, 300), np.float32)
    for t in range(3):
        want[t + 1] = want[t] * 0.5 + x[t]
    np.testing.assert_allclose(run_both(p, {"x": x})["s"], want, rtol=1e-6)


def test_loop_variables_named_like_element_coordinates_keep_their_meaning():
    """A loop variable `i1` and a reduction over two axes (whose element coordinates were once
    `i0`, `i1` too): each index reads the variable it names (found by the random programs)."""
    p = program(tile("""  buffer x: f64[1,1,1,1] global input
  buffer y: f64[4,1,2,1] global output
  buffer z: f64[4,1,1,2] global output""", """  for i1 in 0:3 sequential host {
    stage k(d in -i1:-i1 + 2) device {
      y[d + 2, 0, floor(d / 2) + 1:floor(d / 2) + 2, 0:1] = add(0.0, x[0, 0, 0:1, 0])
      z[d + 2, 0, 0:1, floor(d / 2) + 1:floor(d / 2) + 2] = reduce_add(y[d + 2, 0, 0:1, 0:1], axes=[0, 1])
    }
  }"""))
    run_both(p, {"x": np.full((1, 1, 1, 1), 2.0)})


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
    the emulated kernels, each launch run twice in opposite orders, give the pointwise
    executor's outputs."""
    p, index_info = case
    p.verify()
    inputs = program_data(p, index_info, 1, "input")
    want = run_pointwise(p, inputs)
    got = emulated(p).run(inputs)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=f"{name}\n{p}")


# --- what the emulation catches, and errors -------------------------------------------------------

def test_generated_code_without_its_barriers_is_caught_as_a_race():
    p = program(docstring_programs()[0])
    module = emit_module(p, GPU, HostLoops())
    broken = module.source.replace("__syncthreads();", "")
    from dataclasses import replace
    exe = CudaExecutable(replace(module, source=broken), EmulatedDevice())
    with pytest.raises(EmulationError, match="the result depends on the schedule: .* a race within a block"):
        exe.run({"x": data((6, 4, 8)), "w": data((2, 8, 32)), "u": data((2, 8, 32))})


def test_a_traced_gather_index_out_of_range_is_a_length_error_at_the_users_line():
    """Index 2 of a list of 2 (or -3): the kernel records it, the run raises the
    interpreter's LengthError at the user's `ft.gather` line."""
    def pick(xs, idx):
        return ft.gather(xs, idx)  # the line the error points at

    gather_line = pick.__code__.co_firstlineno + 1
    pick = ft.function(pick)
    xs = ft.fractal([np.zeros(2), np.ones(2)])
    compiled = pick.compile(xs, np.array([0, 1]), target=ft.targets.cuda(emulate=True))
    assert compiled.run(xs, np.array([1, -2])).to_list()[0].tolist() == [1.0, 1.0]
    for bad in ([0, 2], [-3, 0]):
        with pytest.raises(LengthError, match="gather: an index is out of range for its list") as err:
            compiled.run(xs, np.array(bad))
        assert f"test_emitter.py:{gather_line}, in pick" in str(err.value)


def test_runs_from_several_threads_at_once_give_each_its_own_answer():
    p = program(docstring_programs()[0])
    exe = emulated(p)
    cases = [{"x": data((6, 4, 8)), "w": data((2, 8, 32)), "u": data((2, 8, 32))} for _ in range(3)]
    want = [run_pointwise(p, c)["h"] for c in cases]
    got = [None] * 3

    def work(k):
        got[k] = exe.run(cases[k])["h"]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# --- one test per message --------------------------------------------------------------------------

def test_a_gemm_overwriting_its_operand_over_several_tiles_is_unsupported():
    p = program(tile("""  buffer y: f32[40,100] global output
  buffer b: f32[37,70] global input""", """  stage mm() device {
    y[0:40, 30:100] = gemm(y[0:40, 0:37], b[0:37, 0:70])
  }"""))
    with pytest.raises(ft.UnsupportedError, match=r"the CUDA emitter cannot yet run `y\[0:40, 30:100\] = gemm\(.*\)`: "
                                                  "its output overlaps an operand and spans several tiles"):
        emit_module(p, GPU)


def test_tiles_beyond_a_gpus_shared_memory_are_refused_naming_the_stage():
    import dataclasses
    small = dataclasses.replace(GPU, gpu=dataclasses.replace(GPU.gpu, static_shared_per_block=1024))
    p = program(tile("""  buffer a: f64[40,37] global input
  buffer b: f64[37,70] global input
  buffer c: f64[40,70] global output""", """  stage mm() device {
    c[0:40, 0:70] = gemm(a[0:40, 0:37], b[0:37, 0:70])
  }"""))
    with pytest.raises(ft.ResourceError, match=r"stage mm: its tiles need \d+ bytes of shared memory, more than "
                                               r"sm_90's 1024 bytes per block"):
        emit_module(p, small)


def test_a_grid_of_more_blocks_than_cuda_allows_is_refused(monkeypatch):
    from fractal.backends.cuda import runtime
    p = program(tile("  buffer x: f32[4] global input\n  buffer y: f32[4] global output",
                     "  stage s(i in 0:4) device {\n    y[i] = neg(x[i])\n  }"))
    exe = emulated(p)
    monkeypatch.setattr(runtime, "MAX_GRID", 3)
    with pytest.raises(ft.ArgumentError, match="stage s has 4 blocks, more than a CUDA grid's 3"):
        exe.run({"x": data(4)})


def test_a_scatter_index_out_of_range_is_an_index_error_naming_its_table():
    p = program(tile("""  buffer x: f32[2,3] global input
  buffer idx: i32[2] global input
  buffer y: f32[4,3] global output""", """  stage s() device {
    y[0:4, 0:3] = scatter(x[0:2, 0:3], idx[0:2], axis=0)
  }"""))
    exe = emulated(p)
    np.testing.assert_array_equal(exe.run({"x": np.ones((2, 3), np.float32), "idx": np.array([3, 4], np.int32)})["y"][3],
                                  1.0)  # (4: one past the end, padding)
    with pytest.raises(IndexError, match="scatter: an index in idx is out of range"):
        exe.run({"x": np.ones((2, 3), np.float32), "idx": np.array([0, 5], np.int32)})
